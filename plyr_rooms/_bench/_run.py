"""The driver: one fresh simulator and one measured client per strategy."""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING, Any, Protocol

from ._client_job import run_strategy
from ._config import walk_of
from ._metrics import ratios, summarize
from ._pipe import ChildProcess
from ._simproc import SimProcess, sim_settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._config import BenchConfig, Target

__all__ = ["ProgressSink", "machine", "run_bench"]

_CLIENT_MODULE = "plyr_rooms._bench._client_child"
# The per-request CPU comparison reads a finished task: any short latency will do.
_CPU_LATENCY = "fixed:0.01"


class ProgressSink(Protocol):
    """Told how a strategy's rooms are going (the command line draws a bar)."""

    def __call__(self, strategy: str, ended: int, failed: int, total: int) -> None:
        """Report *ended* and *failed* rooms of *total* for *strategy*."""


async def run_bench(
    config: BenchConfig,
    *,
    endpoint: Target | None = None,
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """Run every strategy of *config* on the same workload; return the report.

    Each strategy gets a fresh simulator process with the same seed (or, with
    *endpoint*, the real service) and, when ``config.isolate``, a fresh client
    process. The report's ``strategies`` map holds each strategy's figures (raw
    samples under ``"samples"``), ``ratios_vs_naive`` their ratios, and
    ``cpu_per_request`` the bare-aiohttp comparison.
    """
    started = time.time()
    summaries: dict[str, dict[str, Any]] = {}
    for strategy in config.strategies:
        summaries[strategy] = await _run_one(config, strategy, endpoint, progress)

    cpu = None
    if config.cpu_requests > 0 and endpoint is None:
        cpu = await _run_cpu(config)

    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "config": config.to_json(),
        "endpoint": "simulator" if endpoint is None else endpoint.url,
        "strategies": summaries,
        "ratios_vs_naive": ratios(summaries),
        "cpu_per_request": cpu,
    }
    report["checks"] = checks(report)
    return report


async def _run_one(
    config: BenchConfig,
    strategy: str,
    endpoint: Target | None,
    progress: ProgressSink | None,
) -> dict[str, Any]:
    def report(ended: int, failed: int) -> None:
        if progress is not None:
            progress(strategy, ended, failed, config.rooms)

    load_before = os.getloadavg()[0]
    if endpoint is not None:
        job = await _client(config, endpoint, {"strategy": strategy}, report)
        summary = summarize(strategy, config, job, None, None)
    else:
        async with await SimProcess.start(sim_settings(config)) as sim:
            before = await sim.stats()
            job = await _client(config, sim.target, {"strategy": strategy}, report)
            after = await sim.stats()

        summary = summarize(strategy, config, job, before, after)

    # Other work on the machine inflates latency and CPU figures: say how busy.
    summary["load_average"] = [load_before, os.getloadavg()[0]]
    return summary


async def _run_cpu(config: BenchConfig) -> dict[str, Any]:
    settings = sim_settings(config)
    settings.update(latency=_CPU_LATENCY, workers=None, faults="", players=1)
    async with await SimProcess.start(settings) as sim:
        job = {"kind": "cpu"}
        if config.isolate:
            return await _client(config, sim.target, job, None)

        from ._cpu import compare_request_cpu

        return await compare_request_cpu(sim.target, config.cpu_requests)


async def _client(
    config: BenchConfig,
    target: Target,
    job: Mapping[str, Any],
    report: Any,
) -> dict[str, Any]:
    # The measured client: a child process (clean CPU and RSS), or this one.
    if not config.isolate:
        return await run_strategy(config, target, job["strategy"], report)

    child = await ChildProcess.start(_CLIENT_MODULE)
    try:
        await child.send(
            {
                "kind": "rooms",
                **job,
                "config": config.to_json(),
                "target": target.to_json(),
            }
        )
        while True:
            message = await child.receive()
            if "progress" in message and report is not None:
                report(*message["progress"])
            elif "result" in message:
                result: dict[str, Any] = message["result"]
                return result
    finally:
        await child.close()


