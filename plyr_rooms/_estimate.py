# How the first-check delay is estimated from first checks: a quantile of the
# completion times, read off an isotonic fit of "completed by then" answers.
"""Estimate a quantile of completion times from status answers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["quantile"]

# Beyond the range the answers cover the estimate reaches out by at most
# _REACH, and only that far on _REACH_EVIDENCE answers within a factor _NEAR of
# the edge.
_REACH = 1.5
_REACH_EVIDENCE = 8
_NEAR = 1.2


def quantile(
    observations: Iterable[tuple[float, bool]], share: float
) -> tuple[float, bool]:
    # The time by which *share* of tasks complete, from (time, completed) pairs:
    # an isotonic (pool-adjacent-violators) fit of the completion curve, read
    # where it crosses *share*. Beyond the data, reach out by a factor that
    # grows with the observations near the edge (never on one lone sample).
    points = sorted(observations)
    blocks: list[list[float]] = []  # [completed, count, first time, last time]
    for when, done in points:
        blocks.append([float(done), 1.0, when, when])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] >= (
            blocks[-1][0] * blocks[-2][1]
        ):
            done_sum, count, _, last = blocks.pop()
            blocks[-1][0] += done_sum
            blocks[-1][1] += count
            blocks[-1][3] = last

    previous: tuple[float, float] | None = None
    for done_sum, count, first, last in blocks:
        level = done_sum / count
        middle = math.sqrt(first * last)
        if level >= share:
            if previous is None:
                near = sum(1 for when, _ in points if when <= first * _NEAR)
                reach = math.pow(_reach(near), (level - share) / (1 - share))
                return first / reach, False

            # Interpolate in log time between the two block middles.
            low_time, low_level = previous
            part = (share - low_level) / (level - low_level)
            log_time = math.log(low_time)
            return math.exp(log_time + part * (math.log(middle) - log_time)), True

        previous = (middle, level)

    done_sum, count, _, last = blocks[-1]
    near = sum(1 for when, _ in points if when >= last / _NEAR)
    return last * math.pow(_reach(near), (share - done_sum / count) / share), False


def _reach(evidence: int) -> float:
    return 1 + (_REACH - 1) * min(1.0, evidence / _REACH_EVIDENCE)
