# The poll-schedule budget: the settings that say when the poller checks tasks,
# and the arithmetic of its delays. The scheduler in _schedule applies them.
"""The poller's poll schedule."""

from __future__ import annotations

import math

import attrs

__all__ = ["PollSchedule"]


def _positive(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _fraction(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{attribute.name} must be in (0, 1), got {value!r}")


@attrs.frozen
class PollSchedule:
    """When the poller checks tasks: its poll-schedule budget, in seconds.

    The defaults follow the service's polling advice (checks of one task one to
    two seconds apart) in load rather than letter: a task is first checked when
    about 45% of its method's tasks have completed, then 0.55 s later, backing
    off by 10% per check to one check every 2 s. Over its life a task is checked
    less than once a second (about 0.7 times as often as a one-second loop on
    log-normal latencies), and about once in all when the queue model applies.

    Attributes:
        first_delay: delay from submission to the first check of a task whose
            method has not been learned yet.
        first_quantile: share of tasks the first check should find settled; the
            learned first-check delay tracks this quantile of completion times.
        min_first_delay: lower bound of any first-check delay.
        max_first_delay: upper bound of the learned first-check delay.
        interval: delay between the first and the second check of a task.
        backoff: factor applied to the interval after each further check.
        max_interval: cap on the delay between two checks of one task.
        jitter: every delay is multiplied by a random factor within
            ``1 ± jitter``, so that tasks never poll in lock-step.
        max_defer: the most the queue model may move a check past the task's
            own schedule (a hard cap: every task keeps being checked).
        error_interval: delay after a failed check (5xx, transport error);
            doubles with each further failure of the same task.
        max_error_interval: cap on that delay.
        rate_limit_pause: pause of all checks after a 429 without Retry-After;
            doubles with each further such 429.
        max_rate_limit_pause: cap on any pause, also on the server's Retry-After.
        sweep_spacing: least time between two sweeps; tasks due within it are
            checked together.
        ordered: whether to use the queue model at all.
    """

    first_delay: float = attrs.field(default=1.0, validator=_positive)
    first_quantile: float = attrs.field(default=0.45, validator=_fraction)
    min_first_delay: float = attrs.field(default=0.02, validator=_positive)
    max_first_delay: float = attrs.field(default=30.0, validator=_positive)
    interval: float = attrs.field(default=0.55, validator=_positive)
    backoff: float = attrs.field(default=1.1)
    max_interval: float = attrs.field(default=2.0, validator=_positive)
    jitter: float = attrs.field(default=0.1)
    max_defer: float = attrs.field(default=30.0, validator=_positive)
    error_interval: float = attrs.field(default=0.5, validator=_positive)
    max_error_interval: float = attrs.field(default=10.0, validator=_positive)
    rate_limit_pause: float = attrs.field(default=1.0, validator=_positive)
    max_rate_limit_pause: float = attrs.field(default=60.0, validator=_positive)
    sweep_spacing: float = attrs.field(default=0.05)
    ordered: bool = True

    def __attrs_post_init__(self) -> None:
        if self.backoff < 1:
            raise ValueError(f"backoff must be at least 1, got {self.backoff!r}")

        if not 0 <= self.jitter < 0.5:
            raise ValueError(f"jitter must be in [0, 0.5), got {self.jitter!r}")

        if self.sweep_spacing < 0:
            raise ValueError(f"sweep_spacing must be >= 0, got {self.sweep_spacing!r}")

        if not self.min_first_delay <= self.first_delay <= self.max_first_delay:
            raise ValueError("need min_first_delay <= first_delay <= max_first_delay")

    def interval_after(self, checks: int) -> float:
        """Return the un-jittered delay after the *checks*-th check (1-based)."""
        steps = max(0, checks - 1)
        # Stop multiplying once the cap is reached (also avoids float overflow).
        if self.backoff > 1:
            limit = math.log(self.max_interval / self.interval) / math.log(self.backoff)
            steps = min(steps, max(0, math.ceil(limit)))

        return min(self.max_interval, self.interval * self.backoff**steps)

    def error_delay(self, errors: int) -> float:
        """Return the un-jittered delay after *errors* failed checks in a row."""
        doublings = min(max(0, errors - 1), 30)
        return min(self.max_error_interval, self.error_interval * 2.0**doublings)

    def longest_wait(self) -> float:
        """Return a bound on the time between two checks of one task.

        Counted from the task's submission or its last check; pauses after a 429
        come on top.
        """
        longest = max(self.max_first_delay, self.max_interval, self.max_error_interval)
        return longest * (1 + self.jitter) + self.max_defer
