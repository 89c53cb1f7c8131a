"""The machinery under GameRoom: check, journal, send, wait, apply, hooks.

A private module: :mod:`plyr_rooms.room` holds the public class. Every call a room
makes to the journal is in the section "the journal" of :class:`RoomEngine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from . import lifecycle as _core
from ._observe import Subscription, Transition, TransitionHub
from ._roomvalues import (
    REVERTED,
    Done,
    PlayerLike,
    RoomServices,
    Sent,
    StepArgs,
    Unsettled,
    named,
    player_of,
    request_json,
    revert_proves_nothing,
    submit_pause,
)
from .errors import (
    ApiError,
    InvalidInput,
    InvalidTransition,
    RateLimited,
    TaskFailed,
    TaskLost,
    TaskTimeout,
    TransportError,
)
from .lifecycle import (
    Payment,
    Player,
    RoomBook,
    RoomState,
    Step,
    advance,
    plan,
    to_amount,
)
from .tasks import TaskRef, TaskResult

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ._roomvalues import Send
    from .journal import RoomRecord

__all__ = ["RoomEngine"]

logger = logging.getLogger(__name__)

_HOOKS = {
    Step.CREATE: "on_created",
    Step.JOIN: "on_joined",
    Step.PAY: "on_paid",
    Step.EARN: "on_earned",
    Step.LEAVE: "on_left",
    Step.END: "on_ended",
}
# Answers that prove the service did not take the request, so sending it again
# cannot repeat a side effect: the proxy's 429 and 503.
_NOT_TAKEN = (429, 503)
# Answers after which the request may or may not have been taken.
_MAYBE_TAKEN = (502, 504)
_ZERO = Decimal(0)
_NO_TASK_ID = "stopped before its task id was journaled"


class RoomEngine:
    """The step machinery of a room; :class:`~plyr_rooms.room.GameRoom` is the API."""

    room_name: ClassVar[str] = "GameRoom"
    token: str = "plyr"
    stake: Decimal = _ZERO
    expires_in: int | None = None
    atomic: bool = False
    walk_retries: int = 2

    def __init__(
        self,
        services: RoomServices,
        players: Iterable[PlayerLike | str] = (),
        *,
        key: str | None = None,
        token: str | None = None,
        stake: Decimal | int | str | None = None,
        expires_in: int | None = None,
        atomic: bool | None = None,
    ) -> None:
        self.services = services
        #: The client-side id of the room (the server's id comes with create).
        self.key = key or uuid.uuid4().hex
        #: Every player the room knows, by plyr id (joined or not yet).
        self.players: dict[str, Player] = {}
        self.add_players(players)
        if token is not None:
            self.token = token.lower()

        self.stake = to_amount(self.stake if stake is None else stake)
        if expires_in is not None:
            self.expires_in = expires_in

        if atomic is not None:
            self.atomic = atomic

        self.book = RoomBook()
        self.room_id: str | None = None
        self.room_address: str | None = None
        #: The step whose outcome is unknown, or None.
        self.unsettled: Unsettled | None = None
        #: The hook error that moved the room to FAILED, or None.
        self.error: BaseException | None = None
        #: Players refused by on_join_request: plyr id -> reason.
        self.refused: dict[str, str] = {}
        #: What play() returned in the default walk.
        self.payouts: tuple[Payment, ...] = ()
        #: Tasks this room submitted.
        self.tasks = 0
        #: Steps sent again because their task reverted.
        self.reverted = 0
        self._lock = anyio.Lock(fast_acquire=True)
        # The task holding the lock: a hook (which runs under it) may call
        # another step of its own room, which then runs at once.
        self._holder: object = None
        self._watchers: TransitionHub | None = None
        self._journaled = False
        #: The journal sequence number of the last step applied to the book.
        self.applied_seq: int | None = None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.key[:8]} room_id={self.room_id!r} "
            f"state={self.state.name}{' unsettled' if self.unsettled else ''}>"
        )

    @property
    def state(self) -> RoomState:
        """The room's state."""
        return self.book.state

    def add_players(self, players: Iterable[PlayerLike | str]) -> None:
        """Make *players* known to the room (a later :meth:`join` adds them)."""
        for p in players:
            player = player_of(p)
            self.players[player.plyr_id] = player

    def transitions(self, buffer: int = 64) -> Subscription:
        """Return an async iterator over this room's transitions from now on.

        It ends when the room ends. A full buffer drops the oldest transition
        (counted in ``dropped``); the room never waits for its observers.
        """
        if self._watchers is None:
            self._watchers = TransitionHub()
            if self.state is RoomState.ENDED:
                self._watchers.close()

        return self._watchers.subscribe(buffer)

    if TYPE_CHECKING:
        # The hooks the machinery calls; GameRoom defines them.
        async def on_join_request(
            self, players: tuple[Player, ...]
        ) -> Mapping[str, str]: ...

        async def on_failed(self, error: BaseException) -> None: ...

        def save_state(self) -> dict[str, Any]: ...

    # -- the step machinery ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        # The room's FIFO lock, re-entrant for the task that holds it. anyio's
        # Lock serves waiters in order and is released when a holder is
        # cancelled, so a cancelled step cannot wedge the room; fast_acquire
        # skips the scheduling round trip when the room is free.
        task = anyio.get_current_task().id
        if self._holder == task:
            yield
            return

        async with self._lock:
            self._holder = task
            try:
                yield
            finally:
                self._holder = None

    async def _step(
        self,
        step: Step,
        args: Callable[[], StepArgs],
        send: Send,
        *,
        admit: bool = False,
    ) -> Done | None:
        # A step counts as in flight (drain waits for it) from the call on:
        # while queued for the room, in its admission hook, sending, waiting.
        self.services.begin()
        try:
            async with self._exclusive():
                return await self._checked_step(step, args, send, admit=admit)
        finally:
            self.services.done()

    async def _checked_step(
        self,
        step: Step,
        args: Callable[[], StepArgs],
        send: Send,
        *,
        admit: bool,
    ) -> Done | None:
        # *args* gives the step's players and entries; it runs under the lock so
        # that defaults ("everyone in the room") see the steps queued before.
        if self.unsettled is not None:
            raise InvalidTransition(self.state, step, (), "unsettled")

        ids, entries = args()
        if admit:
            plan(self.state, step)  # the table first: no hook for a bad step
            ids, entries = await self._admit(step, ids, entries)
            if not ids and not entries and step is Step.CREATE_JOIN_PAY:
                reason = "no player was admitted"
                raise InvalidTransition(self.state, step, (), reason)

            if not ids and not entries:
                return None

        new = advance(self.book, step, ids, entries)
        return await self._send_and_wait(step, ids, entries, send, new)

    async def _send_and_wait(
        self,
        step: Step,
        ids: tuple[str, ...],
        entries: tuple[Payment, ...],
        send: Send,
        new: RoomBook,
    ) -> Done:
        seq = await self._j_intend(step, ids, entries)
        sent = await self._submit(step, ids, entries, send, seq)
        result = None
        if isinstance(sent, TaskRef):
            result = await self._wait(step, ids, entries, sent, seq)

        await self._finish(step, new, result, seq, ids, entries)
        return Done(result, named(ids, entries))

    async def _submit(
        self,
        step: Step,
        ids: tuple[str, ...],
        entries: tuple[Payment, ...],
        send: Send,
        seq: int | None,
    ) -> Sent:
        errors = 0  # 503s so far
        patience = self.services.rate_limit_patience  # seconds of 429 left
        while True:
            # Until an answer (or an error that proves nothing was taken) comes
            # back, the request may have been taken: a cancellation there leaves
            # the room unsettled.
            known = False
            try:
                sent = await send(ids, entries)
                known = True
            except InvalidInput as exc:
                known = True
                await self._j_settled(seq, "REFUSED", {"message": str(exc)})
                raise
            except ApiError as exc:
                known = exc.status not in _MAYBE_TAKEN
                pause = submit_pause(exc, errors)
                if isinstance(exc, RateLimited) and pause <= patience:
                    patience -= pause
                    await anyio.sleep(pause)
                    continue

                if exc.status in _NOT_TAKEN and errors < self.services.submit_retries:
                    errors += 1
                    await anyio.sleep(pause)
                    continue

                if known:
                    detail = {"status": exc.status, "message": exc.message}
                    await self._j_settled(seq, "REFUSED", detail)

                raise
            except TransportError as exc:
                known = not exc.sent
                if known:
                    await self._j_settled(seq, "REFUSED", {"message": str(exc)})

                raise
            finally:
                if not known:
                    why = "the request may have been taken (no answer)"
                    self.unsettled = Unsettled(step, why, None, ids, entries, seq)

            self.tasks += isinstance(sent, TaskRef)
            return sent

    async def _keep_task_id(
        self,
        step: Step,
        ids: tuple[str, ...],
        entries: tuple[Payment, ...],
        ref: TaskRef,
        seq: int | None,
        written: Awaitable[None] | None,
    ) -> None:
        # The service took the step. Whatever stops the journal write of its task
        # id (a cancellation, a journal error), the room must keep the id and stay
        # unsettled: otherwise a later call would send the step a second time.
        done = False
        try:
            if written is not None:
                await written

            done = True
        finally:
            if not done:
                self._mark_unsettled(step, _NO_TASK_ID, ids, entries, seq, ref.id)

    async def _wait(
        self,
        step: Step,
        ids: tuple[str, ...],
        entries: tuple[Payment, ...],
        ref: TaskRef,
        seq: int | None,
    ) -> TaskResult:
        # The task id's write goes on while the poller waits for the task: a
        # step waits for it only before it writes the outcome, which saves the
        # event loop one resumption of every step (see Journal.submitted).
        try:
            written = self._j_submitted(seq, ref.id)
        except BaseException:
            self._mark_unsettled(step, _NO_TASK_ID, ids, entries, seq, ref.id)
            raise

        if inspect.iscoroutine(written):  # a store that writes when awaited
            await self._keep_task_id(step, ids, entries, ref, seq, written)
            written = None

        settled = False
        try:
            poller = self.services.poller
            try:
                result = await poller.wait(ref, timeout=self.services.task_timeout)
            except (TaskFailed, TaskTimeout, TaskLost):
                await self._keep_task_id(step, ids, entries, ref, seq, written)
                raise

            await self._keep_task_id(step, ids, entries, ref, seq, written)
            settled = True
        except TaskFailed as failed:
            # The room is marked before any journal write, so that a cancellation
            # during one cannot leave it looking settled.
            settled = True
            message = failed.result.error_message
            window = self.services.revert_window
            reverted = revert_proves_nothing(failed.result, step, entries, window)
            if not reverted:
                why = _failure_reason(failed.result, window)
                self._mark_unsettled(step, why, ids, entries, seq, ref.id)

            outcome = "REVERTED" if reverted else "FAILED"
            detail = {"errorMessage": message}
            await self._j_settled(seq, outcome, detail, record=not reverted)

            raise
        except (TaskTimeout, TaskLost) as unknown:
            settled = True
            why = f"outcome unknown: {unknown}"
            self._mark_unsettled(step, why, ids, entries, seq, ref.id)
            outcome = "TIMEOUT" if isinstance(unknown, TaskTimeout) else "LOST"
            await self._j_settled(seq, outcome, {"reason": why}, record=True)
            raise
        finally:
            if not settled and self.unsettled is None:
                # Cancelled (or the poller closed) while waiting: the task runs
                # on; keep its id. The task id's write goes on too, unheard.
                why = "stopped while waiting for the task"
                self.unsettled = Unsettled(step, why, ref.id, ids, entries, seq)
                _let_go(written)

        return result

    async def _unsettle(
        self,
        step: Step,
        reason: str,
        ids: tuple[str, ...],
        entries: tuple[Payment, ...],
        seq: int | None,
        task_id: str | None = None,
    ) -> None:
        self._mark_unsettled(step, reason, ids, entries, seq, task_id)
        await self._j_updated()

    def _mark_unsettled(
        self,
        step: Step,
        reason: str,
        ids: tuple[str, ...],
        entries: tuple[Payment, ...],
        seq: int | None,
        task_id: str | None = None,
    ) -> None:
        # Synchronous on purpose: callers mark the room before they await.
        self.unsettled = Unsettled(step, reason, task_id, ids, entries, seq)
        logger.warning("room %s: %s unsettled: %s", self.key, step.value, reason)

    async def _finish(
        self,
        step: Step,
        new: RoomBook,
        result: TaskResult | None,
        seq: int | None,
        ids: tuple[str, ...],
        entries: tuple[Payment, ...],
    ) -> None:
        # The step happened: move the book, record it, tell observers, run hooks.
        if Step.CREATE in step.parts:
            if result is None or result.room_id is None:
                why = "created, but the task named no room"
                await self._unsettle(step, why, ids, entries, seq)
                raise TaskLost((result.task_id if result else None) or "?", why)

            self.room_id, self.room_address = result.room_id, result.room_address

        old = self.state
        self.book = new
        self.applied_seq = seq
        detail = {"roomId": self.room_id, "roomAddress": self.room_address}
        await self._j_settled(seq, "SUCCESS", detail, record=True)
        transition = Transition(
            self.key,
            self.room_id,
            step,
            old,
            new.state,
            result,
            named(ids, entries),
            entries,
        )
        self._publish(transition)
        for part in step.parts:
            hook = getattr(self, _HOOKS[part])
            try:
                await hook(transition)
            except Exception as exc:
                await self._fail(step, exc)
                raise

    async def _fail(self, step: Step, error: BaseException) -> None:
        old = self.state
        self.book = _core.fail(self.book)
        self.error = error
        await self._j_updated()
        self._publish(Transition(self.key, self.room_id, step, old, self.state))
        try:
            await self.on_failed(error)
        except Exception as second:
            error.add_note(f"on_failed raised too: {second!r}")

    def _publish(self, transition: Transition) -> None:
        self.services.hub.publish(transition)
        if self._watchers is not None:
            self._watchers.publish(transition)
            if transition.new is RoomState.ENDED:
                self._watchers.close()

    async def _admit(
        self, step: Step, ids: tuple[str, ...], entries: tuple[Payment, ...]
    ) -> tuple[tuple[str, ...], tuple[Payment, ...]]:
        asking = ids or tuple(dict.fromkeys(e.plyr_id for e in entries))
        fresh = tuple(self.players[p] for p in asking if p not in self.book.players)
        try:
            refusals = dict(await self.on_join_request(fresh)) if fresh else {}
        except Exception as exc:
            await self._fail(step, exc)
            raise

        if not refusals:
            return ids, entries

        self.refused.update(refusals)
        return (
            tuple(p for p in ids if p not in refusals),
            tuple(e for e in entries if e.plyr_id not in refusals),
        )

    # -- the journal: every call a room makes to it is here -------------------------

    def record(self) -> RoomRecord:
        """Return what the journal keeps of this room (no session JWTs)."""
        from .journal import RoomRecord

        return RoomRecord(
            key=self.key,
            class_name=type(self).room_name,
            state=self.state.value,
            room_id=self.room_id,
            room_address=self.room_address,
            players=tuple(self.players),
            pot=self.book.pot,
            unsettled=self.unsettled.reason if self.unsettled else None,
            data={
                "book": self.book.to_json(),
                "token": self.token,
                "stake": format(self.stake, "f"),
                "unsettled": self.unsettled.to_json() if self.unsettled else None,
                "refused": self.refused,
                "applied_seq": self.applied_seq,
                "game": self.save_state(),
            },
        )

    async def journal_sync(self) -> None:
        """Write the room's record to the journal now (no-op without a journal)."""
        await self._j_updated()

    async def _j_intend(
        self, step: Step, ids: tuple[str, ...], entries: tuple[Payment, ...]
    ) -> int | None:
        journal = self.services.journal
        if journal is None:
            return None

        if not self._journaled:
            await journal.room_opened(self.record())
            self._journaled = True

        request = {"roomId": self.room_id, **request_json(ids, entries)}
        return await journal.intend(self.key, step.value, request)

    def _j_submitted(self, seq: int | None, task_id: str) -> Awaitable[None] | None:
        if self.services.journal is None or seq is None:
            return None

        return self.services.journal.submitted(self.key, seq, task_id)

    async def _j_settled(
        self,
        seq: int | None,
        outcome: str,
        detail: Mapping[str, Any] | None,
        *,
        record: bool = False,
    ) -> None:
        # With *record*, the room's record goes in the same write as the outcome.
        journal = self.services.journal
        if journal is None:
            return

        if seq is None:
            if record:
                await self._j_updated()
            return

        # The record is made in the call, so that this frame does not keep it
        # alive while the write waits (the journal's settled says why).
        await journal.settled(
            self.key,
            seq,
            outcome,
            detail,
            room=self.record() if record and self._journaled else None,
        )

    async def _j_updated(self) -> None:
        if self.services.journal is not None and self._journaled:
            await self.services.journal.room_updated(self.record())

    # -- small helpers ----------------------------------------------------------------

    def _room_id(self) -> str:
        if self.room_id is None:
            raise InvalidTransition(self.state, None, (), "the room has no id yet")

        return self.room_id

    def _jwt(self, plyr_id: str) -> str | None:
        player = self.players.get(plyr_id)
        return None if player is None else player.session_jwt

    def _jwts(self, ids: Iterable[str]) -> list[str]:
        jwts = []
        for plyr_id in ids:
            jwt = self._jwt(plyr_id)
            if jwt is None:
                raise InvalidInput(f"player {plyr_id!r} has no session JWT")

            jwts.append(jwt)

        return jwts

    def _entry_jwts(self, entries: Iterable[Payment]) -> list[str]:
        return self._jwts(e.plyr_id for e in entries)

    def _ids(self, players: Iterable[PlayerLike | str]) -> tuple[str, ...]:
        ids = []
        for p in players:
            player = player_of(p)
            if player.plyr_id not in self.players or player.session_jwt is not None:
                self.players[player.plyr_id] = player

            ids.append(player.plyr_id)

        return tuple(dict.fromkeys(ids))

    def _named_players(
        self, players: Iterable[PlayerLike | str] | None
    ) -> tuple[str, ...] | None:
        return None if players is None else self._ids(players)

    def _candidates(self, named: tuple[str, ...] | None) -> tuple[str, ...]:
        if named is not None:
            return named

        return tuple(
            p
            for p in self.players
            if p not in self.book.players and p not in self.refused
        )

    def _has_paid(self, plyr_id: str) -> bool:
        return any(p == plyr_id for p, _ in self.book.paid)

    def _stakes(
        self, ids: Iterable[str], stake: Decimal | int | str | None
    ) -> tuple[Payment, ...]:
        amount = self.stake if stake is None else to_amount(stake)
        return tuple(Payment(p, self.token, amount) for p in ids)

    def _payments(
        self, value: Mapping[str, Decimal | int | str] | Iterable[Payment]
    ) -> tuple[Payment, ...]:
        if isinstance(value, Mapping):
            return tuple(Payment(p, self.token, a) for p, a in value.items())

        entries = tuple(value)
        if not all(isinstance(e, Payment) for e in entries):
            raise InvalidInput("payments are a mapping plyr id -> amount or Payments")

        return entries

    def _with_everyone(self, entries: tuple[Payment, ...]) -> tuple[Payment, ...]:
        named = {e.plyr_id for e in entries}
        rest = [
            Payment(m, self.token, 0) for m in self.book.members() if m not in named
        ]
        return entries + tuple(rest)


def _failure_reason(result: TaskResult, window: float) -> str:
    # Why a FAILED task leaves its room unsettled (its step may have executed).
    message = result.error_message
    if REVERTED not in (message or ""):
        return f"failed without a revert ({message!r}): it may have executed"

    seconds = result.service_seconds
    when = "at an unknown time" if seconds is None else f"{seconds:.1f} s"
    return (
        f"reverted {when} after it was enqueued (not within the first"
        f" attempt's {window:g} s): an earlier attempt whose receipt was lost"
        " may have moved tokens"
    )


def _let_go(written: Awaitable[None] | None) -> None:
    # A write nobody will await: the store still makes it, but a failure must
    # not be logged as an exception never retrieved (an asyncio future logs
    # one when collected, unless it was cancelled first).
    if isinstance(written, asyncio.Future):
        written.cancel()
