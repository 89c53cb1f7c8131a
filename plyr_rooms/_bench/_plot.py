"""Pictures of a benchmark report (needs the ``bench`` extra: matplotlib)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["plot"]


def plot(report: dict[str, Any], path: str) -> None:
    """Draw added-latency distributions and status requests per second to *path*.

    Raises:
        ImportError: if matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries: dict[str, dict[str, Any]] = report["strategies"]
    figure, (latency_axes, rate_axes) = plt.subplots(1, 2, figsize=(13, 5))
    for number, (name, summary) in enumerate(summaries.items()):
        color = f"C{number}"  # one color per strategy in both panels
        added = sorted(summary["samples"]["added_latency_s"])
        if added:
            # One curve per strategy: the share of steps returned within x.
            fractions = [(i + 1) / len(added) for i in range(len(added))]
            latency_axes.step(
                [a * 1000 for a in added], fractions, label=name, color=color
            )

        times = summary["samples"]["status_times_s"]
        seconds = math.ceil(max(times, default=summary["wall_s"])) + 1
        counts = [0] * seconds
        for stamp in times:
            counts[int(stamp)] += 1

        rate_axes.plot(range(seconds), counts, label=name, color=color)

    config = report["config"]
    title = (
        f"{config['rooms']} rooms x {config['players']} players, "
        f"latency {config['latency']}, workers {config['workers'] or 'unbounded'}"
    )
    figure.suptitle(title)
    latency_axes.set_xscale("symlog", linthresh=10)
    latency_axes.set_xlabel("added latency: task completed -> step returned (ms)")
    latency_axes.set_ylabel("share of steps")
    latency_axes.grid(True, alpha=0.3)
    latency_axes.legend()
    rate_axes.set_xlabel("seconds since the strategy's start")
    rate_axes.set_ylabel("status requests per second (client)")
    rate_axes.grid(True, alpha=0.3)
    rate_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
