"""Task values: what a submitted operation is, and what its status says.

The status endpoint answers in several shapes (see the API reference, 4.3):
SUCCESS with ``taskData = {method, body, result?}``, the older
``{"0": name, "1": "<json>"}`` shape, FAILED with ``taskData = [name, "<json>"]``,
bare ``{"status": "PENDING"}`` / ``{"status": "NOT_FOUND"}``, and the 504
``TIMEOUT`` body of sync calls. :meth:`TaskResult.from_json` reads them all.
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "AlreadyJoined",
    "TaskMethod",
    "TaskRef",
    "TaskResult",
    "TaskState",
]


class TaskState(enum.Enum):
    """Where a task stands, as the service names it."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    NOT_FOUND = "NOT_FOUND"
    #: Only in the 504 answer of a ``sync`` call: the server stopped waiting.
    TIMEOUT = "TIMEOUT"

    @property
    def settled(self) -> bool:
        """True for the states a task never leaves (SUCCESS and FAILED)."""
        return self in (TaskState.SUCCESS, TaskState.FAILED)


class TaskMethod(enum.StrEnum):
    """The task names the service stores as ``taskData.method``."""

    CREATE = "createGameRoom"
    JOIN = "joinGameRoom"
    LEAVE = "leaveGameRoom"
    PAY = "batchPayGameRoom"
    EARN = "batchEarnGameRoom"
    END = "endGameRoom"
    CLOSE = "closeGameRoom"
    CREATE_JOIN_PAY = "createJoinPayGameRoom"
    JOIN_PAY = "joinPayGameRoom"
    EARN_LEAVE = "earnLeaveGameRoom"
    EARN_LEAVE_END = "earnLeaveEndGameRoom"


@attrs.frozen
class TaskRef:
    """A task the service accepted: its id and what kind of task it is.

    Attributes:
        id: the service's task id (``"<ms>-<seq>"``); treated as opaque.
        method: the task name, used to learn typical completion times.
        submitted_at: ``time.monotonic()`` when the submit call returned.
    """

    id: str
    method: str
    submitted_at: float = attrs.field(factory=time.monotonic, eq=False)


@attrs.frozen
class AlreadyJoined:
    """Join's answer when every player was already in the room: no task ran."""

    room_id: str
    message: str = "All players are already joined"


@attrs.frozen
class TaskResult:
    """One reading of a task's status, whatever shape the service used.

    Attributes:
        state: the status.
        task_id: the id, when the body carried one (PENDING and NOT_FOUND do not).
        method: the task name, when known.
        body: the parameters the service enqueued, when known.
        result: ``taskData.result`` (create and create-join-pay only), else None.
        hash: the transaction hash of a SUCCESS.
        error_message: the server's message for FAILED / TIMEOUT (may be None).
        completed_at: the ISO-8601 time the worker wrote, when present.
    """

    state: TaskState
    task_id: str | None = None
    method: str | None = None
    body: Mapping[str, Any] | None = None
    result: Mapping[str, Any] | None = None
    hash: str | None = None
    error_message: str | None = None
    completed_at: str | None = None

    @property
    def room_id(self) -> str | None:
        """The room a create-type task made (a decimal string), if any."""
        value = (self.result or {}).get("roomId")
        return None if value is None else str(value)

    @property
    def room_address(self) -> str | None:
        """The address of the room a create-type task made, if any."""
        value = (self.result or {}).get("roomAddress")
        return None if value is None else str(value)

    @property
    def service_seconds(self) -> float | None:
        """Seconds from the task's enqueueing to its result, by the service's clocks.

        Read from the millisecond part of the task id (the queue's clock at
        enqueue) and ``completedAt``; None when either is missing or not of
        that form.
        """
        enqueued = _enqueued_ms(self.task_id)
        if enqueued is None or self.completed_at is None:
            return None

        try:
            done = datetime.fromisoformat(self.completed_at.replace("Z", "+00:00"))
        except ValueError:
            return None

        if done.tzinfo is None:
            return None

        return done.timestamp() - enqueued / 1000

    @classmethod
    def from_json(cls, data: object, task_id: str | None = None) -> TaskResult:
        """Read a status body (or a sync-mode answer) in any shape the service uses.

        Args:
            data: the decoded JSON body.
            task_id: the id that was asked for; used when the body has none.

        Raises:
            ValueError: if *data* is not a status body at all.
        """
        if not isinstance(data, Mapping) or "status" not in data:
            raise ValueError(f"not a task status body: {_clip(data)}")

        try:
            state = TaskState(data["status"])
        except ValueError:
            raise ValueError(f"unknown task status {data['status']!r}") from None

        method, body, result = _read_task_data(data.get("taskData"))
        if result is None:
            # The server's code copies a top-level ``result`` when there is one
            # (its worker never writes it today); read it from there too.
            result = _non_empty(data.get("result"))

        return cls(
            state=state,
            task_id=_opt_str(data.get("taskId")) or task_id,
            method=method,
            body=body,
            result=result,
            hash=_opt_str(data.get("hash")),
            error_message=_opt_str(data.get("errorMessage")),
            completed_at=_opt_str(data.get("completedAt")),
        )


def _read_task_data(
    data: object,
) -> tuple[str | None, Mapping[str, Any] | None, Mapping[str, Any] | None]:
    # Three shapes: {method, body, result?}; the older {"0": name, "1": params,
    # result?}; and FAILED's [name, "<params as a JSON string>"].
    if isinstance(data, list | tuple):
        name = data[0] if data else None
        params = data[1] if len(data) > 1 else None
        return _opt_str(name), _params(params), None

    if not isinstance(data, Mapping):
        return None, None, None

    if "method" in data:
        name, params = data.get("method"), data.get("body")
    else:
        name, params = data.get("0"), data.get("1")

    return _opt_str(name), _params(params), _non_empty(data.get("result"))


def _non_empty(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) and value else None


def _params(value: object) -> Mapping[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None

    return value if isinstance(value, Mapping) else None


def _enqueued_ms(task_id: str | None) -> int | None:
    # "<unix-ms>-<sequence>": the stream entry id the service hands out.
    match = _STREAM_ID.fullmatch(task_id or "")
    return int(match[1]) if match else None


_STREAM_ID = re.compile(r"([0-9]{1,16})-[0-9]{1,19}")


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
