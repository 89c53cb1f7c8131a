"""Values the room machinery shares: services, unsettled steps, requests.

A private module; the public names are re-exported by :mod:`plyr_rooms.room`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs

from ._observe import TransitionHub
from .errors import ApiError, RateLimited
from .lifecycle import Payment, Player, Step
from .tasks import AlreadyJoined, TaskRef, TaskResult

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
    from decimal import Decimal

    from .client import PlyrClient
    from .journal import Journal
    from .poller import TaskPoller

__all__ = [
    "FIRST_ATTEMPT_WINDOW",
    "REVERTED",
    "Done",
    "PlayerLike",
    "RoomServices",
    "Sent",
    "StepArgs",
    "Unsettled",
    "columns",
    "named",
    "nobody",
    "player_of",
    "read_request",
    "request_json",
    "result_of",
    "revert_proves_nothing",
    "submit_pause",
]

#: The FAILED message of a transaction that was mined and reverted: the only
#: failure that can prove nothing happened on chain (API reference 4.4).
REVERTED = "Transaction Receipt Failed"
#: Seconds from enqueueing within which the service's revert came on the
#: worker's first attempt: an attempt whose receipt is lost fails after 40 s,
#: and the first retry sleeps 1 s first. A later revert may follow an attempt
#: that executed and lost its receipt (API reference 4.4). The two ends come
#: from two of the service's clocks (the queue's in the task id, the worker's
#: in completedAt); a second attempt also spends its own transaction's time,
#: seconds on chain, which covers a small skew between them.
FIRST_ATTEMPT_WINDOW = 41.0


def revert_proves_nothing(
    result: TaskResult, step: Step, payments: Sequence[Payment], window: float
) -> bool:
    """Return whether a FAILED *result* proves its step did nothing.

    Only a revert can, and for a step that moves tokens only one the service
    reported less than *window* seconds after enqueueing it (see
    FIRST_ATTEMPT_WINDOW). A step that moves none (create, join, leave, end,
    an earn-leave whose amounts are all zero) is safe to send again whichever
    attempt reverted. A pay or earn step whose amounts are not known counts
    as moving tokens.
    """
    if REVERTED not in (result.error_message or ""):
        return False

    money = Step.PAY in step.parts or Step.EARN in step.parts
    if not money or (payments and not any(p.amount for p in payments)):
        return True

    seconds = result.service_seconds
    return seconds is not None and seconds < window


class PlayerLike(Protocol):
    """Anything with a plyr id and a session JWT (Player, the simulator's players)."""

    @property
    def plyr_id(self) -> str: ...

    @property
    def session_jwt(self) -> str | None: ...


@attrs.define(eq=False)
class RoomServices:
    """What the rooms of one process share: client, poller, journal, observers.

    Attributes:
        client: sends the steps.
        poller: waits for their tasks.
        journal: records them, or None for no journal.
        task_timeout: seconds a step waits for its task before the room is marked
            unsettled; None uses the poller's default deadline.
        submit_retries: times a step is sent again after a 503 (an answer that
            proves the service did not take it).
        rate_limit_patience: seconds one step may spend waiting out 429s (the
            service's Retry-After) before RateLimited is raised.
        revert_window: a revert of a step that moves tokens proves nothing
            happened only when the service reports it within this many seconds
            of enqueueing the task (its first attempt); a later one leaves the
            room unsettled. See FIRST_ATTEMPT_WINDOW.
        hub: every room's transitions, for manager-level observers.
    """

    client: PlyrClient
    poller: TaskPoller
    journal: Journal | None = None
    task_timeout: float | None = None
    submit_retries: int = 3
    rate_limit_patience: float = 60.0
    revert_window: float = FIRST_ATTEMPT_WINDOW
    hub: TransitionHub = attrs.field(factory=TransitionHub)
    # Walks and steps (with their hooks) running now; drain waits for zero.
    busy: int = 0
    _idle: anyio.Event | None = None

    def begin(self) -> None:
        """Count one more step in flight."""
        self.busy += 1

    def done(self) -> None:
        """Count one step fewer in flight."""
        self.busy -= 1
        if not self.busy and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        """Return once no step is in flight."""
        while self.busy:
            if self._idle is None:
                self._idle = anyio.Event()

            await self._idle.wait()


@attrs.frozen
class Unsettled:
    """A step whose outcome is not known; the room takes no other step until it is.

    Attributes:
        step: the step.
        reason: why its outcome is unknown.
        task_id: its task id, if the service gave one.
        plyr_ids: the players it named.
        payments: its pay or earn entries.
        seq: its journal sequence number, when journaled.
    """

    step: Step
    reason: str
    task_id: str | None = None
    plyr_ids: tuple[str, ...] = ()
    payments: tuple[Payment, ...] = ()
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return it as plain JSON values."""
        return {
            "step": self.step.value,
            "reason": self.reason,
            "task_id": self.task_id,
            "seq": self.seq,
            **request_json(self.plyr_ids, self.payments),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Unsettled:
        """Read what :meth:`to_json` wrote."""
        ids, payments = read_request(data)
        return cls(
            Step(data["step"]),
            str(data["reason"]),
            data.get("task_id"),
            ids,
            payments,
            data.get("seq"),
        )


def request_json(ids: Iterable[str], payments: Iterable[Payment]) -> dict[str, Any]:
    # What the journal keeps of a request: the API's body with plyr ids in place
    # of session JWTs (one id per entry for pay and earn, as the task params).
    entries = tuple(payments)
    if not entries:
        return {"plyrIds": list(ids)}

    return {
        "plyrIds": [p.plyr_id for p in entries],
        "tokens": [p.token for p in entries],
        "amounts": [format(p.amount, "f") for p in entries],
    }


def read_request(
    data: Mapping[str, Any],
) -> tuple[tuple[str, ...], tuple[Payment, ...]]:
    ids = tuple(str(p) for p in data.get("plyrIds", ()))
    if "tokens" not in data:
        return ids, ()

    rows = zip(ids, data["tokens"], data["amounts"], strict=True)
    return (), tuple(Payment(p, t, a) for p, t, a in rows)


@attrs.frozen
class Done:
    result: TaskResult | None
    plyr_ids: tuple[str, ...]


Sent = TaskRef | AlreadyJoined
StepArgs = tuple[tuple[str, ...], tuple[Payment, ...]]


def nobody() -> StepArgs:
    return (), ()


if TYPE_CHECKING:
    Send = Callable[[tuple[str, ...], tuple[Payment, ...]], Awaitable[Sent]]


def player_of(value: PlayerLike | str) -> Player:
    if isinstance(value, str):
        return Player(value)

    if isinstance(value, Player):
        return value

    return Player(value.plyr_id, value.session_jwt)


def columns(entries: Iterable[Payment]) -> tuple[list[str], list[Decimal]]:
    tokens, amounts = [], []
    for e in entries:
        tokens.append(e.token)
        amounts.append(e.amount)

    return tokens, amounts


def result_of(done: Done | None) -> TaskResult | None:
    return None if done is None else done.result


def named(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> tuple[str, ...]:
    return ids or tuple(dict.fromkeys(e.plyr_id for e in entries))


def submit_pause(error: ApiError, errors: int) -> float:
    # The server's Retry-After (spread a little, so that rooms refused together
    # do not come back together), else a doubling backoff.
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return error.retry_after * random.uniform(1.0, 1.5)

    return min(0.25 * 2.0**errors, 4.0) * random.uniform(0.5, 1.0)