def machine() -> dict[str, Any]:
    """Describe this machine: cores, CPU model, Python, platform."""
    model = None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the issue's targets that this run's workload can speak to."""
    found: list[dict[str, Any]] = []
    summaries = report["strategies"]
    config = report["config"]
    ours = next((n for n in ("shared", "shared-tasks") if n in summaries), None)
    naive = summaries.get("naive")
    if ours is not None and naive is not None:
        found.append(_requests_check(config, ours, summaries[ours], naive))

    if ours is not None:
        cpu_ms = summaries[ours]["client_cpu_ms_per_room"]
        found.append(
            {
                "target": f"{ours}: client CPU per room <= 5 ms",
                "measured": f"{cpu_ms:.2f} ms",
                "met": cpu_ms <= 5.0,
            }
        )

    cpu = report.get("cpu_per_request")
    if cpu and cpu.get("ratio") is not None:
        found.append(
            {
                "target": "client CPU per request <= 1.5 x bare aiohttp",
                "measured": f"x{cpu['ratio']:.2f}",
                "met": cpu["ratio"] <= 1.5,
            }
        )

    for name, summary in summaries.items():
        walk, store = walk_of(name)
        if walk in ("shared", "shared-tasks", "atomic"):
            found.append(_load_check(name, summary))

        if store != "journal":
            continue

        for base, against in (
            (walk, "without the journal"),
            (f"{walk}+discard", "of a journal that writes nothing"),
        ):
            if base in summaries:
                found.append(_journal_check(name, summary, summaries[base], against))

    return found


def _requests_check(
    config: dict[str, Any],
    name: str,
    ours: dict[str, Any],
    naive: dict[str, Any],
) -> dict[str, Any]:
    p50, naive_p50 = ours["added_latency_s"]["p50"], naive["added_latency_s"]["p50"]
    latency_ok = p50 is not None and naive_p50 is not None and p50 <= naive_p50
    per_task, naive_per_task = ours["status_per_task"], naive["status_per_task"]
    measured = (
        f"{per_task:.2f} status requests/task (naive {naive_per_task:.2f}), "
        f"added p50 {_ms(p50)} (naive {_ms(naive_p50)})"
    )
    if config["workers"] == 1:
        return {
            "target": f"sequential consumer: {name} <= 1.5 status requests/task "
            "at a median added latency <= naive's",
            "measured": measured,
            "met": per_task <= 1.5 and latency_ok,
        }

    ratio = per_task / naive_per_task if naive_per_task else float("inf")
    return {
        "target": f"independent latencies: {name} <= 0.75 x naive's status "
        "requests/task at a median added latency <= naive's",
        "measured": f"x{ratio:.2f}; " + measured,
        "met": ratio <= 0.75 and latency_ok,
    }


def _load_check(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    errors = summary["rooms_failed"]
    rss = summary["peak_rss_mb"]
    return {
        "target": f"{name}: {summary['rooms']} rooms in flight, zero errors, "
        "peak client RSS < 400 MB",
        "measured": f"{errors} failed rooms, {rss:.0f} MB",
        "met": errors == 0 and rss < 400,
    }


def _journal_check(
    name: str, ours: dict[str, Any], base: dict[str, Any], against: str
) -> dict[str, Any]:
    # "Does not limit throughput", read as: within 10 %, about this harness's
    # run-to-run noise, of the same walk in the same run without a journal or,
    # with *against* naming it, with a journal that writes nothing (see
    # walk_of): the store's own cost, apart from what waiting costs the loop.
    mine, theirs = ours["rooms_per_s"], base["rooms_per_s"]
    ratio = mine / theirs if mine and theirs else 0.0
    return {
        "target": f"{name}: >= 0.9 x the rooms per second {against}",
        "measured": f"x{ratio:.2f} ({mine or 0:.1f} vs {theirs or 0:.1f} rooms/s)",
        "met": ratio >= 0.9,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"
