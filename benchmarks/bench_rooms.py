"""Load test: N rooms of P players through their whole lifecycle, per strategy.

Each strategy (naive, sync, shared-tasks, shared, atomic) runs the same rooms
against a fresh simulator process with the same seed, and its client runs in a
process of its own, so that client CPU and peak RSS are measured apart from the
simulator's. See benchmarks/README.md for what each figure means.

    python benchmarks/bench_rooms.py --rooms 1000 --scenario independent \
        --json results/independent.json --plot results/independent.png
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import anyio

from plyr_rooms._bench import BenchConfig, run_bench, table
from plyr_rooms._bench._args import (
    add_arguments,
    command_line,
    config_from_args,
    write_outputs,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

_finished: set[str] = set()


def _progress(strategy: str, ended: int, failed: int, total: int) -> None:
    finished = ended + failed >= total
    if strategy in _finished or (not finished and not sys.stderr.isatty()):
        return

    sys.stderr.write(
        f"\r{strategy:>12}: {ended + failed}/{total} rooms, {failed} failed"
    )
    if ended + failed >= total:
        _finished.add(strategy)
        sys.stderr.write("\n")

    sys.stderr.flush()


async def _run(config: BenchConfig, quiet: bool) -> dict[str, Any]:
    return await run_bench(config, progress=None if quiet else _progress)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table; return 0 if every room ended."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, rooms=1000)
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    report = anyio.run(_run, config, args.quiet, backend="asyncio")
    report["command"] = command_line(argv)
    write_outputs(report, args)
    if args.json != "-":
        print(table(report))

    failed = sum(s["rooms_failed"] for s in report["strategies"].values())
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
