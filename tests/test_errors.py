"""The exception hierarchy of DESIGN.md / STYLE.md, and what each error keeps."""

from __future__ import annotations

import pytest

from plyr_rooms import errors
from plyr_rooms.errors import (
    ApiError,
    InvalidInput,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    PlyrError,
    RateLimited,
    ServerError,
    TaskError,
    TaskFailed,
    TaskLost,
    TaskTimeout,
    TransportError,
    Unauthenticated,
)
from plyr_rooms.tasks import TaskResult, TaskState

# Each error class and the base it must extend directly.
PARENTS: list[tuple[type[BaseException], tuple[type[BaseException], ...]]] = [
    (PlyrError, (Exception,)),
    (TransportError, (PlyrError,)),
    (ApiError, (PlyrError,)),
    (Unauthenticated, (ApiError,)),
    (PermissionDenied, (ApiError,)),
    (InvalidRequest, (ApiError,)),
    (NotFound, (ApiError,)),
    (ServerError, (ApiError,)),
    (RateLimited, (ApiError,)),
    (TaskError, (PlyrError,)),
    (TaskFailed, (TaskError,)),
    (TaskTimeout, (TaskError, TimeoutError)),
    (TaskLost, (TaskError,)),
    (InvalidTransition, (PlyrError,)),
    (InvalidInput, (PlyrError, ValueError)),
]


@pytest.mark.parametrize(
    ("kind", "parents"), PARENTS, ids=[kind.__name__ for kind, _ in PARENTS]
)
def test_hierarchy(
    kind: type[BaseException], parents: tuple[type[BaseException], ...]
) -> None:
    assert kind.__bases__ == parents
    assert kind.__name__ in errors.__all__


def test_api_error_keeps_status_message_and_details() -> None:
    details = {"invalidPlyrIds": {"unknown": "Invalid sessionJwt"}}
    error = InvalidRequest(401, "Invalid sessionJwts", details)

    assert (error.status, error.message) == (401, "Invalid sessionJwts")
    assert error.details == details
    assert error.details is not details  # a copy: the caller's dict may change
    assert str(error) == "HTTP 401: Invalid sessionJwts"
    assert RateLimited(429, "slow", retry_after=2.5).retry_after == 2.5


def test_task_errors_name_the_task() -> None:
    failed = TaskResult(
        TaskState.FAILED, task_id="7-0", method="endGameRoom", error_message=None
    )
    error = TaskFailed(failed)

    assert error.task_id == "7-0"
    assert error.result is failed
    assert "'7-0'" in str(error)
    assert "endGameRoom" in str(error)
    assert "no error message" in str(error)
    assert TaskTimeout("8-0", "the server stopped waiting").task_id == "8-0"
    assert TaskLost("9-0", "gone").task_id == "9-0"


def test_transport_error_says_whether_it_was_sent() -> None:
    assert TransportError("refused", sent=False).sent is False
    assert TransportError("reset").sent is True


def test_invalid_transition_names_state_step_and_allowed() -> None:
    error = InvalidTransition("NEW", "pay", ("create",), reason="no room yet")

    assert (error.state, error.step, error.allowed) == ("NEW", "pay", ("create",))
    assert str(error) == (
        "step 'pay' is not allowed in state 'NEW': no room yet (allowed: 'create')"
    )
