# When each watched task is checked next: the poller's scheduling logic, kept free
# of I/O so that hypothesis can drive it directly. Nothing here awaits, sleeps or
# reads a clock; every method that needs the time takes ``now`` (seconds on the
# same clock as ``TaskRef.submitted_at``, i.e. ``time.monotonic()``).
#
# Three things decide a task's next check:
#
# * its own schedule: the first check comes after the delay learned for its
#   method (a quantile of completion times, fitted to its latest first checks),
#   later checks back off gently to a cap, each delay jittered;
# * the queue model: when completions are seen in submission order (the real
#   service has one sequential consumer), the observed pace of the queue says
#   when it will reach a task, and a task behind one just seen PENDING waits;
# * a hard cap: the queue model never moves a check more than ``max_defer``
#   seconds past the task's own schedule, so no task is ever starved.
"""Pure scheduling logic of the task poller."""

from __future__ import annotations

import collections
import enum
import math
import random
from typing import TYPE_CHECKING

import attrs

from ._due_index import KeyHeap, SortedRun, merge_due
from ._estimate import quantile
from ._poll_schedule import PollSchedule

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Outcome", "PollSchedule", "Scheduler"]

# After this many unsettled answers to checks placed by the queue model, a task is
# treated as a straggler and goes back to its own schedule.
_ORDERED_TRIES = 3
# The queue model is trusted after this many PENDING answers seen next to settled
# ones in the same sweep, once a smoothed share of at least _ORDER_TRUST of them
# came after every settled task (as in a queue served in submission order).
_ORDER_EVIDENCE = 32
_ORDER_TRUST = 0.9
_ORDER_SMOOTHING = 0.05
# Share of queue-model checks that should still find the task PENDING: a little
# early is what keeps the predicted pace honest.
_PACE_QUANTILE = 0.15
_PACE_RATE = 0.5
_PACE_BOUNDS = (0.001, 60.0)
# Until a method has this many observations, only a few of its tasks get their
# first check per _PROBE_PERIOD seconds (_PROBE_MIN plus a quarter of what was
# observed), so that a burst of submissions teaches the delay before it is
# spent. The quota is per time, not per sweep, so that it does not grow with
# the sweep rate.
_PROBE_UNTIL = 128
_PROBE_MIN = 8
_PROBE_PERIOD = 0.05
# The learned delay rests on this many latest first checks per method.
_WINDOW = 256
# Once a method is learned (past _PROBE_UNTIL and bracketed), its delay is
# fitted again after this many new first checks rather than after every sweep:
# one fit reads the whole window, and a few answers barely move it.
_REFIT_EVERY = 8
# First-check jitter follows the learned delay within this factor.
_RESCALE = 1.25


class Outcome(enum.Enum):
    """What one status check said, as far as scheduling is concerned."""

    #: The task is still queued or running.
    PENDING = "pending"
    #: Nothing learned (NOT_FOUND within its grace): check again on its schedule.
    UNKNOWN = "unknown"
    #: The task reached SUCCESS or FAILED; it leaves the schedule.
    SETTLED = "settled"
    #: The check itself failed (5xx, transport): retry with backoff.
    ERROR = "error"
    #: The check was not made (paused by a 429): keep the schedule as it was.
    SKIPPED = "skipped"


@attrs.define(eq=False)
class _Task:
    task_id: str
    method: str
    submitted_at: float
    # Registration order: the queue model's notion of submission order.
    ordinal: int
    # Jitter of the first check, as a share of a delay (within ±jitter).
    share: float
    # submitted_at + share * the method's jitter scale, set when the task is
    # indexed: unchecked tasks of a method keep this order whatever delay is
    # learned, and their due times are computed from this very float, so that
    # the index's bounds never exceed them.
    first_key: float = 0.0
    checks: int = 0
    last_check: float | None = None
    # Lower end of the bracket on the completion time: last time seen PENDING.
    last_pending: float | None = None
    # Own-schedule due time once the first check was made (None before it).
    next_check: float | None = None
    errors: int = 0
    ordered_tries: int = 0
    straggler: bool = False
    in_flight: bool = False
    # When the current check was picked, and whether the queue model placed it.
    picked_at: float = 0.0
    predicted: bool = False
    # Bumped whenever the task is placed in the due indices or taken out of
    # them: only index entries carrying the current slot are live.
    slot: int = 0


