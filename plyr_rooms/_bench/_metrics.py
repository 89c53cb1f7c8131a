"""From raw records to the figures a benchmark reports, and their table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._config import STEPS_PER_ROOM

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._config import BenchConfig

__all__ = ["percentiles", "ratios", "summarize", "table"]

_MB = 1024.0  # ru_maxrss is in KiB on Linux


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Return p50, p95, p99, mean and max of *values* (None when empty)."""
    if not values:
        return dict.fromkeys(("p50", "p95", "p99", "mean", "max"))

    ordered = sorted(values)
    return {
        "p50": _quantile(ordered, 0.50),
        "p95": _quantile(ordered, 0.95),
        "p99": _quantile(ordered, 0.99),
        "mean": math.fsum(ordered) / len(ordered),
        "max": ordered[-1],
    }


def _quantile(ordered: list[float], q: float) -> float:
    # Linear interpolation between the closest ranks.
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _status_requests(sim: dict[str, Any]) -> int:
    routes = sim.get("requests_by_route", {})
    counted = sum(n for route, n in routes.items() if "/task/status" in route)
    return counted or int(sim.get("status_polls", 0))


def summarize(
    strategy: str,
    config: BenchConfig,
    job: dict[str, Any],
    sim_before: dict[str, Any] | None,
    sim_after: dict[str, Any] | None,
) -> dict[str, Any]:
    """Return one strategy's figures, with its raw samples under ``"samples"``.

    *sim_before* / *sim_after* are the simulator's stats around the run, or None
    against a real endpoint (then task counts and status requests are the
    client's own, and added latency is unknown).
    """
    steps = job["steps"]
    completed: dict[str, float] = {}
    if sim_after is not None:
        completed = {
            task_id: done
            for task_id, _method, _sub, done, _state in sim_after["tasks"]
            if done is not None
        }

    added = [
        returned - completed[task_id]
        for _room, _step, task_id, _started, returned in steps
        if task_id in completed
    ]
    by_step: dict[str, list[float]] = {}
    for _room, step, task_id, _started, returned in steps:
        if task_id in completed:
            by_step.setdefault(step, []).append(returned - completed[task_id])

    step_latency = [returned - started for _r, _s, _t, started, returned in steps]
    wall = job["finished"] - job["started"]
    client_requests = sum(job["client_requests"].values())
    if sim_after is not None:
        tasks = len(sim_after["tasks"])
        status = _status_requests(sim_after)
        rate_limited = sim_after["rate_limited"]
        sim_cpu: float | None = sim_after["cpu"] - (sim_before or sim_after)["cpu"]
    else:
        tasks = sum(1 for row in steps if row[2] is not None)
        status = len(job["status_times"])
        rate_limited = job["client_errors"].get("RateLimited", 0)
        sim_cpu = None

    return {
        "rooms": config.rooms,
        "players": config.players,
        "rooms_ended": job["rooms_ended"],
        "rooms_failed": job["rooms_failed"],
        "errors": job["errors"],
        "first_error": job["first_error"],
        "tasks_expected": config.rooms * STEPS_PER_ROOM[strategy],
        "tasks": tasks,
        "steps_returned": len(steps),
        "status_requests": status,
        "status_requests_client": len(job["status_times"]),
        "status_per_task": status / tasks if tasks else None,
        "added_latency_s": percentiles(added),
        "added_latency_by_step_s": {k: percentiles(v) for k, v in by_step.items()},
        "step_latency_s": percentiles(step_latency),
        "wall_s": wall,
        "rooms_per_s": job["rooms_ended"] / wall if wall > 0 else None,
        "client_cpu_s": job["cpu"],
        "client_cpu_ms_per_room": job["cpu"] / config.rooms * 1000,
        "client_cpu_user_s": job.get("cpu_user"),
        "client_cpu_sys_s": job.get("cpu_sys"),
        "client_requests": client_requests,
        "client_cpu_us_per_request": (
            job["cpu"] / client_requests * 1e6 if client_requests else None
        ),
        "peak_rss_mb": job["max_rss_kb"] / _MB,
        "rate_limited": rate_limited,
        "client_retries": job["client_retries"],
        "sim_cpu_s": sim_cpu,
        "profile": job.get("profile"),
        "poller": job.get("poller"),
        "journal": job.get("journal"),
        "gc": job.get("gc"),
        "samples": {
            "added_latency_s": added,
            "status_times_s": [t - job["started"] for t in job["status_times"]],
        },
    }


# (label, key path, how to read the ratio) for the ratios against naive.
_RATIO_KEYS = (
    ("status_per_task", ("status_per_task",)),
    ("added_p50", ("added_latency_s", "p50")),
    ("added_p99", ("added_latency_s", "p99")),
    ("step_p50", ("step_latency_s", "p50")),
    ("client_cpu_per_room", ("client_cpu_ms_per_room",)),
    ("peak_rss", ("peak_rss_mb",)),
    ("rooms_per_s", ("rooms_per_s",)),
)


