"""The shared concurrent task poller: one loop checks every in-flight task.

Every room step of a process ends with ``await poller.wait(ref)``. Rather than
each of them sleeping and polling on its own, one :class:`TaskPoller` keeps a
single loop of *sweeps*: each sweep takes the tasks that are due, checks each of
them once however many waiters share it, under a concurrency cap and a shared
request-rate budget, then wakes the waiters of the tasks that finished. When to
check what is decided by :mod:`plyr_rooms._schedule`, kept free of I/O.

Three budgets bound the wait for a task, each set in one place:

* the HTTP request timeout of one status check belongs to the client
  (``PlyrClient(request_timeout=...)``);
* the per-task deadline is ``wait(ref, timeout=...)``, defaulting to the
  poller's ``default_timeout``;
* the poll schedule (:class:`PollSchedule`) says when checks are made.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Protocol

import anyio
import attrs

from ._ratelimit import TokenBucket
from ._schedule import Outcome, PollSchedule, Scheduler
from .errors import (
    ApiError,
    PlyrError,
    PollerClosed,
    RateLimited,
    ServerError,
    TaskFailed,
    TaskLost,
    TaskTimeout,
    TransportError,
)
from .tasks import TaskResult, TaskState

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from anyio.abc import TaskGroup

    from .tasks import TaskRef

__all__ = ["PollSchedule", "PollerStats", "StatusSource", "TaskPoller"]

logger = logging.getLogger(__name__)

# A 500 whose message says the id is not a stream id will never change.
_MALFORMED_ID = "invalid stream id"
# Other 500s for one id, in a row, after which that id's waiters get the error.
_PERSISTENT_ERRORS = 8


class StatusSource(Protocol):
    """What the poller needs from a client: one status read per call."""

    async def task_status(self, task_id: str, *, retry: bool = True) -> TaskResult:
        """Read the status of a task."""
        ...


@attrs.frozen
class PollerStats:
    """A snapshot of what the poller has done.

    Attributes:
        sweeps: sweeps that checked at least one task.
        status_requests: status checks sent (answered or not).
        resolved: waits ended, by outcome: ``success``, ``failed``, ``lost``,
            ``error`` (an API error for that id), ``timeout``, ``closed``.
            Outcomes of a task count once per task, ``timeout`` once per waiter.
        mean_sweep_size: mean number of tasks checked per sweep.
        max_sweep_size: most tasks checked in one sweep.
        rate_limited: 429 answers received (each paused every check).
        retries: checks that failed (5xx, transport) and were rescheduled.
        watched: tasks being watched right now.
        waiters: waiters waiting right now.
        learned_delays: the learned first-check delay per task method, seconds.
        ordered: whether completions are being seen in submission order, so that
            the queue model places checks.
    """

    sweeps: int
    status_requests: int
    resolved: Mapping[str, int]
    mean_sweep_size: float
    max_sweep_size: int
    rate_limited: int
    retries: int
    watched: int
    waiters: int
    learned_delays: Mapping[str, float]
    ordered: bool


@attrs.define(eq=False)
class _Waiter:
    event: anyio.Event = attrs.field(factory=anyio.Event)
    result: TaskResult | None = None
    error: PlyrError | None = None

    def finish(self, result: TaskResult | None, error: PlyrError | None) -> None:
        self.result, self.error = result, error
        self.event.set()


@attrs.define(eq=False)
class _Watch:
    ref: TaskRef
    waiters: set[_Waiter] = attrs.field(factory=set)
    server_errors: int = 0


class TaskPoller:
    """Watch every in-flight task of a process with one loop of sweeps.

    Use it as an async context manager; it runs its loop in a task group::

        async with PlyrClient() as client, TaskPoller(client) as poller:
            result = await poller.wait(await client.create())

    Args:
        client: where status is read (a :class:`~plyr_rooms.client.PlyrClient`);
            its ``request_timeout`` bounds each status request.
        max_concurrency: most status requests in flight at once; a sweep checks
            at most this many tasks.
        requests_per_second: the shared status-request budget (a token bucket
            holding up to ``max_concurrency`` requests).
        schedule: when tasks are checked (the poll-schedule budget); the default
            :class:`PollSchedule` follows the service's polling advice.
        not_found_grace: seconds after submission (``TaskRef.submitted_at``)
            during which NOT_FOUND means "not visible yet"; after it, TaskLost.
        default_timeout: the per-task deadline, in seconds from the ``wait``
            call, when ``wait`` is given none.
    """

    def __init__(
        self,
        client: StatusSource,
        *,
        max_concurrency: int = 32,
        requests_per_second: float = 50.0,
        schedule: PollSchedule | None = None,
        not_found_grace: float = 10.0,
        default_timeout: float = 180.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")

        if not requests_per_second > 0:
            raise ValueError(
                f"requests_per_second must be positive, got {requests_per_second!r}"
            )

        self._client = client
        self._max_concurrency = max_concurrency
        # Status checks under way; only the loop starts them, so a count is
        # all the concurrency cap needs.
        self._in_flight = 0
        burst = max(1.0, min(float(max_concurrency), requests_per_second))
        self._bucket = TokenBucket(requests_per_second, burst)
        self._scheduler = Scheduler(schedule or PollSchedule())
        self._schedule = self._scheduler.schedule
        self._not_found_grace = not_found_grace
        self._default_timeout = default_timeout
        self._watches: dict[str, _Watch] = {}
        self._wakeup = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._closed = False
        self._last_sweep = -math.inf
        # Whether the last sweep took all it could (tasks may be left due).
        self._backlog = False
        self._sweeps = 0
        self._requests = 0
        self._checked = 0
        self._max_sweep = 0
        self._rate_limited = 0
        self._retries = 0
        self._resolved: Counter[str] = Counter()

    async def __aenter__(self) -> TaskPoller:
        if self._task_group is not None or self._closed:
            raise RuntimeError("a TaskPoller can be entered only once")

        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._run, name="TaskPoller loop")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._close()
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc, tb)

    @property
    def stats(self) -> PollerStats:
        """Return a snapshot of the poller's counters."""
        return PollerStats(
            sweeps=self._sweeps,
            status_requests=self._requests,
            resolved=dict(self._resolved),
            mean_sweep_size=self._checked / self._sweeps if self._sweeps else 0.0,
            max_sweep_size=self._max_sweep,
            rate_limited=self._rate_limited,
            retries=self._retries,
            watched=len(self._watches),
            waiters=sum(len(w.waiters) for w in self._watches.values()),
            learned_delays=self._scheduler.learned_delays(),
            ordered=self._scheduler.ordered,
        )

    async def wait(
        self,
        ref: TaskRef,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the per-task deadline is API
    ) -> TaskResult:
        """Wait until the task settles and return its SUCCESS result.

        Any number of callers may wait on the same task: it is checked once per
        sweep for all of them. A cancelled wait withdraws its interest; a task
        nobody waits for any more is no longer checked. Cancellation leaves
        nothing behind.

        Args:
            ref: the task, as a task-producing client call returned it.
            timeout: the per-task deadline in seconds from this call (default:
                the poller's ``default_timeout``). It is honoured even when
                shorter than the poll interval.

        Raises:
            TaskFailed: the task ended FAILED (carries the result).
            TaskLost: the service still did not know the task after
                ``not_found_grace`` seconds from its submission.
            TaskTimeout: the deadline passed; the task's outcome is unknown.
            ApiError: checking this task's status failed for good: a 500 saying
                the id is not a valid stream id (at once), 500s for this id on
                8 checks in a row, or a refusal such as 401/403. Other waiters'
                tasks are not affected; 429s, 502-504 and transport errors
                are retried until the deadline.
            PollerClosed: the poller closed (or was never started).
        """
        if self._closed or self._task_group is None:
            raise PollerClosed(f"the poller is closed; cannot wait for {ref.id!r}")

        timeout = self._default_timeout if timeout is None else timeout
        waiter = _Waiter()
        self._watch(ref, waiter)
        try:
            with anyio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            if not waiter.event.is_set():
                self._unwatch(ref.id, waiter)

        if waiter.error is not None:
            raise waiter.error

        if waiter.result is None:
            self._resolved["timeout"] += 1
            raise TaskTimeout(
                ref.id, f"task {ref.id!r} ({ref.method}) not settled after {timeout} s"
            )

        return waiter.result

    # -- interest -------------------------------------------------------------

    def _watch(self, ref: TaskRef, waiter: _Waiter) -> None:
        watch = self._watches.get(ref.id)
        if watch is None:
            watch = self._watches[ref.id] = _Watch(ref)
            self._scheduler.add(ref.id, ref.method, ref.submitted_at)
            self._wakeup.set()

        watch.waiters.add(waiter)

    def _unwatch(self, task_id: str, waiter: _Waiter) -> None:
        watch = self._watches.get(task_id)
        if watch is None:
            return

        watch.waiters.discard(waiter)
        if not watch.waiters:
            del self._watches[task_id]
            self._scheduler.remove(task_id)

    def _finish(
        self,
        task_id: str,
        outcome: str,
        result: TaskResult | None = None,
        error: PlyrError | None = None,
    ) -> None:
        # The scheduler forgets the task when the sweep's outcomes are recorded.
        watch = self._watches.pop(task_id, None)
        if watch is None:
            return

        self._resolved[outcome] += 1
        for waiter in watch.waiters:
            waiter.finish(result, error)

    def _close(self) -> None:
        self._closed = True
        for task_id in list(self._watches):
            error = PollerClosed(f"the poller closed while waiting for {task_id!r}")
            self._finish(task_id, "closed", error=error)
            self._scheduler.remove(task_id)

    # -- the loop -------------------------------------------------------------

    async def _run(self) -> None:
        assert self._task_group is not None
        while True:
            now = time.monotonic()
            start = self._next_sweep(now)
            if start > now:
                await self._sleep_until(start)
                continue

            self._last_sweep = now
            free = self._max_concurrency - self._in_flight
            limit = min(free, self._bucket.available(now))
            picked = self._scheduler.pick(now, limit)
            # A full pick may have left due tasks behind: they go as soon as a
            # slot or the budget allows, not a sweep spacing later.
            self._backlog = bool(picked) and len(picked) >= limit
            if picked:
                self._bucket.take(now, len(picked))
                self._in_flight += len(picked)
                self._task_group.start_soon(self._sweep, picked)

    def _next_sweep(self, now: float) -> float:
        # Never busy-loop: sweeps are at least sweep_spacing apart (a floor of
        # 1 ms even when the spacing is 0) and wait for the rate budget.
        due = self._scheduler.next_due()
        if due is None or self._in_flight >= self._max_concurrency:
            return math.inf  # woken when a task arrives or a check returns

        spacing = 0.001 if self._backlog else max(self._schedule.sweep_spacing, 0.001)
        return max(due, self._last_sweep + spacing, self._bucket.ready_at(now))

    async def _sleep_until(self, when: float) -> None:
        # Woken early whenever a new task arrives or a sweep changes the plan.
        self._wakeup = anyio.Event()
        delay = when - time.monotonic()
        with anyio.move_on_after(delay if math.isfinite(delay) else None):
            await self._wakeup.wait()

    async def _sweep(self, task_ids: list[str]) -> None:
        outcomes: dict[str, Outcome] = {}
        read_at: dict[str, float] = {}
        async with anyio.create_task_group() as task_group:
            for task_id in task_ids:
                task_group.start_soon(self._check, task_id, outcomes, read_at)

        self._sweeps += 1
        self._checked += len(task_ids)
        self._max_sweep = max(self._max_sweep, len(task_ids))
        if Outcome.SKIPPED not in outcomes.values():
            self._scheduler.checks_went_through()

        for task_id, outcome in outcomes.items():
            # Settled during the sweep and waited for again since: check afresh.
            if outcome is Outcome.SETTLED and task_id in self._watches:
                outcomes[task_id] = Outcome.UNKNOWN

        self._scheduler.record(time.monotonic(), outcomes, read_at)
        self._wakeup.set()
        if not logger.isEnabledFor(logging.DEBUG):
            return

        counts = Counter(outcome.value for outcome in outcomes.values())
        logger.debug(
            "sweep %d: %d checked (%s); %d watched, next first check %s",
            self._sweeps,
            len(task_ids),
            ", ".join(f"{n} {name}" for name, n in sorted(counts.items())),
            len(self._watches),
            "by queue order" if self._scheduler.ordered else "by learned delay",
        )

    async def _check(
        self, task_id: str, outcomes: dict[str, Outcome], read_at: dict[str, float]
    ) -> None:
        try:
            if task_id not in self._watches:
                return  # nobody waits any more

            self._requests += 1
            reply: TaskResult | Exception
            sent = time.monotonic()
            try:
                reply = await self._client.task_status(task_id, retry=False)
            except Exception as exc:  # sorted out in _apply; never cancellation
                reply = exc

            read_at[task_id] = (sent + time.monotonic()) / 2
        finally:
            self._in_flight -= 1
            if self._in_flight == self._max_concurrency - 1:
                self._wakeup.set()  # a slot opened for a loop that was full

        # Waiters hear at once, not when the slowest check of the sweep is back.
        outcomes[task_id] = self._apply(time.monotonic(), task_id, reply)

    # -- results --------------------------------------------------------------

    def _apply(
        self, now: float, task_id: str, reply: TaskResult | Exception
    ) -> Outcome:
        if isinstance(reply, TaskResult):
            return self._on_result(now, task_id, reply)

        if isinstance(reply, RateLimited):
            self._on_rate_limited(now, reply)
            return Outcome.SKIPPED

        return self._on_error(task_id, reply)

    def _on_result(self, now: float, task_id: str, result: TaskResult) -> Outcome:
        watch = self._watches.get(task_id)
        if watch is not None:
            watch.server_errors = 0

        if result.state is TaskState.SUCCESS:
            self._finish(task_id, "success", result=result)
            return Outcome.SETTLED

        if result.state is TaskState.FAILED:
            self._finish(task_id, "failed", error=TaskFailed(result))
            return Outcome.SETTLED

        if result.state is TaskState.NOT_FOUND and watch is not None:
            if now - watch.ref.submitted_at < self._not_found_grace:
                return Outcome.UNKNOWN

            message = (
                f"task {task_id!r} ({watch.ref.method}) is unknown to the service "
                f"{now - watch.ref.submitted_at:.1f} s after submission"
            )
            self._finish(task_id, "lost", error=TaskLost(task_id, message))
            return Outcome.SETTLED

        # PENDING (TIMEOUT never comes from the status route; treat it alike).
        return Outcome.PENDING

    def _on_error(self, task_id: str, error: Exception) -> Outcome:
        watch = self._watches.get(task_id)
        if isinstance(error, ServerError) and watch is not None:
            watch.server_errors += 1
            malformed = _MALFORMED_ID in error.message.lower()
            if malformed or (
                error.status == 500 and watch.server_errors >= _PERSISTENT_ERRORS
            ):
                self._finish(task_id, "error", error=error)
                return Outcome.SETTLED

        if isinstance(error, ApiError) and not isinstance(error, ServerError):
            # 400/401/403/404 for a status read will not heal by waiting.
            self._finish(task_id, "error", error=error)
            return Outcome.SETTLED

        self._retries += 1
        if isinstance(error, ServerError | TransportError):
            logger.warning("status check of %s failed (%s); will retry", task_id, error)
        else:
            logger.error(
                "status check of %s raised %r; will retry",
                task_id,
                error,
                exc_info=error,
            )

        return Outcome.ERROR

    def _on_rate_limited(self, now: float, error: RateLimited) -> None:
        self._rate_limited += 1
        pausing = self._scheduler.paused_until > now
        until = self._scheduler.rate_limited(now, error.retry_after)
        if pausing:
            return  # a check sent before the pause began: the pause is logged

        logger.warning(
            "status checks rate limited (429, Retry-After %s); pausing %.2f s",
            error.retry_after,
            until - now,
        )
