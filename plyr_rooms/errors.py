"""The one exception hierarchy of plyr-rooms.

Two families never mix: :class:`InvalidInput` and :class:`InvalidTransition` are
raised *before* any request is sent (you asked for something illegal), while
:class:`ApiError` and :class:`TaskError` report what the service said or did.
No message here ever contains the API secret or a session JWT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .tasks import TaskResult

__all__ = [
    "ApiError",
    "InvalidInput",
    "InvalidRequest",
    "InvalidTransition",
    "NotFound",
    "PermissionDenied",
    "PlyrError",
    "PollerClosed",
    "RateLimited",
    "ServerError",
    "TaskError",
    "TaskFailed",
    "TaskLost",
    "TaskTimeout",
    "TransportError",
    "Unauthenticated",
]


class PlyrError(Exception):
    """Base of every error plyr-rooms raises on purpose."""


class InvalidInput(PlyrError, ValueError):
    """An argument was refused before anything was sent (bad amount, token, id)."""


class TransportError(PlyrError):
    """The request did not complete at the HTTP level (refused, reset, timed out).

    Attributes:
        sent: False only when the request certainly never reached the server
            (the connection was refused), so a retry cannot repeat a side effect.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class ApiError(PlyrError):
    """The service answered with an error status.

    Attributes:
        status: the HTTP status code.
        message: the server's error text (``error`` or ``message`` field, or the
            plain-text body), or a placeholder when it gave none.
        details: everything else the body carried: the list of per-entry errors,
            the ``invalidPlyrIds`` map, a ``stack``; empty for non-JSON bodies.
    """

    def __init__(
        self,
        status: int,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.details: Mapping[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


class InvalidRequest(ApiError):
    """The service refused the request's content (400, or 401 on validation)."""


class Unauthenticated(ApiError):
    """HMAC authentication failed (missing headers, key, signature, expiry)."""


class PermissionDenied(ApiError):
    """The API key's role is too low, or a user is locked (403)."""


class NotFound(ApiError):
    """The route or the named object does not exist (404)."""


class ServerError(ApiError):
    """The service failed while handling the request (5xx)."""


class RateLimited(ApiError):
    """The service (or a proxy in front of it) asked us to slow down (429).

    Attributes:
        retry_after: seconds the server asked to wait, or None if it gave none.
    """

    def __init__(
        self,
        status: int,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, message, details)
        self.retry_after = retry_after


class TaskError(PlyrError):
    """A task did not end in SUCCESS, or its end is not known.

    Attributes:
        task_id: the id the service gave the task.
    """

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class TaskFailed(TaskError):
    """The task ended FAILED.

    FAILED does not prove that nothing happened on chain (the worker may have
    executed the operation before reporting failure); see ``result``.
    """

    def __init__(self, result: TaskResult) -> None:
        message = result.error_message or "no error message"
        super().__init__(
            result.task_id or "?",
            f"task {result.task_id!r} ({result.method or 'unknown'}) failed: {message}",
        )
        self.result = result


class TaskTimeout(TaskError, TimeoutError):
    """The deadline passed before the task settled: its outcome is unknown."""


class TaskLost(TaskError):
    """The service no longer knows the task (NOT_FOUND past the grace period)."""


class PollerClosed(PlyrError, RuntimeError):
    """The poller was closed while the task was still being watched."""


class InvalidTransition(PlyrError):
    """A step is not allowed from the room's (or a player's) current state.

    Raised before any request is sent.

    Attributes:
        state: the state the room (or player) was in.
        step: the step that was asked for.
        allowed: the steps the table allows from *state*.
        reason: why, when the table alone does not say (a rule of the chain).
    """

    def __init__(
        self,
        state: object,
        step: object,
        allowed: tuple[object, ...] = (),
        reason: str | None = None,
    ) -> None:
        self.state = state
        self.step = step
        self.allowed = tuple(allowed)
        self.reason = reason
        text = f"step {_name(step)} is not allowed in state {_name(state)}"
        if reason:
            text += f": {reason}"

        if self.allowed:
            text += f" (allowed: {', '.join(_name(a) for a in self.allowed)})"

        super().__init__(text)


def _name(value: object) -> str:
    # Enum members read better by name than by repr in messages.
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else repr(value)