def _get(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None

    return float(value) if isinstance(value, int | float) else None


def ratios(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Return each strategy's figures divided by naive's (empty without naive)."""
    base = summaries.get("naive")
    if base is None:
        return {}

    out: dict[str, dict[str, float | None]] = {}
    for name, summary in summaries.items():
        row: dict[str, float | None] = {}
        for label, path in _RATIO_KEYS:
            mine, theirs = _get(summary, path), _get(base, path)
            row[label] = mine / theirs if mine is not None and theirs else None

        out[name] = row

    return out


_ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("rooms ended / failed", lambda s: f"{s['rooms_ended']} / {s['rooms_failed']}"),
    ("tasks (expected)", lambda s: f"{s['tasks']} ({s['tasks_expected']})"),
    ("rooms per second", lambda s: _num(s["rooms_per_s"], 1)),
    ("status requests", lambda s: str(s["status_requests"])),
    ("status requests / task", lambda s: _num(s["status_per_task"], 2)),
    ("added latency p50 (ms)", lambda s: _ms(s["added_latency_s"]["p50"])),
    ("added latency p95 (ms)", lambda s: _ms(s["added_latency_s"]["p95"])),
    ("added latency p99 (ms)", lambda s: _ms(s["added_latency_s"]["p99"])),
    ("step latency p50 (s)", lambda s: _num(s["step_latency_s"]["p50"], 2)),
    ("step latency p99 (s)", lambda s: _num(s["step_latency_s"]["p99"], 2)),
    ("client CPU / room (ms)", lambda s: _num(s["client_cpu_ms_per_room"], 2)),
    ("  of which user / sys (s)", lambda s: _split(s)),
    ("  of which journal writer (s)", lambda s: _journal_cpu(s.get("journal"))),
    ("  garbage collection (s)", lambda s: _gc(s.get("gc"))),
    ("client CPU / request (us)", lambda s: _num(s["client_cpu_us_per_request"], 0)),
    ("journal writes / commits", lambda s: _journal_writes(s.get("journal"))),
    ("peak client RSS (MB)", lambda s: _num(s["peak_rss_mb"], 0)),
    ("simulator CPU (s)", lambda s: _num(s["sim_cpu_s"], 1)),
    ("429s", lambda s: str(s["rate_limited"])),
    ("load average before / after", lambda s: _load(s.get("load_average"))),
    ("errors", lambda s: _errors(s["errors"])),
)


def _num(value: float | None, places: int) -> str:
    return "-" if value is None else f"{value:,.{places}f}"


def _pair(values: list[float]) -> str:
    return f"{values[0]:.0f} / {values[1]:.0f}"


def _load(pair: list[float] | None) -> str:
    return "-" if not pair else f"{pair[0]:.1f} / {pair[1]:.1f}"


def _split(summary: dict[str, Any]) -> str:
    user, system = summary.get("client_cpu_user_s"), summary.get("client_cpu_sys_s")
    if user is None or system is None:
        return "-"

    return f"{user:.1f} / {system:.1f}"


def _gc(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"

    full = stats["collections"][2]
    return f"{stats['seconds']:.1f} ({full} full)"


def _journal_cpu(stats: dict[str, Any] | None) -> str:
    return "-" if not stats else f"{stats['writer_cpu_seconds']:.1f}"


def _journal_writes(stats: dict[str, Any] | None) -> str:
    return "-" if not stats else f"{stats['writes']} / {stats['transactions']}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "0"


def table(report: dict[str, Any]) -> str:
    """Return the report as a fixed-width text table, strategies as columns."""
    summaries: dict[str, dict[str, Any]] = report["strategies"]
    names = list(summaries)
    rows = [["", *names]]
    rows += [[label, *(cell(summaries[n]) for n in names)] for label, cell in _ROWS]
    for label, _path in _RATIO_KEYS:
        values = [report["ratios_vs_naive"].get(n, {}).get(label) for n in names]
        if any(v is not None for v in values):
            rows.append([f"{label} vs naive", *(_num(v, 2) for v in values)])

    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    cpu = report.get("cpu_per_request")
    if cpu:
        lines.append("")
        lines.append(
            f"CPU per status request: bare aiohttp {cpu['bare_cpu_us']:.0f} us, "
            f"PlyrClient.task_status {cpu['client_cpu_us']:.0f} us "
            f"(x{cpu['ratio']:.2f}, {cpu['requests_per_side']} requests each)"
        )
        spread = cpu.get("round_ratios")
        if spread:
            lines.append(
                f"  user/sys us: bare {_pair(cpu['bare_user_sys_us'])}, client "
                f"{_pair(cpu['client_user_sys_us'])}; ratio per round min/median/max "
                f"{spread[0]:.2f} / {spread[1]:.2f} / {spread[2]:.2f}"
            )

    for check in report.get("checks", []):
        verdict = "met" if check["met"] else "MISSED"
        lines.append(f"[{verdict}] {check['target']}: {check['measured']}")

    return "\n".join(lines)
