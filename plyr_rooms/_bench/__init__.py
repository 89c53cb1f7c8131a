"""The load-test harness behind ``benchmarks/bench_rooms.py`` and ``plyr-rooms bench``.

Private to plyr-rooms: the command line, the benchmark script and the tests use
it; nothing here is public API. The pieces:

- :mod:`._config`: what a run does (:class:`BenchConfig`) and where it sends
  requests (:class:`Target`);
- :mod:`._simproc`: the simulator in a process of its own;
- :mod:`._client_job` with :mod:`._walks` and :mod:`._rooms`: the measured
  client, one strategy per process;
- :mod:`._cpu`: client CPU per request against a bare aiohttp GET;
- :mod:`._run`: the driver, and :mod:`._metrics` / :mod:`._plot`: the figures.
"""

from __future__ import annotations

from ._config import STEPS_PER_ROOM as STEPS_PER_ROOM
from ._config import STRATEGIES as STRATEGIES
from ._config import BenchConfig as BenchConfig
from ._config import Player as Player
from ._config import Target as Target
from ._metrics import table as table
from ._run import ProgressSink as ProgressSink
from ._run import run_bench as run_bench

__all__ = [
    "STEPS_PER_ROOM",
    "STRATEGIES",
    "BenchConfig",
    "Player",
    "ProgressSink",
    "Target",
    "run_bench",
    "table",
]
