"""Status requests and added latency: the shared poller against a naive loop.

Two scenarios, each run once per strategy on a fresh simulator with the same seed:

1. ``independent``: every task is submitted at once and runs on its own
   (unbounded workers), taking a log-normal time (median 3 s, sigma 0.5);
2. ``sequential``: every task is submitted at once to the real service's single
   sequential consumer (one worker), ~50 ms of work each, done in order.

Strategies: ``naive`` checks each task every second after submission until it is
no longer PENDING (what the official example client does); ``shared`` waits
through one :class:`~plyr_rooms.poller.TaskPoller` with its default schedule.

Reported per strategy: status requests per resolved task, and the added latency
(from the task's completion on the simulator to its waiter waking), p50 and p95.
The simulator runs in this process so that both ends of the added latency are
read on the same ``time.monotonic()`` clock; its CPU is shared with the client.

    python benchmarks/bench_poller.py --repeat 3 --out poller.json
    python benchmarks/bench_poller.py --tasks 300 --scenarios sequential --json

The shared poller runs with ``--rps 5000 --concurrency 64`` by default: a
request budget that does not bind, as the naive loop has none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import anyio

from plyr_rooms.client import PlyrClient
from plyr_rooms.poller import PollSchedule, TaskPoller
from plyr_rooms.simulator import Latency, SimConfig, Simulator
from plyr_rooms.tasks import TaskRef, TaskState

SCENARIOS = ("independent", "sequential")
STRATEGIES = ("naive", "shared")


def _config(scenario: str, args: argparse.Namespace) -> SimConfig:
    if scenario == "independent":
        latency = Latency.lognormal(args.median, args.sigma)
        return SimConfig(seed=args.seed, latency=latency, workers=None)

    return SimConfig(seed=args.seed, latency=Latency.fixed(args.work), workers=1)


async def _naive(client: PlyrClient, ref: TaskRef, interval: float) -> None:
    # Sleep, check, repeat until the status is anything but PENDING.
    while True:
        await anyio.sleep(interval)
        result = await client.task_status(ref.id, retry=False)
        if result.state is not TaskState.PENDING:
            return


async def _one(
    client: PlyrClient,
    poller: TaskPoller | None,
    woke: dict[str, float],
    interval: float,
) -> None:
    ref = await client.create()
    if poller is None:
        await _naive(client, ref, interval)
    else:
        await poller.wait(ref)

    woke[ref.id] = time.monotonic()


async def _run(
    scenario: str, strategy: str, args: argparse.Namespace
) -> dict[str, Any]:
    woke: dict[str, float] = {}
    stats: dict[str, Any] = {}
    started = time.monotonic()
    cpu = time.process_time()
    async with (
        Simulator(_config(scenario, args)) as sim,
        PlyrClient(
            sim.url, sim.api_key, sim.api_secret, connection_limit=args.connections
        ) as client,
    ):
        if strategy == "naive":
            async with anyio.create_task_group() as group:
                for _ in range(args.tasks):
                    group.start_soon(_one, client, None, woke, args.interval)
        else:
            poller = TaskPoller(
                client,
                max_concurrency=args.concurrency,
                requests_per_second=args.rps,
                schedule=_schedule(args.schedule),
            )
            async with poller, anyio.create_task_group() as group:
                for _ in range(args.tasks):
                    group.start_soon(_one, client, poller, woke, args.interval)

            s = poller.stats
            stats = {
                "sweeps": s.sweeps,
                "mean_sweep_size": round(s.mean_sweep_size, 2),
                "max_sweep_size": s.max_sweep_size,
                "ordered": s.ordered,
                "learned_delays": {k: round(v, 3) for k, v in s.learned_delays.items()},
            }

        ledger = sim.ledger()

    added = sorted(
        woke[task.task_id] - task.completed_at
        for task in ledger.tasks
        if task.completed_at is not None and task.task_id in woke
    )
    return {
        "scenario": scenario,
        "strategy": strategy,
        "tasks": len(woke),
        "status_requests": ledger.status_polls,
        "requests_per_task": ledger.status_polls / len(woke),
        "added_p50": statistics.median(added),
        "added_p95": added[min(len(added) - 1, int(0.95 * len(added)))],
        "added_max": added[-1],
        "wall_seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time() - cpu,
        "poller": stats,
    }


def _schedule(text: str) -> PollSchedule:
    # "name=value,..." overrides of the default PollSchedule, for exploring.
    fields: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        fields[name.strip()] = (
            value.strip() == "true" if value in ("true", "false") else float(value)
        )

    return PollSchedule(**fields)


def _summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # One row per scenario and strategy: the median of its repeated runs.
    rows = []
    for scenario in SCENARIOS:
        for strategy in STRATEGIES:
            mine = [
                r
                for r in runs
                if (r["scenario"], r["strategy"]) == (scenario, strategy)
            ]
            if mine:
                row = {key: mine[0][key] for key in ("scenario", "strategy", "tasks")}
                for key in _FIGURES:
                    row[key] = statistics.median(r[key] for r in mine)

                row["runs"] = len(mine)
                row["poller"] = mine[-1]["poller"]
                rows.append(row)

    return rows


_FIGURES = (
    "requests_per_task",
    "added_p50",
    "added_p95",
    "added_max",
    "wall_seconds",
    "cpu_seconds",
)


def _ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for scenario in SCENARIOS:
        by = {r["strategy"]: r for r in rows if r["scenario"] == scenario}
        if "naive" in by and "shared" in by:
            naive, shared = by["naive"], by["shared"]
            out[scenario] = {
                key: shared[key] / naive[key]
                for key in ("requests_per_task", "added_p50", "added_p95")
            }

    return out


def _table(rows: list[dict[str, Any]], ratios: dict[str, dict[str, float]]) -> str:
    lines = [
        f"{'scenario':<12} {'strategy':<8} {'tasks':>6} {'runs':>4} {'req/task':>9} "
        f"{'added p50':>10} {'added p95':>10} {'wall s':>7} {'cpu s':>6}"
    ]
    for r in rows:
        lines.append(
            f"{r['scenario']:<12} {r['strategy']:<8} {r['tasks']:>6} {r['runs']:>4} "
            f"{r['requests_per_task']:>9.3f} {r['added_p50']:>9.3f}s "
            f"{r['added_p95']:>9.3f}s {r['wall_seconds']:>7.1f} "
            f"{r['cpu_seconds']:>6.1f}"
        )

    lines.append("")
    for scenario, ratio in ratios.items():
        lines.append(
            f"{scenario:<12} shared/naive: requests per task "
            f"{ratio['requests_per_task']:.3f}x, added p50 {ratio['added_p50']:.2f}x, "
            f"added p95 {ratio['added_p95']:.2f}x"
        )

    for r in rows:
        if r["poller"]:
            lines.append(f"{r['scenario']:<12} shared poller (last run): {r['poller']}")

    return "\n".join(lines)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs; medians shown")
    parser.add_argument("--median", type=float, default=3.0, help="scenario 1 (s)")
    parser.add_argument("--sigma", type=float, default=0.5, help="scenario 1")
    parser.add_argument("--work", type=float, default=0.05, help="scenario 2 (s)")
    parser.add_argument("--interval", type=float, default=1.0, help="naive (s)")
    parser.add_argument("--rps", type=float, default=5000.0, help="shared budget")
    parser.add_argument("--concurrency", type=int, default=64, help="shared cap")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument(
        "--schedule", default="", help="PollSchedule overrides: name=value,..."
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--out", help="also write the JSON report to this file")
    return parser.parse_args()


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    # Strategies alternate within each repetition, so that a machine busy with
    # other work weighs on both alike.
    runs = [
        await _run(scenario, strategy, args)
        for scenario in args.scenarios.split(",")
        for _ in range(args.repeat)
        for strategy in args.strategies.split(",")
    ]
    rows = _summary(runs)
    ratios = _ratios(rows)
    report = {"summary": rows, "ratios_vs_naive": ratios, "runs": runs}
    print(
        json.dumps(report, indent=2) if args.json else _table(rows, ratios), flush=True
    )
    return report


if __name__ == "__main__":
    arguments = _parse()
    result = anyio.run(_main, arguments)
    if arguments.out:
        with open(arguments.out, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=2)
