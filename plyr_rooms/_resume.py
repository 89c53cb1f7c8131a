"""Resume after a restart: settle what the journal left open, never pay twice.

For every unfinished room, each step without an outcome is settled from what the
service can still tell:

- a step with a task id is re-attached to the poller: SUCCESS is applied, FAILED
  of a step that moves money leaves the room unsettled (FAILED does not prove that
  nothing moved: the worker may have executed it before reporting failure, API
  reference 4.4), and an outcome still unknown leaves it unsettled too;
- a step whose intent was recorded but whose task id never was may or may not
  have reached the service. Join and leave are settled from ``isJoined`` (both
  are idempotent on chain, so what is missing can simply be sent again); create,
  pay, earn, end and the composites are never sent again on their own: the room
  is reported unsettled with the reason, for an operator to decide.

A room with no unsettled step goes back to its class (through the registry) to
continue its walk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs

from ._roomvalues import (
    FIRST_ATTEMPT_WINDOW,
    read_request,
    revert_proves_nothing,
)
from .errors import PlyrError, TaskFailed, TaskLost, TaskTimeout
from .lifecycle import Step
from .tasks import TaskMethod, TaskRef, TaskResult

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .journal import Journal, JournaledRoom, StepRecord
    from .manager import RoomManager
    from .room import GameRoom, PlayerLike

__all__ = [
    "MEMBERSHIP_STEPS",
    "MONEY_STEPS",
    "ResumeReport",
    "ResumedRoom",
    "StepVerdict",
    "reconcile_room",
    "reconcile_rooms",
    "resume",
]

logger = logging.getLogger(__name__)

#: Steps that move tokens: never sent twice, FAILED leaves the room unsettled.
MONEY_STEPS = frozenset(
    {"pay", "earn", "create_join_pay", "join_pay", "earn_leave", "earn_leave_end"}
)
#: Steps whose effect ``isJoined`` shows, and which are idempotent on chain.
MEMBERSHIP_STEPS = frozenset({"join", "leave"})

_METHODS = {
    "create": TaskMethod.CREATE,
    "join": TaskMethod.JOIN,
    "pay": TaskMethod.PAY,
    "earn": TaskMethod.EARN,
    "leave": TaskMethod.LEAVE,
    "end": TaskMethod.END,
    "create_join_pay": TaskMethod.CREATE_JOIN_PAY,
    "join_pay": TaskMethod.JOIN_PAY,
    "earn_leave": TaskMethod.EARN_LEAVE,
    "earn_leave_end": TaskMethod.EARN_LEAVE_END,
}

#: Outcomes a room may record that do not settle anything: resume re-checks them.
UNKNOWN_OUTCOMES = frozenset({"TIMEOUT", "LOST", "UNKNOWN"})


class TaskWaiter(Protocol):
    """What resume needs of the poller (``TaskPoller`` is one)."""

    async def wait(
        self,
        ref: TaskRef,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the poller's task deadline
    ) -> TaskResult:
        """Return the SUCCESS result, or raise TaskFailed / TaskLost / TaskTimeout."""
        ...


class MembershipSource(Protocol):
    """What resume needs of the client (``PlyrClient`` is one)."""

    async def is_joined(self, room_id: str, plyr_id: str) -> bool:
        """Return whether *plyr_id* is in room *room_id* on chain."""
        ...


@attrs.frozen
class StepVerdict:
    """How resume settled one pending step.

    Attributes:
        seq: the step's sequence number in the journal.
        step: the step's name.
        outcome: what was recorded: ``SUCCESS``; ``REVERTED`` (nothing
            happened); ``FAILED`` (may have executed); for join and leave settled
            from ``isJoined``, ``CHECKED`` (some players moved: *detail* says who
            is done and who is not) or ``NOT_APPLIED`` (nobody moved); or
            ``UNKNOWN`` (nothing could be settled).
        detail: what the outcome carried (room id, task state, players).
        unsettled: why the room needs an operator because of this step, or None.
        result: the task's SUCCESS result, when there was one.
    """

    seq: int
    step: str
    outcome: str
    detail: Mapping[str, Any] = attrs.field(factory=dict)
    unsettled: str | None = None
    result: TaskResult | None = None


def needs_settling(step: StepRecord) -> bool:
    """Return True for a step resume must settle (no outcome, or an unknown one)."""
    return step.outcome is None or step.outcome in UNKNOWN_OUTCOMES


def failed_money_steps(entry: JournaledRoom) -> tuple[StepRecord, ...]:
    """Return the money steps the journal says FAILED (they may have executed)."""
    return tuple(
        s for s in entry.steps if s.step in MONEY_STEPS and s.outcome == "FAILED"
    )


async def reconcile_room(
    entry: JournaledRoom,
    journal: Journal,
    client: MembershipSource,
    poller: TaskWaiter,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - passed on as the task deadline
    revert_window: float = FIRST_ATTEMPT_WINDOW,
) -> list[StepVerdict]:
    """Settle every pending step of *entry* in the journal; return the verdicts.

    Steps are settled oldest first. After the first verdict that leaves the room
    unsettled, later pending steps are left as they are (they cannot have been
    sent after an unsettled step, and an operator must look first).

    A cancellation leaves the steps settled so far recorded, the rest pending.
    """
    verdicts: list[StepVerdict] = []
    room_id = entry.room.room_id
    for step in entry.steps:
        if not needs_settling(step):
            continue

        verdict = await settle_step(
            step, room_id, client, poller, timeout=timeout, revert_window=revert_window
        )
        await journal.settled(entry.room.key, step.seq, verdict.outcome, verdict.detail)
        logger.debug(
            "room %s step %d (%s) settled on resume: %s",
            entry.room.key,
            step.seq,
            step.step,
            verdict.outcome,
        )
        verdicts.append(verdict)
        if verdict.unsettled is not None:
            break

        if verdict.result is not None and verdict.result.room_id is not None:
            room_id = verdict.result.room_id

    return verdicts


async def reconcile_rooms(
    entries: Iterable[JournaledRoom],
    journal: Journal,
    client: MembershipSource,
    poller: TaskWaiter,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - passed on as the task deadline
    limit: int = 256,
    revert_window: float = FIRST_ATTEMPT_WINDOW,
) -> dict[str, list[StepVerdict]]:
    """Run :func:`reconcile_room` for many rooms at once; return verdicts by key.

    Rooms are settled concurrently (at most *limit* at a time), so that the
    poller checks all their tasks in shared sweeps instead of one after another.
    A room whose reconcile fails (a transport error, say) keeps its steps
    pending for the next resume; the error is logged.
    """
    verdicts: dict[str, list[StepVerdict]] = {}
    limiter = anyio.CapacityLimiter(limit)

    async def one(entry: JournaledRoom) -> None:
        async with limiter:
            try:
                verdicts[entry.room.key] = await reconcile_room(
                    entry,
                    journal,
                    client,
                    poller,
                    timeout=timeout,
                    revert_window=revert_window,
                )
            except PlyrError:
                logger.exception("room %s: reconcile failed", entry.room.key)

    async with anyio.create_task_group() as tg:
        for entry in entries:
            if any(needs_settling(step) for step in entry.steps):
                tg.start_soon(one, entry)

    return verdicts


async def settle_step(
    step: StepRecord,
    room_id: str | None,
    client: MembershipSource,
    poller: TaskWaiter,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - passed on as the task deadline
    revert_window: float = FIRST_ATTEMPT_WINDOW,
) -> StepVerdict:
    """Decide the outcome of one pending *step* from the service (see module doc).

    A revert settles a step that moves tokens as REVERTED only when the service
    reported it within *revert_window* seconds of enqueueing (its first
    attempt); a later one is FAILED: it may have executed.
    """
    state = "NO_TASK_ID"
    if step.task_id is not None:
        ref = TaskRef(step.task_id, str(_METHODS.get(step.step, step.step)))
        try:
            result = await poller.wait(ref, timeout=timeout)
        except TaskFailed as exc:
            _, payments = read_request(step.request)
            kind = Step(step.step)
            if revert_proves_nothing(exc.result, kind, payments, revert_window):
                # Mined and reverted: the one failure that proves nothing happened.
                detail: dict[str, Any] = {
                    "task": "FAILED",
                    "errorMessage": exc.result.error_message,
                }
                return StepVerdict(step.seq, step.step, "REVERTED", detail)

            state = "FAILED"
            failed: TaskResult | None = exc.result
        except TaskLost:
            state, failed = "LOST", None
        except TaskTimeout:
            state, failed = "TIMEOUT", None
        else:
            return _success(step, result)

        if step.step not in MEMBERSHIP_STEPS:
            return _not_settled(step, state, failed)

    if step.step in MEMBERSHIP_STEPS and room_id is not None:
        return await _check_membership(step, room_id, client, state)

    return _not_settled(step, state, None)


def _success(step: StepRecord, result: TaskResult) -> StepVerdict:
    detail: dict[str, Any] = {"task": "SUCCESS", "resumed": True}
    if result.room_id is not None:
        detail["roomId"] = result.room_id
        detail["roomAddress"] = result.room_address

    if result.hash is not None:
        detail["hash"] = result.hash

    return StepVerdict(step.seq, step.step, "SUCCESS", detail, result=result)


def _not_settled(
    step: StepRecord, state: str, failed: TaskResult | None
) -> StepVerdict:
    task = f"task {step.task_id!r}" if step.task_id else "no task id"
    if state == "NO_TASK_ID":
        reason = (
            f"{step.step} (step {step.seq}) was about to be sent when the process "
            "stopped and no task id was recorded: it may or may not have reached "
            "the service; it is never sent again on its own"
        )
        detail = {"task": state, "reason": reason}
        return StepVerdict(step.seq, step.step, "UNKNOWN", detail, reason)

    if state == "FAILED":
        message = failed.error_message if failed else None
        reason = (
            f"{step.step} ({task}) FAILED ({message or 'no error message'}); "
            "FAILED does not prove nothing happened on chain, so it is not sent "
            "again: check the room's funds, then settle it by hand"
        )
        failure: dict[str, Any] = {"task": state, "errorMessage": message}
        failure["reason"] = reason
        return StepVerdict(step.seq, step.step, "FAILED", failure, reason)

    reason = (
        f"{step.step} ({task}) has no known outcome ({state} on resume); it is "
        "never sent again on its own: check the task later, then reconcile"
    )
    detail = {"task": state, "reason": reason}
    return StepVerdict(step.seq, step.step, "UNKNOWN", detail, reason)


async def _check_membership(
    step: StepRecord, room_id: str, client: MembershipSource, state: str
) -> StepVerdict:
    # join and leave are idempotent on chain: whoever is not where the step
    # would put them can simply be sent again by the room.
    ids = _plyr_ids(step.request)
    want = step.step == "join"
    done: list[str] = []
    missing: list[str] = []
    for plyr_id in ids:
        joined = await client.is_joined(room_id, plyr_id)
        (done if joined is want else missing).append(plyr_id)

    detail = {"task": state, "checked": "isJoined", "done": done, "missing": missing}
    # Nobody moved: as if never sent (the room may send it again, harmlessly).
    outcome = "SUCCESS" if not missing else "CHECKED" if done else "NOT_APPLIED"
    return StepVerdict(step.seq, step.step, outcome, detail)


def _plyr_ids(request: Mapping[str, Any]) -> list[str]:
    # Rooms journal ``plyr_ids`` (join, leave); API-shaped requests ``plyrIds``.
    ids = request.get("plyr_ids", request.get("plyrIds", ()))
    if not isinstance(ids, Sequence) or isinstance(ids, str):
        return []

    return list(dict.fromkeys(str(i).lower() for i in ids))


@attrs.frozen
class ResumedRoom:
    """Where one journaled room stands after a resume.

    Attributes:
        key: the room's client-side key.
        class_name: its registry name.
        room_id: the server's room id, if it was ever created.
        state: its state name now.
        outcome: ``"ended"``; ``"closed"`` (never created: nothing to do);
            ``"unsettled"`` (an operator must decide, see *reason*); or
            ``"stopped"`` (settled, but the walk did not finish, see *reason*).
        reason: why the room is not ended, or None.
        pending_task_ids: task ids the journal still has no outcome for.
    """

    key: str
    class_name: str
    room_id: str | None
    state: str
    outcome: str
    reason: str | None = None
    pending_task_ids: tuple[str, ...] = ()


@attrs.frozen
class ResumeReport:
    """What a resume did to every room the journal had unfinished."""

    rooms: tuple[ResumedRoom, ...] = ()

    @property
    def ended(self) -> tuple[ResumedRoom, ...]:
        """The rooms that are ended (or were closed: never created)."""
        return tuple(r for r in self.rooms if r.outcome in ("ended", "closed"))

    @property
    def unsettled(self) -> tuple[ResumedRoom, ...]:
        """The rooms an operator must look at (unsettled or stopped)."""
        return tuple(r for r in self.rooms if r.outcome in ("unsettled", "stopped"))

    @property
    def ok(self) -> bool:
        """True when every room ended or was closed."""
        return not self.unsettled

    def counts(self) -> dict[str, int]:
        """Return the number of rooms per outcome."""
        out: dict[str, int] = {}
        for room in self.rooms:
            out[room.outcome] = out.get(room.outcome, 0) + 1

        return out


async def resume(
    manager: RoomManager,
    *,
    players: Iterable[PlayerLike] = (),
    task_wait: float | None = None,
    walk: bool = True,
) -> ResumeReport:
    """Resume the manager's journal (:meth:`RoomManager.resume`) and report on it.

    Every room the journal had unfinished is in the report: ended, closed,
    unsettled (with the reason an operator needs) or stopped.

    Raises:
        ManagerClosed: if the manager has no journal.
    """
    journal = manager.journal
    before = [] if journal is None else await journal.unfinished()
    if journal is not None:
        # All rooms at once, so that their tasks share the poller's sweeps;
        # manager.resume then finds only what is still unknown.
        client, poller = manager.client, manager.poller
        await reconcile_rooms(before, journal, client, poller, timeout=task_wait)

    rooms = await manager.resume(players, task_wait=task_wait, walk=walk)
    assert journal is not None  # manager.resume refuses to run without one
    for room in rooms:
        # A room rebuilt from its steps may stand further than its record (a
        # step journaled after the record was, then the process died): write
        # where it stands now, unsettled reason included, for the next reader.
        await journal.room_updated(room.record())

    return await build_report(before, rooms, journal)


async def build_report(
    before: list[JournaledRoom], rooms: Iterable[GameRoom], journal: Journal
) -> ResumeReport:
    """Describe the rooms of *before* as they stand now (*rooms*: the restored)."""
    live = {room.key: room for room in rooms}
    after = {entry.room.key: entry for entry in await journal.unfinished()}
    return ResumeReport(
        tuple(_describe(e, live.get(e.room.key), after.get(e.room.key)) for e in before)
    )


def _describe(
    entry: JournaledRoom, room: GameRoom | None, after: JournaledRoom | None
) -> ResumedRoom:
    record = after.room if after is not None else entry.room
    state = room.state.value if room is not None else record.state
    room_id = room.room_id if room is not None else record.room_id
    pending = after.pending_task_ids if after is not None else ()
    base = (record.key, record.class_name, room_id, state)
    if after is None:
        outcome = "ended" if state == "ENDED" else "closed"
        return ResumedRoom(*base, outcome)

    if room is None:
        why = f"room class {record.class_name!r} is not registered"
        return ResumedRoom(*base, "unsettled", why, pending)

    if room.unsettled is not None:
        why = _step_reason(after, room.unsettled.seq) or room.unsettled.reason
        return ResumedRoom(*base, "unsettled", why, pending)

    if room.error is not None:
        why = f"a hook failed: {room.error!r}"
        return ResumedRoom(*base, "stopped", why, pending)

    why = f"the walk stopped in state {state} (see the log)"
    return ResumedRoom(*base, "stopped", why, pending)


def _step_reason(entry: JournaledRoom, seq: int | None) -> str | None:
    # The fuller reason reconcile_room journaled with the step, if any.
    for step in entry.steps:
        if step.seq == seq and step.detail:
            reason = step.detail.get("reason")
            return str(reason) if reason else None

    return None
