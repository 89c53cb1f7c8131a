"""The simulator in a process of its own, so its CPU is never the client's.

Run as ``python -m plyr_rooms._bench._sim_child``. The first stdin line is the
configuration (see :func:`sim_settings`); the process starts a
:class:`~plyr_rooms.simulator.Simulator`, creates the players and answers with one
line: ``{"url", "api_key", "api_secret", "game_id", "players": [[id, jwt], ...]}``.
It then answers commands, one per line:

- ``{"cmd": "stats"}``: the simulator's counters, every task with its
  ``time.monotonic()`` submission and completion stamps (the clock is system-wide
  on Linux, so the driver compares them with its own), and this process's CPU.
- ``{"cmd": "quit"}`` (or end of input): stop the simulator and exit.
"""

from __future__ import annotations

import resource
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio

from ._config import Player, Target
from ._pipe import ChildProcess, StdinLines, configure_child_logging, emit

if TYPE_CHECKING:
    from ..simulator import Simulator
    from ._config import BenchConfig

__all__ = ["SimProcess", "sim_settings"]

_MODULE = "plyr_rooms._bench._sim_child"


def sim_settings(config: BenchConfig) -> dict[str, Any]:
    """Return the simulator settings of *config*, as the child reads them."""
    need = Decimal(config.stake) * config.rooms_per_player * 2 + 10
    return {
        "seed": config.seed,
        "latency": config.latency,
        "workers": config.workers,
        "faults": config.faults,
        "sync_interval": config.sync_interval,
        "players": config.pool_size,
        "balance": format(need, "f"),
        "token": config.token,
    }


class SimProcess:
    """The driver's handle on a simulator child process."""

    def __init__(self, child: ChildProcess, target: Target) -> None:
        self._child = child
        self.target = target

    @classmethod
    async def start(cls, settings: dict[str, Any]) -> SimProcess:
        """Start a simulator process with *settings* and wait until it serves."""
        child = await ChildProcess.start(_MODULE)
        try:
            hello = await child.request(settings)
        except BaseException:
            await child.close()
            raise

        players = tuple(Player(pid, jwt) for pid, jwt in hello["players"])
        target = Target(
            url=hello["url"],
            api_key=hello["api_key"],
            api_secret=hello["api_secret"],
            players=players,
        )
        return cls(child, target)

    async def stats(self) -> dict[str, Any]:
        """Return the simulator's counters, task records and CPU seconds."""
        return await self._child.request({"cmd": "stats"})

    async def aclose(self) -> None:
        """Stop the simulator process."""
        await self._child.close()

    async def __aenter__(self) -> SimProcess:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _sim_config(settings: dict[str, Any]) -> Any:
    from ..simulator import Faults, Latency, SimConfig

    return SimConfig(
        seed=int(settings.get("seed", 0)),
        latency=Latency.parse(settings.get("latency", "fixed:0.05")),
        workers=settings.get("workers"),
        faults=Faults.parse(settings.get("faults", "")),
        sync_interval=float(settings.get("sync_interval", 0.5)),
    )


def _stats(sim: Simulator) -> dict[str, Any]:
    counters = sim.ledger().counters
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "requests_by_route": dict(counters.requests_by_route),
        "status_polls": counters.status_polls,
        "tasks_by_method": dict(counters.tasks_by_method),
        "rate_limited": counters.rate_limited,
        "server_errors": counters.server_errors,
        "dropped": counters.dropped,
        "tasks": [
            [t.task_id, t.method, t.submitted_at, t.completed_at, t.state.value]
            for t in counters.tasks
        ],
        "cpu": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
        "now": time.monotonic(),
    }


async def _serve() -> None:
    from ..simulator import Simulator

    lines = StdinLines()
    settings = await lines.receive()
    if settings is None:
        return

    async with Simulator(_sim_config(settings)) as sim:
        token = settings.get("token", "plyr")
        amount = settings.get("balance", "1000")
        players = await sim.add_players(
            int(settings["players"]), balance=amount, allowance=amount, tokens=(token,)
        )
        emit(
            {
                "url": sim.url,
                "api_key": sim.api_key,
                "api_secret": sim.api_secret,
                "game_id": sim.game_id,
                "players": [[p.plyr_id, p.session_jwt] for p in players],
            }
        )
        while (message := await lines.receive()) is not None:
            if message.get("cmd") == "stats":
                emit(_stats(sim))
            elif message.get("cmd") == "quit":
                break


def main() -> None:
    """Serve one simulator until told to quit."""
    configure_child_logging()
    anyio.run(_serve, backend="asyncio")