class Scheduler:
    """Decide which watched tasks are due, and learn from what checks find.

    Args:
        schedule: the poll schedule.
        rng: source of jitter (seeded in tests).
    """

    def __init__(
        self, schedule: PollSchedule, rng: random.Random | None = None
    ) -> None:
        self.schedule = schedule
        self._rng = rng or random.Random()
        self._tasks: dict[str, _Task] = {}
        self._ordinal = 0
        # log of the learned first-check delay per method
        self._log_delay: dict[str, float] = {}
        self._observed: dict[str, int] = {}
        # Per method, the observation count at its latest fit.
        self._fitted_at: dict[str, int] = {}
        # Per method being learned: first checks it may still make, and when
        # that allowance was last topped up.
        self._probe_allowance: dict[str, tuple[float, float]] = {}
        # Per method, the latest first checks: (seconds after submission, settled).
        self._first_checks: dict[str, collections.deque[tuple[float, bool]]] = {}
        # Methods whose first checks fall on both sides of the learned delay.
        self._bracketed: set[str] = set()
        # Queue model: share of tasks seen completing in submission order, how
        # many tasks that share rests on, the highest ordinal seen settled, the
        # seconds the queue spends per task, and where the queue stood when.
        self._order = 0.5
        self._order_evidence = 0
        self._max_settled = -1
        self._pace = 0.1
        self._anchor: tuple[float, int] | None = None
        self._paused_until = 0.0
        self._pauses = 0
        # Every task not in flight sits in exactly one of the first two indices:
        # checked ones by own due time, split by whether the queue model may
        # place them; unchecked ones per (method, may be placed) by submission
        # time plus offset, the order of their own due times. Unchecked tasks
        # the queue model may place are also kept per method by submission
        # time, and checked ones in the queue line, by ordinal.
        self._checked: dict[bool, KeyHeap[_Task]] = {
            False: KeyHeap(),
            True: KeyHeap(),
        }
        self._unchecked: collections.defaultdict[tuple[str, bool], SortedRun[_Task]] = (
            collections.defaultdict(SortedRun)
        )
        self._unchecked_line: collections.defaultdict[str, SortedRun[_Task]] = (
            collections.defaultdict(SortedRun)
        )
        self._line: SortedRun[_Task] = SortedRun()
        # Per method, the delay that first-check jitter is a share of: the
        # learned delay, updated (and the unchecked tasks indexed anew) only
        # when the two part by more than _RESCALE, so that the order holds.
        self._jitter_scale: dict[str, float] = {}
        # The earliest due time of a task not in flight (None: no such task),
        # while _earliest_known; any change but an addition forgets it.
        self._earliest: float | None = None
        self._earliest_known = False

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    @property
    def ordered(self) -> bool:
        """True while the queue model is trusted to place checks."""
        return (
            self.schedule.ordered
            and self._order_evidence >= _ORDER_EVIDENCE
            and self._order >= _ORDER_TRUST
        )

    @property
    def pace(self) -> float:
        """Seconds the queue is believed to spend per task (the queue model)."""
        return self._pace

    @property
    def paused_until(self) -> float:
        """Time before which no check may be made (after a 429)."""
        return self._paused_until

    def learned_delays(self) -> dict[str, float]:
        """Return the learned first-check delay per method (seconds)."""
        return {str(m): math.exp(v) for m, v in sorted(self._log_delay.items())}

    def first_delay(self, method: str) -> float:
        """Return the first-check delay currently used for *method*."""
        log_delay = self._log_delay.get(method)
        if log_delay is None:
            return self.schedule.first_delay

        return math.exp(log_delay)

    def add(self, task_id: str, method: str, submitted_at: float) -> None:
        """Start scheduling checks of a task (no-op if already scheduled)."""
        if task_id in self._tasks:
            return

        share = self.schedule.jitter * self._rng.uniform(-1.0, 1.0)
        self._jitter_scale.setdefault(method, self.first_delay(method))
        task = _Task(task_id, method, submitted_at, self._ordinal, share)
        self._tasks[task_id] = task
        self._ordinal += 1
        self._index(task)
        if self._earliest_known:
            due = self._due(task)
            self._earliest = due if self._earliest is None else min(self._earliest, due)

    def remove(self, task_id: str) -> None:
        """Stop checking a task; a check already in flight is ignored later."""
        task = self._tasks.pop(task_id, None)
        if task is not None:
            task.slot += 1
            self._earliest_known = False

    def due_at(self, task_id: str) -> float:
        """Return when the task is next due (ignoring pauses and in-flight state)."""
        return self._due(self._tasks[task_id])

    def next_due(self) -> float | None:
        """Return the earliest time a check may be made, or None if none waits."""
        if not self._earliest_known:
            first = next(merge_due(self._sources(), self._placement, math.inf), None)
            self._earliest = None if first is None else first[0]
            self._earliest_known = True

        if self._earliest is None:
            return None

        return max(self._earliest, self._paused_until)

    def pick(self, now: float, limit: int) -> list[str]:
        """Take up to *limit* due tasks, earliest first, and mark them in flight.

        Every picked task must later be passed to :meth:`record` (or removed).
        """
        if limit <= 0 or now < self._paused_until:
            return []

        due = merge_due(self._sources(), self._placement, now)
        return self._take(now, limit, due)

    def record(
        self,
        now: float,
        outcomes: Mapping[str, Outcome],
        read_at: Mapping[str, float] | None = None,
    ) -> None:
        """Apply what one sweep's checks found, learn from it, reschedule.

        Settled tasks leave the schedule; ids not picked (or since removed) are
        ignored. *read_at* gives, where known, when each status was read (the
        midpoint of its request); otherwise it is taken to be the midpoint of
        the pick and *now*.
        """
        # Only tasks this scheduler picked: a task removed and added again
        # while its check was out learns nothing from that check.
        found = [
            (task, outcome)
            for task_id, outcome in outcomes.items()
            if (task := self._tasks.get(task_id)) is not None and task.in_flight
        ]
        found.sort(key=lambda item: item[0].ordinal)
        self._learn_delays(now, found, read_at or {})
        self._learn_order(now, found)
        for task, outcome in found:
            self._reschedule(now, task, outcome)

        for task, _ in found:
            if self._tasks.get(task.task_id) is task:
                self._index(task)

        self._earliest_known = False

    def rate_limited(self, now: float, retry_after: float | None) -> float:
        """Pause every check after a 429 and return when checks may resume."""
        if retry_after is None:
            self._pauses += 1
            pause = self.schedule.rate_limit_pause * 2.0 ** min(self._pauses - 1, 30)
        else:
            pause = max(0.0, retry_after)

        pause = min(pause, self.schedule.max_rate_limit_pause)
        self._paused_until = max(self._paused_until, now + pause)
        return self._paused_until

    def checks_went_through(self) -> None:
        """Reset the 429 backoff after a sweep that was not rate limited."""
        self._pauses = 0

    # -- due times ------------------------------------------------------------

    def _own_due(self, task: _Task) -> float:
        if task.next_check is not None:
            return task.next_check

        floor = task.submitted_at + self.schedule.min_first_delay
        return max(floor, task.first_key + self.first_delay(task.method))

    def _uses_queue(self, task: _Task) -> bool:
        return self.ordered and _placeable(task)

    def _queue_on(self) -> bool:
        return self.ordered and self._anchor is not None

    def _lowest_first_delay(self, method: str) -> float:
        # A bound below _own_due of every unchecked task of *method*, less the
        # submission time: the least jitter, and a microsecond for rounding.
        least = -self.schedule.jitter * self._jitter_scale.get(method, 0.0)
        delay = self.first_delay(method) + least
        return max(self.schedule.min_first_delay, delay) - 1e-6

    def _floor(self, task: _Task) -> float:
        # The earliest the queue model may place the task's next check.
        if task.last_check is None:
            return task.submitted_at + self.schedule.min_first_delay

        return task.last_check + max(self.schedule.sweep_spacing, 1e-3)

    def _due(self, task: _Task) -> float:
        return self._placement(task)[0]

    def _placement(self, task: _Task) -> tuple[float, bool]:
        # When the task is due, and whether the queue model (rather than the
        # task's own schedule or the max_defer cap) put it there.
        own = self._own_due(task)
        if not self._uses_queue(task) or self._anchor is None:
            return own, False

        predicted = self._predict(task.ordinal)
        cap = own + self.schedule.max_defer
        placed = max(predicted, self._floor(task))
        return (placed, True) if placed < cap else (cap, False)

    # -- the due indices ------------------------------------------------------

    def _index(self, task: _Task) -> None:
        # Place a task that waits for a check (not in flight) in the indices.
        task.slot += 1
        placed = _placeable(task)
        if task.next_check is not None:
            self._checked[placed].push(task.next_check, task)
        else:
            scale = self._jitter_scale[task.method]
            task.first_key = task.submitted_at + task.share * scale
            self._unchecked[task.method, placed].add(task.first_key, task)
            if placed:
                self._unchecked_line[task.method].add(task.submitted_at, task)

        if placed and task.next_check is not None:
            self._line.add(task.ordinal, task)

    def _sources(self) -> list[Iterator[tuple[float, _Task]]]:
        # Each index read in the order of a lower bound of its tasks' due times
        # (see merge_due): checked tasks by their own due time, or that plus
        # max_defer when the queue model may place them earlier; unchecked ones
        # by submission plus offset plus the first-check delay (their own due
        # time but for the min_first_delay floor), or, for those the queue model
        # places, as _unchecked_in_line says; the queue line by its predicted
        # times.
        queue = self._queue_on()
        defer = self.schedule.max_defer
        sources = [self._checked[False].ordered()]
        placed = self._checked[True].ordered()
        sources.append(((k + defer, t) for k, t in placed) if queue else placed)
        for (method, placeable), run in self._unchecked.items():
            if not (queue and placeable):
                sources.append(_shifted(run.scan(), self.first_delay(method)))

        for method, run in self._unchecked_line.items() if queue else ():
            low = self._lowest_first_delay(method)
            sources.append(self._unchecked_in_line(run, low))

        if queue:
            sources.append((self._predict(t.ordinal), t) for _, t in self._line.scan())

        return sources

    def _unchecked_in_line(
        self, run: SortedRun[_Task], low: float
    ) -> Iterator[tuple[float, _Task]]:
        # Unchecked tasks the queue model places: due no earlier than the cap's
        # bound or than both the floor and the predicted time; the latter grows
        # along the run only while ordinals grow with submission times.
        defer = self.schedule.max_defer
        in_order = run.ordinals_sorted
        for submitted_at, task in run.scan():
            floor = submitted_at + self.schedule.min_first_delay
            if in_order:
                floor = max(floor, self._predict(task.ordinal))

            yield min(floor, submitted_at + low + defer), task

    def _take(
        self, now: float, limit: int, due: Iterable[tuple[float, bool, _Task]]
    ) -> list[str]:
        picked: list[str] = []
        for _, queued, task in due:
            if len(picked) >= limit:
                break

            if task.checks == 0 and not self.ordered and not self._may_probe(now, task):
                continue

            task.in_flight = True
            task.slot += 1
            self._earliest_known = False
            task.picked_at = now
            task.predicted = queued
            picked.append(task.task_id)

        return picked

    def _scan_pick(self, now: float, limit: int) -> list[str]:
        # Reference for tests: pick() from a scan of every watched task.
        if limit <= 0 or now < self._paused_until:
            return []

        due = [
            (when, queued, task)
            for task in self._tasks.values()
            if not task.in_flight
            for when, queued in [self._placement(task)]
            if when <= now
        ]
        due.sort(key=lambda item: (item[0], item[2].ordinal))
        return self._take(now, limit, due)

    def _scan_next_due(self) -> float | None:
        # Reference for tests: next_due() from a scan of every watched task.
        dues = [self._due(t) for t in self._tasks.values() if not t.in_flight]
        if not dues:
            return None

        return max(min(dues), self._paused_until)

    def _may_probe(self, now: float, task: _Task) -> bool:
        # Few first checks per probe period for a method still being learned:
        # while its delay is only extrapolated, a burst of submissions waits.
        seen = self._observed.get(task.method, 0)
        if seen >= _PROBE_UNTIL and task.method in self._bracketed:
            return True

        quota = _PROBE_MIN + seen // 4
        left, since = self._probe_allowance.get(task.method, (quota, now))
        left = min(quota, left + quota * max(0.0, now - since) / _PROBE_PERIOD)
        if left < 1:
            self._probe_allowance[task.method] = (left, now)
            return False

        self._probe_allowance[task.method] = (left - 1, now)
        return True

    def _reschedule(self, now: float, task: _Task, outcome: Outcome) -> None:
        task.in_flight = False
        if outcome is Outcome.SKIPPED:
            return

        if outcome is Outcome.SETTLED:
            self._tasks.pop(task.task_id, None)
            return

        jitter = 1 + self.schedule.jitter * self._rng.uniform(-1.0, 1.0)
        task.last_check = now
        if outcome is Outcome.ERROR:
            task.errors += 1
            task.next_check = now + self.schedule.error_delay(task.errors) * jitter
            return

        task.errors = 0
        task.checks += 1
        if outcome is Outcome.PENDING:
            task.last_pending = task.picked_at

        if task.predicted:
            # Not done where the queue model placed it (PENDING, or NOT_FOUND
            # still): after a few such checks, back to its own schedule.
            task.ordered_tries += 1
            task.straggler = task.straggler or task.ordered_tries >= _ORDERED_TRIES

        task.next_check = now + self.schedule.interval_after(task.checks) * jitter

    # -- learning -------------------------------------------------------------

    def _learn_delays(
        self,
        now: float,
        found: list[tuple[_Task, Outcome]],
        read_at: Mapping[str, float],
    ) -> None:
        # Each task's first check says whether it had completed that long after
        # its submission ("current status" data); the delay is re-estimated
        # from the latest of them per method.
        touched: set[str] = set()
        for task, outcome in found:
            if task.checks or outcome not in (Outcome.PENDING, Outcome.SETTLED):
                continue

            window = self._first_checks.get(task.method)
            if window is None:
                window = self._first_checks[task.method] = collections.deque(
                    maxlen=_WINDOW
                )

            # The status was read between the pick and now: under load a
            # sweep's end can come long after a check's answer.
            read = read_at.get(task.task_id, (task.picked_at + now) / 2)
            elapsed = read - task.submitted_at
            window.append((max(elapsed, 1e-6), outcome is Outcome.SETTLED))
            touched.add(task.method)
            self._observed[task.method] = self._observed.get(task.method, 0) + 1

        for method in touched:
            if not self._refit_due(method):
                continue

            self._fitted_at[method] = self._observed[method]
            delay, inside = quantile(
                self._first_checks[method], self.schedule.first_quantile
            )
            if inside:
                self._bracketed.add(method)
            else:
                self._bracketed.discard(method)

            low, high = self.schedule.min_first_delay, self.schedule.max_first_delay
            self._log_delay[method] = math.log(min(max(delay, low), high))
            self._rescale_jitter(method)

    def _rescale_jitter(self, method: str) -> None:
        # Keep first-check jitter a share of the delay in use (a burst added
        # before anything was learned would otherwise keep the default's
        # jitter): once they part by more than _RESCALE, index the method's
        # unchecked tasks anew at the learned delay. Rare: the delay settles.
        delay, scale = self.first_delay(method), self._jitter_scale[method]
        if max(delay, scale) <= _RESCALE * min(delay, scale):
            return

        self._jitter_scale[method] = delay
        waiting = [
            task
            for placeable in (False, True)
            if (run := self._unchecked.get((method, placeable))) is not None
            for _, task in run.scan()
        ]
        for task in waiting:
            self._index(task)

        self._earliest_known = False

    def _refit_due(self, method: str) -> bool:
        seen = self._observed[method]
        if seen < _PROBE_UNTIL or method not in self._bracketed:
            return True

        return seen - self._fitted_at.get(method, 0) >= _REFIT_EVERY

    def _learn_order(self, now: float, found: list[tuple[_Task, Outcome]]) -> None:
        settled = [t.ordinal for t, o in found if o is Outcome.SETTLED]
        pending = [t for t, o in found if o is Outcome.PENDING]
        front = max([self._max_settled, *settled])
        if settled:
            # Evidence of order comes from one sweep's answers, made at about the
            # same time: in a sequential queue, every task found PENDING comes
            # after every task found settled. A known straggler tells nothing
            # new (it would count against the order at each of its checks).
            highest = max(settled)
            for task in pending:
                if not task.straggler:
                    self._observe_order(float(task.ordinal > highest))

        for task in pending:
            # Behind a task seen settled: it completes out of order.
            task.straggler = task.straggler or task.ordinal < front

        self._max_settled = front
        self._learn_pace(found)
        if settled:
            self._correct_anchor(now, max(settled), done=True)

        # A straggler (stuck, or retried by the worker) says nothing about where
        # the queue is: it must not hold back the tasks behind it.
        ahead = [t.ordinal for t in pending if t.ordinal > front and not t.straggler]
        if ahead:
            self._correct_anchor(now, min(ahead), done=False)

    def _predict(self, ordinal: int) -> float:
        assert self._anchor is not None
        anchor_time, anchor_ordinal = self._anchor
        return anchor_time + (ordinal - anchor_ordinal) * self._pace

    def _correct_anchor(self, now: float, ordinal: int, *, done: bool) -> None:
        # Move the queue line only when an observation contradicts it: a task
        # found settled before its predicted time (the queue is ahead), or one
        # found PENDING after it (the queue is behind).
        if self._anchor is None:
            self._anchor = (now, ordinal if done else ordinal - 1)
        elif done and self._predict(ordinal) > now:
            self._anchor = (now, ordinal)
        elif not done and self._predict(ordinal) <= now:
            self._anchor = (now, ordinal - 1)

    def _observe_order(self, value: float) -> None:
        self._order += _ORDER_SMOOTHING * (value - self._order)
        self._order_evidence += 1

    def _learn_pace(self, found: Iterable[tuple[_Task, Outcome]]) -> None:
        # Aim the queue model slightly early: a small share of its checks should
        # find the task still PENDING. Only a task's first such check counts: a
        # task stuck at the head says nothing about the pace of the others.
        placed = [
            o is Outcome.PENDING
            for t, o in found
            if t.predicted
            and t.ordered_tries == 0
            and o in (Outcome.PENDING, Outcome.SETTLED)
        ]
        if not placed:
            return

        share = sum(placed) / len(placed)
        pace = self._pace * math.exp(_PACE_RATE * (share - _PACE_QUANTILE))
        self._pace = min(max(pace, _PACE_BOUNDS[0]), _PACE_BOUNDS[1])


def _shifted(
    run: Iterable[tuple[float, _Task]], delay: float
) -> Iterator[tuple[float, _Task]]:
    # First keys to bounds of the own due time: the arithmetic of _own_due
    # without its min_first_delay floor.
    for key, task in run:
        yield key + delay, task


def _placeable(task: _Task) -> bool:
    # Whether the queue model may place the task's checks (when it is on).
    return not task.straggler and task.errors == 0
