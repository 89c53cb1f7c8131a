"""Options shared by ``plyr-rooms bench`` and ``benchmarks/bench_rooms.py``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ._config import STRATEGIES, BenchConfig, valid_gc_threshold

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "SCENARIOS",
    "add_arguments",
    "command_line",
    "config_from_args",
    "write_outputs",
]

#: The issue's two workloads: (latency, worker concurrency).
SCENARIOS: dict[str, tuple[str, int | None]] = {
    # Every task on its own clock: log-normal, median 3 s, sigma 0.5.
    "independent": ("lognormal:3,0.5", None),
    # The real service's single sequential consumer, 20 ms of work per task.
    "sequential": ("fixed:0.02", 1),
}


def _strategy_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}"
        )

    return names


def _workers(text: str) -> int | None:
    if text.lower() in ("unbounded", "none", "0"):
        return None

    return int(text)


def _schedule(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, raw = item.partition("=")
        value: Any
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            try:
                value = float(raw)
            except ValueError:
                raise argparse.ArgumentTypeError(f"bad value in {item!r}") from None

        fields[name.strip()] = value

    return fields


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N[,N[,N]]: {text!r}") from None

    if not valid_gc_threshold(counts):
        raise argparse.ArgumentTypeError(f"expected 1 to 3 counts >= 0: {text!r}")

    return counts


def add_arguments(parser: argparse.ArgumentParser, *, rooms: int = 100) -> None:
    """Register the workload, strategy and output options on *parser*."""
    work = parser.add_argument_group("workload")
    work.add_argument("--rooms", type=int, default=rooms, help="rooms per strategy")
    work.add_argument("--players", type=int, default=4, help="players per room")
    work.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="independent",
        help="independent: log-normal latency (median 3 s, sigma 0.5), unbounded "
        "workers; sequential: one worker, 20 ms per task (default: independent)",
    )
    work.add_argument(
        "--latency", help="override: fixed:S, uniform:LO,HI, lognormal:M,S"
    )
    work.add_argument(
        "--workers", type=_workers, help="override: 1, N or 'unbounded'", default=-1
    )
    work.add_argument(
        "--faults", default="", help="e.g. revert=0.01,rate_limit_rps=500"
    )
    work.add_argument("--seed", type=int, default=0)
    work.add_argument("--stake", default="1", help="what each player pays per room")
    work.add_argument("--token", default="plyr")
    work.add_argument(
        "--journal",
        choices=("memory", "sqlite"),
        help="give the room strategies a journal (sqlite: a file in a temp dir)",
    )
    run = parser.add_argument_group("strategies and measurement")
    run.add_argument(
        "--strategies",
        type=_strategy_list,
        default=("naive", "sync", "shared", "atomic"),
        help=f"comma-separated, from {', '.join(STRATEGIES)}",
    )
    run.add_argument("--naive-interval", type=float, default=1.0, metavar="SECONDS")
    run.add_argument(
        "--poller-rps",
        type=float,
        metavar="N",
        help="the shared poller's request-rate budget (default: the library's)",
    )
    run.add_argument(
        "--poller-concurrency",
        type=int,
        metavar="N",
        help="the shared poller's concurrency cap (default: the library's)",
    )
    run.add_argument(
        "--poll-schedule",
        type=_schedule,
        default={},
        metavar="NAME=VALUE,...",
        help="PollSchedule fields to change, e.g. first_delay=0.5,ordered=false",
    )
    run.add_argument("--step-timeout", type=float, default=180.0, metavar="SECONDS")
    run.add_argument(
        "--cpu-requests",
        type=int,
        default=10000,
        help="requests per side of the bare-aiohttp CPU comparison (0: skip)",
    )
    run.add_argument(
        "--in-process",
        action="store_true",
        help="run the clients in this process (CPU and RSS then include the driver)",
    )
    run.add_argument(
        "--gc-threshold",
        type=_counts,
        metavar="N[,N[,N]]",
        help="the client's gc.set_threshold while it runs (default: CPython's)",
    )
    run.add_argument("--profile", metavar="DIR", help="profile each client into DIR")
    run.add_argument(
        "--profiler",
        choices=("cprofile", "pyinstrument"),
        default="cprofile",
        help="cprofile (exact counts, slow) or pyinstrument (sampling; install it)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--json", metavar="FILE", help="write the report as JSON ('-': stdout)"
    )
    out.add_argument(
        "--samples", action="store_true", help="keep raw samples in the JSON report"
    )
    out.add_argument("--plot", metavar="FILE.png", help="draw latency and request rate")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Build the run's configuration from parsed options."""
    latency, workers = SCENARIOS[args.scenario]
    return BenchConfig(
        rooms=args.rooms,
        players=args.players,
        strategies=args.strategies,
        latency=args.latency or latency,
        workers=workers if args.workers == -1 else args.workers,
        faults=args.faults,
        seed=args.seed,
        stake=args.stake,
        token=args.token,
        naive_interval=args.naive_interval,
        step_timeout=args.step_timeout,
        journal=args.journal,
        cpu_requests=args.cpu_requests,
        isolate=not args.in_process,
        profile_dir=args.profile,
        profiler=args.profiler,
        poller_rps=args.poller_rps,
        poller_concurrency=args.poller_concurrency,
        poll_schedule=args.poll_schedule,
        gc_threshold=args.gc_threshold,
    )


def write_outputs(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the JSON report and the plot the options asked for."""
    if args.plot:
        from ._plot import plot

        plot(report, args.plot)

    if args.json:
        data = report if args.samples else _without_samples(report)
        text = json.dumps(data, indent=2, default=str) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            with open(args.json, "w") as file:
                file.write(text)


def _without_samples(report: dict[str, Any]) -> dict[str, Any]:
    strategies = {
        name: {k: v for k, v in summary.items() if k != "samples"}
        for name, summary in report["strategies"].items()
    }
    return {**report, "strategies": strategies}


def command_line(argv: Sequence[str] | None) -> str:
    """Return the command as typed, for the report."""
    return " ".join(sys.argv[:1] + list(sys.argv[1:] if argv is None else argv))
