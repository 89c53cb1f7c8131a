"""Profiles of a measured client: cProfile (standard library) or pyinstrument.

cProfile counts every call and slows small functions down several times, so
the CPU figures of a profiled run are not comparable; pyinstrument samples the
stack (here every millisecond) and shows where time goes with little overhead.
pyinstrument is not a dependency: install it by hand to use it.
"""

from __future__ import annotations

import contextlib
import cProfile
import importlib
import io
import pstats
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["PROFILERS", "profiling"]

PROFILERS = ("cprofile", "pyinstrument")


@contextlib.contextmanager
def profiling(folder: str | None, name: str, profiler: str) -> Iterator[dict[str, Any]]:
    """Profile the body into *folder* (nothing when None); yield where it went.

    The yielded dict gets ``"profile"``: the path of the text report, once the
    body is done.
    """
    out: dict[str, Any] = {}
    if folder is None:
        yield out
        return

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    if profiler == "pyinstrument":
        sampler = importlib.import_module("pyinstrument").Profiler(
            interval=0.001, async_mode="disabled"
        )
        sampler.start()
        try:
            yield out
        finally:
            sampler.stop()
            text = sampler.output_text(unicode=False, color=False)
            report = path / f"{name}.pyinstrument.txt"
            report.write_text(text)
            out["profile"] = str(report)

        return

    profile = cProfile.Profile()
    profile.enable()
    try:
        yield out
    finally:
        profile.disable()
        profile.dump_stats(path / f"{name}.prof")
        text_io = io.StringIO()
        stats = pstats.Stats(profile, stream=text_io)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(r"plyr_rooms", 40)
        report = path / f"{name}.txt"
        report.write_text(text_io.getvalue())
        out["profile"] = str(report)
