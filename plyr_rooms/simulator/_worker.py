"""The task queue: ids, the simulated worker and the status endpoint's answers.

The real service has one consumer that runs tasks one at a time in stream
order, retrying a failed attempt up to three times with 1 s, 2 s and 3 s
sleeps. Here every attempt is a timer on the event loop (``call_later``), so
ten thousand tasks in flight cost ten thousand timer entries, not tasks. With
``workers=None`` every task runs on its own clock; with ``workers=k`` at most
*k* tasks are in service and the rest wait in submission order.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import math
import random
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from plyr_rooms.signing import canonical_json
from plyr_rooms.simulator._amounts import ViemError
from plyr_rooms.simulator._ledger import PlainError, Revert
from plyr_rooms.simulator._snapshot import TaskRecord
from plyr_rooms.tasks import TaskState

if TYPE_CHECKING:
    from plyr_rooms.simulator._config import SimConfig
    from plyr_rooms.simulator._ledger import Chain

__all__ = ["Task", "Worker"]

logger = logging.getLogger(__name__)

RECEIPT_FAILED = "Transaction Receipt Failed"
TIMEOUT_MESSAGE = (
    "Task timeout, but still maybe success, you can check the task status by taskId"
    " later"
)
_ATTEMPTS = 3
# Seconds an attempt whose receipt never arrives takes to fail (the worker's
# per-attempt budget), scaled like the retry sleeps.
_RECEIPT_BUDGET = 40.0


class _ReceiptLost(PlainError):
    # The transaction was sent (it may have executed), but no receipt came
    # within the attempt's budget.
    pass


_PENDING_BODY = b'{"status":"PENDING"}'
_NOT_FOUND_BODY = b'{"status":"NOT_FOUND"}'
_STREAM_ID = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_MAX_U64 = 2**64 - 1
_BAD_ID_MESSAGE = "ERR Invalid stream ID specified as stream command argument"


@attrs.define(eq=False)
class Task:
    id: str
    method: str
    params: dict[str, Any]
    submitted_at: float  # loop time (time.monotonic)
    fault: str | None  # "revert", "executed", "double", "stuck" or None
    state: TaskState = TaskState.PENDING
    completed_at: float | None = None
    body: bytes = _PENDING_BODY  # the status answer once settled
    done: asyncio.Event | None = None  # created only for sync waiters
    timer: asyncio.TimerHandle | None = None


class Worker:
    """Accepts tasks, runs them against the chain, and answers status lookups."""

    def __init__(self, config: SimConfig, chain: Chain) -> None:
        self._config = config
        self._chain = chain
        self._faults = random.Random(f"{config.seed}:task-faults")
        self._latency = random.Random(f"{config.seed}:latency")
        self._loop = asyncio.get_running_loop()
        self.tasks: dict[str, Task] = {}
        self.order: list[Task] = []
        self.by_method: collections.Counter[str] = collections.Counter()
        self._last_id = (0, -1)
        self._queue: collections.deque[Task] = collections.deque()
        self._busy = 0
        self._closed = False

    def close(self) -> None:
        """Stop every timer; tasks still pending stay PENDING."""
        self._closed = True
        for task in self.order:
            if task.timer is not None:
                task.timer.cancel()

    def submit(self, method: str, params: dict[str, Any]) -> Task:
        """Enqueue a task and return it (its state is PENDING)."""
        task = Task(self._next_id(), method, params, self._loop.time(), self._fault())
        self.tasks[task.id] = task
        self.order.append(task)
        self.by_method[method] += 1
        if task.fault == "stuck":
            return task

        if self._config.workers is None or self._busy < self._config.workers:
            self._busy += 1
            self._attempt_later(task, 1, 0.0)
        else:
            self._queue.append(task)

        return task

    def status(self, task_id: str) -> tuple[int, bytes]:
        """Answer ``GET /api/task/status/:id`` with a status code and JSON bytes."""
        task = self.tasks.get(task_id)
        if task is None:
            return self._lookup_stream(task_id)

        window = self._config.faults.not_found_window
        if window and self._loop.time() - task.submitted_at < window:
            return 200, _NOT_FOUND_BODY

        return 200, task.body

    async def sync_answer(self, task: Task) -> tuple[int, bytes]:
        """Wait as the server's ``sync`` mode does and return its answer."""
        interval = self._config.sync_interval
        checks = self._config.sync_checks
        start = self._loop.time()
        if await self.wait(task, (checks - 1) * interval):
            # The server notices at its first check after the result is visible.
            visible = max(task.completed_at or start, self._visible_from(task))
            elapsed = math.ceil(max(0.0, visible - start) / interval - 1e-9) * interval
            await asyncio.sleep(max(0.0, start + elapsed - self._loop.time()))
            return 200, task.body

        await asyncio.sleep(max(0.0, start + checks * interval - self._loop.time()))
        timeout = {
            "taskId": task.id,
            "status": "TIMEOUT",
            "errorMessage": TIMEOUT_MESSAGE,
        }
        return 504, canonical_json(timeout).encode()

    async def wait(self, task: Task, budget: float) -> bool:
        """Wait up to *budget* seconds for *task* to settle; tell whether it did."""
        if task.state is TaskState.PENDING:
            if task.done is None:
                task.done = asyncio.Event()

            try:
                await asyncio.wait_for(task.done.wait(), budget)
            except TimeoutError:
                return False

        visible = self._visible_from(task)
        await asyncio.sleep(max(0.0, visible - self._loop.time()))
        return True

    def records(self) -> tuple[TaskRecord, ...]:
        """Return every task in submission order."""
        return tuple(
            TaskRecord(t.id, t.method, t.submitted_at, t.completed_at, t.state)
            for t in self.order
        )

    def _visible_from(self, task: Task) -> float:
        return task.submitted_at + self._config.faults.not_found_window

    def _lookup_stream(self, task_id: str) -> tuple[int, bytes]:
        if task_id in ("-", "+"):
            return 200, _NOT_FOUND_BODY

        match = _STREAM_ID.fullmatch(task_id)
        if match is None or any(
            int(part) > _MAX_U64 for part in match.groups() if part is not None
        ):
            error = {
                "error": _BAD_ID_MESSAGE,
                "stack": f"ReplyError: {_BAD_ID_MESSAGE}",
            }
            return 500, canonical_json(error).encode()

        # A bare millisecond id, or one with leading zeros, is a stream range.
        ms, seq = int(match.group(1)), match.group(2)
        key = f"{ms}-{int(seq) if seq is not None else 0}"
        if key in self.tasks:
            return 200, _PENDING_BODY

        return 200, _NOT_FOUND_BODY

    def _next_id(self) -> str:
        ms = int(datetime.now(UTC).timestamp() * 1000)
        last_ms, last_seq = self._last_id
        self._last_id = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return f"{self._last_id[0]}-{self._last_id[1]}"

    def _fault(self) -> str | None:
        faults = self._config.faults
        draw = self._faults.random()
        for name, rate in (
            ("stuck", faults.stuck_rate),
            ("revert", faults.revert_rate),
            ("executed", faults.failed_but_executed_rate),
            ("double", faults.double_execution_rate),
            ("late_revert", faults.late_revert_rate),
        ):
            if draw < rate:
                return name

            draw -= rate

        return None

    def _attempt_later(self, task: Task, attempt: int, pause: float) -> None:
        delay = pause + self._config.latency.sample(self._latency)
        task.timer = self._loop.call_later(delay, self._attempt, task, attempt)

    def _attempt(self, task: Task, attempt: int) -> None:
        task.timer = None
        if self._closed:
            return

        try:
            result = self._execute(task, attempt)
        except Revert:
            self._settle(task, TaskState.FAILED, error=RECEIPT_FAILED)
        except _ReceiptLost:
            budget = _RECEIPT_BUDGET * self._config.retry_sleep_scale
            self._retry(task, attempt, None, budget)
        except (ViemError, PlainError) as exc:
            message = exc.short_message if isinstance(exc, ViemError) else None
            self._retry(task, attempt, message)
        except Exception:
            logger.exception("simulated task %s crashed", task.id)
            self._retry(task, attempt, None)
        else:
            self._chain.spend_allowances(task.method, task.params)
            self._settle(task, TaskState.SUCCESS, result=result)

    def _execute(self, task: Task, attempt: int) -> dict[str, Any]:
        if task.fault == "revert":
            raise Revert("injected revert")

        if task.fault == "executed":
            # The first attempt lands on chain but its receipt never arrives;
            # the retries then fail on their own, with no viem message.
            if attempt == 1:
                self._chain.run(task.method, task.params, self._now())
                raise _ReceiptLost("receipt timed out")

            raise PlainError("receipt timed out")

        if task.fault in ("double", "late_revert") and attempt == 1:
            # Executed, receipt lost; the retry executes the operation again,
            # or (late_revert) reverts: FAILED although it happened once.
            self._chain.run(task.method, task.params, self._now())
            raise _ReceiptLost("receipt timed out")

        if task.fault == "late_revert":
            raise Revert("injected revert after a lost receipt")

        return self._chain.run(task.method, task.params, self._now())

    def _retry(
        self, task: Task, attempt: int, message: str | None, waited: float = 0.0
    ) -> None:
        # *waited*: what the failed attempt spent before it failed, on top of
        # its latency (a lost receipt's budget).
        pause = waited + attempt * self._config.retry_sleep_scale
        if attempt < _ATTEMPTS:
            self._attempt_later(task, attempt + 1, pause)
            return

        task.timer = self._loop.call_later(
            pause, self._settle, task, TaskState.FAILED, None, message
        )

    def _settle(
        self,
        task: Task,
        state: TaskState,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        task.timer = None
        if self._closed:
            return

        task.state = state
        task.completed_at = self._loop.time()
        task.body = self._body(task, result, error)
        if task.done is not None:
            task.done.set()

        self._busy -= 1
        if self._queue:
            self._busy += 1
            self._attempt_later(self._queue.popleft(), 1, 0.0)

    def _body(
        self, task: Task, result: dict[str, Any] | None, error: str | None
    ) -> bytes:
        completed = _iso_now()
        answer: dict[str, Any]
        if task.state is TaskState.SUCCESS:
            data: dict[str, Any] = {"method": task.method, "body": task.params}
            if result:
                data["result"] = result

            answer = {
                "taskId": task.id,
                "taskData": data,
                "status": "SUCCESS",
                "hash": _fake_hash(self._config.seed, task.id),
                "errorMessage": None,
                "completedAt": completed,
            }
        else:
            answer = {
                "taskId": task.id,
                "taskData": [task.method, canonical_json(task.params)],
                "status": "FAILED",
                "hash": None,
                "errorMessage": error,
                "completedAt": completed,
            }

        return canonical_json(answer).encode()

    def _now(self) -> float:
        return datetime.now(UTC).timestamp()


def _iso_now() -> str:
    # JavaScript's Date.prototype.toISOString: milliseconds and a Z.
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fake_hash(seed: int, task_id: str) -> str:
    return "0x" + hashlib.sha256(f"{seed}:{task_id}".encode()).hexdigest()
