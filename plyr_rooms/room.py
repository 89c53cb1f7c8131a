"""GameRoom: one room's walk on the PLYR API, with the game in its hooks.

Each step method checks the step with the sans-IO core (:mod:`plyr_rooms.lifecycle`)
before anything is sent, records it in the journal (when there is one), sends it
through the shared :class:`~plyr_rooms.client.PlyrClient`, waits for its task on the
shared :class:`~plyr_rooms.poller.TaskPoller`, then moves the room's book, tells the
observers and runs the step's hooks. Steps of one room run one at a time, in the
order they were called; different rooms run concurrently.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._observe import Subscription, Transition
from ._reconcile import Reconciling
from ._roomvalues import (
    REVERTED,
    PlayerLike,
    RoomServices,
    Sent,
    StepArgs,
    Unsettled,
    columns,
    nobody,
    read_request,
    result_of,
)
from .errors import InvalidRequest, InvalidTransition, TaskFailed
from .lifecycle import Payment, Player, RoomBook, RoomState, Step, advance

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping
    from typing import Self

    from .journal import JournaledRoom, StepRecord
    from .tasks import TaskResult

__all__ = [
    "REVERTED",
    "ROOM_CLASSES",
    "GameRoom",
    "PlayerLike",
    "RoomServices",
    "Subscription",
    "Transition",
    "Unsettled",
]

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
# Journaled outcomes that prove a step did nothing.
_NOTHING_HAPPENED = frozenset({"REFUSED", "REVERTED", "NOT_APPLIED"})

#: Room classes by registry name, for resuming journaled rooms. Every subclass of
#: GameRoom registers itself under its ``room_name``.
ROOM_CLASSES: dict[str, type[GameRoom]] = {}


class GameRoom(Reconciling):
    """One game room: the walk create, join, pay, play, earn, leave, end.

    Subclass it and override :meth:`play` (and any hook). Every step is a method
    that may be called on its own for a custom flow; :meth:`run` walks the whole
    default lifecycle. Rooms are usually opened by a
    :class:`~plyr_rooms.manager.RoomManager`.

    Steps are checked before anything is sent: a step the table or the chain's
    rules refuse raises :class:`InvalidTransition` and sends nothing. A task that
    ended FAILED leaves the state as it was and raises :class:`TaskFailed`. A step
    whose outcome is unknown (a deadline, a lost task, a failure that may have
    executed, a request that may have been taken) marks the room
    :attr:`unsettled`; every other step then raises :class:`InvalidTransition`
    with reason ``"unsettled"`` until :meth:`reconcile` or :meth:`resolve` settles
    it. Nothing is ever sent again on its own.

    Hooks run in the step's own task once the outcome is journaled, still
    holding the room: a hook may call the room's next step directly (it runs at
    once), but must not wait for a step of its room running in another task. A
    hook that raises moves the room to FAILED, calls :meth:`on_failed` and
    re-raises; a FAILED room can still pay players back and end (see
    :meth:`refund`). A composite step runs the hooks of its parts in order
    (create-join-pay: on_created, on_joined, on_paid), with one transition.

    Class attributes a subclass may set:
        room_name: the registry name resume uses (default: module + class name).
        token: the token of the default walk (lower-case symbol).
        stake: what each player pays in the default walk.
        expires_in: seconds until the room may be closed on chain (None: the
            service's default).
        atomic: whether :meth:`run` uses the API's helpers (two tasks).
        walk_retries: times :meth:`run` sends a step again after its task
            reverted (a revert proves nothing happened).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "room_name" not in cls.__dict__:
            cls.room_name = f"{cls.__module__}.{cls.__qualname__}"

        ROOM_CLASSES[cls.room_name] = cls

    # -- hooks: override in a subclass ----------------------------------------------

    async def on_join_request(self, players: tuple[Player, ...]) -> Mapping[str, str]:
        """Decide who may join, before anything is sent.

        Returns:
            plyr id -> reason for every refused player (empty: admit everyone).
            Refused players are left out of the step and kept in :attr:`refused`.
        """
        return {}

    async def on_created(self, transition: Transition) -> None:
        """Run after the room was created on chain."""

    async def on_joined(self, transition: Transition) -> None:
        """Run after players joined (``transition.plyr_ids``)."""

    async def on_paid(self, transition: Transition) -> None:
        """Run after players paid (``transition.payments``)."""

    async def on_earned(self, transition: Transition) -> None:
        """Run after players were paid out (gross amounts, before the fee)."""

    async def on_left(self, transition: Transition) -> None:
        """Run after players left."""

    async def on_ended(self, transition: Transition) -> None:
        """Run after the room ended."""

    async def on_failed(self, error: BaseException) -> None:
        """Run when a hook (or :meth:`play`) raised; the room is FAILED."""

    async def play(self) -> Mapping[str, Decimal | int | str] | Iterable[Payment]:
        """Play the game once everyone has paid; return the payouts.

        Returns:
            plyr id -> gross amount in the room's token, or Payment entries (any
            token). Together they must empty the pot: the default walk refuses
            payouts that leave tokens in the room or take more than it holds.
            This default gives every player back what they paid.
        """
        return [
            Payment(p, t, a)
            for (p, t), a in self.book.paid.items()
            if self.book.net_paid(p, t) > 0 and p in self.book.members()
        ]

    def save_state(self) -> dict[str, Any]:
        """Return the game's own state for the journal (plain JSON, no secrets)."""
        return {}

    def load_state(self, data: Mapping[str, Any]) -> None:
        """Take back what :meth:`save_state` returned, when a room is resumed."""

    # -- steps ------------------------------------------------------------------

    async def create(self, *, expires_in: int | None = None) -> TaskResult | None:
        """Create the room on chain (``POST /game/create``).

        A cancellation once the request was sent leaves the room unsettled.
        """
        expires = self.expires_in if expires_in is None else expires_in

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.create(expires_in=expires)

        return result_of(await self._step(Step.CREATE, nobody, send))

    async def join(
        self, players: Iterable[PlayerLike | str] | None = None
    ) -> tuple[str, ...]:
        """Join *players* (default: every known player not yet in the room).

        Returns:
            The plyr ids that joined (after on_join_request); empty if nobody was
            admitted, in which case nothing was sent.
        """
        named = self._named_players(players)

        def args() -> StepArgs:
            return self._candidates(named), ()

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            room = self._room_id()
            return await self.services.client.join(room, self._jwts(ids))

        done = await self._step(Step.JOIN, args, send, admit=True)
        return () if done is None else done.plyr_ids

    async def pay(
        self,
        payments: Mapping[str, Decimal | int | str] | Iterable[Payment] | None = None,
    ) -> TaskResult | None:
        """Move tokens from players into the room (``POST /game/pay``).

        Args:
            payments: plyr id -> amount in the room's token, or Payment entries;
                default: every player in the room who has not paid pays the stake.
        """
        given = None if payments is None else self._payments(payments)

        def args() -> StepArgs:
            if given is not None:
                return (), given

            unpaid = [m for m in self.book.members() if not self._has_paid(m)]
            return (), self._stakes(unpaid, None)

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.pay(
                self._room_id(), self._entry_jwts(entries), *columns(entries)
            )

        return result_of(await self._step(Step.PAY, args, send))

    async def earn(
        self, payouts: Mapping[str, Decimal | int | str] | Iterable[Payment]
    ) -> TaskResult | None:
        """Pay tokens out of the room to players (gross; the chain keeps its fee)."""

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.earn(
                self._room_id(), [e.plyr_id for e in entries], *columns(entries)
            )

        entries = self._payments(payouts)
        return result_of(await self._step(Step.EARN, lambda: ((), entries), send))

    async def leave(
        self, players: Iterable[PlayerLike | str] | None = None
    ) -> TaskResult | None:
        """Let *players* leave (default: everyone in the room); needs live JWTs."""
        named = self._named_players(players)

        def args() -> StepArgs:
            return (self.book.members() if named is None else named), ()

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.leave(self._room_id(), self._jwts(ids))

        return result_of(await self._step(Step.LEAVE, args, send))

    async def end(self) -> TaskResult | None:
        """End the room; refused while any token is left in it."""

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.end(self._room_id())

        return result_of(await self._step(Step.END, nobody, send))

    async def create_join_pay(
        self,
        players: Iterable[PlayerLike | str] | None = None,
        *,
        stake: Decimal | int | str | None = None,
        expires_in: int | None = None,
    ) -> TaskResult | None:
        """Create the room, join *players* and take their stake, in one task."""
        expires = self.expires_in if expires_in is None else expires_in
        named = self._named_players(players)

        def args() -> StepArgs:
            return (), self._stakes(self._candidates(named), stake)

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.create_join_pay(
                self._entry_jwts(entries), *columns(entries), expires_in=expires
            )

        return result_of(await self._step(Step.CREATE_JOIN_PAY, args, send, admit=True))

    async def join_pay(
        self,
        players: Iterable[PlayerLike | str] | None = None,
        *,
        stake: Decimal | int | str | None = None,
    ) -> TaskResult | None:
        """Join *players* (default: those not in the room yet) and take their stake."""
        named = self._named_players(players)

        def args() -> StepArgs:
            return (), self._stakes(self._candidates(named), stake)

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.join_pay(
                self._room_id(), self._entry_jwts(entries), *columns(entries)
            )

        return result_of(await self._step(Step.JOIN_PAY, args, send, admit=True))

    async def earn_leave(
        self, payouts: Mapping[str, Decimal | int | str] | Iterable[Payment]
    ) -> TaskResult | None:
        """Pay players out and let them leave, in one task; no JWT needed.

        A player listed with amount 0 just leaves: that is how players whose
        session lapsed get out.
        """

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.earn_leave(
                self._room_id(), [e.plyr_id for e in entries], *columns(entries)
            )

        entries = self._payments(payouts)
        return result_of(await self._step(Step.EARN_LEAVE, lambda: ((), entries), send))

    async def earn_leave_end(
        self,
        payouts: Mapping[str, Decimal | int | str] | Iterable[Payment] = (),
    ) -> TaskResult | None:
        """Pay out, let everyone leave and end the room, in one task.

        Everyone still in the room is listed (amount 0 if *payouts* leaves them
        out), so that the room ends empty.
        """
        given = self._payments(payouts)

        def args() -> StepArgs:
            return (), self._with_everyone(given)

        async def send(ids: tuple[str, ...], entries: tuple[Payment, ...]) -> Sent:
            return await self.services.client.earn_leave_end(
                self._room_id(), [e.plyr_id for e in entries], *columns(entries)
            )

        return result_of(await self._step(Step.EARN_LEAVE_END, args, send))

    # -- walks ------------------------------------------------------------------

    async def run(self, *, atomic: bool | None = None) -> tuple[Payment, ...]:
        """Walk the room from where it is to ENDED; return the payouts.

        Step by step: create, join, pay, play, earn, leave, end (six tasks). With
        *atomic*: create-join-pay, play, earn-leave-end (two tasks). Players whose
        session lapsed leave through earn-leave with amount 0. A step whose task
        reverted is sent again up to ``walk_retries`` times; any other error stops
        the walk and is raised, the room keeping the state it reached.

        A manager's drain waits for walks in progress (up to its deadline).
        """
        self.services.begin()
        try:
            return await self._walk(self.atomic if atomic is None else atomic)
        finally:
            self.services.done()

    async def _walk(self, atomic: bool) -> tuple[Payment, ...]:
        if self.state is RoomState.NEW:
            await self.retry_reverted(self.create_join_pay if atomic else self.create)

        if self.state is RoomState.CREATED:
            await self.retry_reverted(self.join)

        if self.state is RoomState.JOINED:
            await self.retry_reverted(self.pay)

        if self.state is RoomState.PAID:
            self.payouts = await self.play_game()
            if atomic:
                await self.retry_reverted(lambda: self.earn_leave_end(self.payouts))
                return self.payouts

            paying = [p for p in self.payouts if p.amount]
            if paying:
                await self.retry_reverted(lambda: self.earn(paying))

        await self._close_out()
        return self.payouts

    async def refund(self) -> None:
        """Give every player in the room back what they paid net, then end.

        Meant for a FAILED room (or any room whose game was abandoned). Tokens
        paid by players who already left stay in the pot, so the room then only
        lets the players go and cannot end.
        """
        back = [
            Payment(p, t, self.book.net_paid(p, t))
            for (p, t) in self.book.paid
            if p in self.book.members() and self.book.net_paid(p, t) > 0
        ]
        total: dict[str, Decimal] = {}
        for entry in back:
            total[entry.token] = total.get(entry.token, _ZERO) + entry.amount

        if all(total.get(t, _ZERO) == a for t, a in self.book.pot.items()):
            await self.earn_leave_end(back)
        elif self.book.members():
            await self.earn_leave(self._with_everyone(tuple(back)))

    async def leave_all(self) -> None:
        """Let everyone still in the room leave.

        Players with a session JWT leave through leave; if the service refuses
        their sessions, or they have none, they leave through earn-leave with
        amount 0, which needs no JWT.
        """
        members = self.book.members()
        live = [m for m in members if self._jwt(m) is not None]
        lapsed = [m for m in members if self._jwt(m) is None]
        if live:
            try:
                await self.retry_reverted(lambda: self.leave(live))
            except InvalidRequest as refused:
                # Nothing was sent on chain: the API refused the sessions.
                logger.debug("room %s: leave refused (%s)", self.key, refused)
                lapsed = list(self.book.members())

        if lapsed:
            zero = [Payment(m, self.token, 0) for m in lapsed]
            await self.retry_reverted(lambda: self.earn_leave(zero))

    async def _close_out(self) -> None:
        if self.state in (RoomState.PAID, RoomState.EARNED, RoomState.LEFT):
            await self.leave_all()

        if self.state is not RoomState.ENDED:
            await self.retry_reverted(self.end)

    async def retry_reverted(self, step: Callable[[], Awaitable[object]]) -> None:
        """Run *step* (a call of a step method), sending it again if it reverted.

        A revert (FAILED with "Transaction Receipt Failed") that proves the task
        did nothing makes sending it again safe: any revert of a step that moves
        no tokens, and for one that does, a revert on the worker's first attempt
        (within the services' ``revert_window`` of enqueueing). A later revert
        leaves the room unsettled and is raised, like any other error. At most
        ``walk_retries`` more attempts.
        """
        for attempt in range(self.walk_retries + 1):
            try:
                await step()
                return
            except TaskFailed as failed:
                reverted = REVERTED in (failed.result.error_message or "")
                if not reverted or self.unsettled or attempt == self.walk_retries:
                    raise

                self.reverted += 1
                logger.debug("room %s: %s reverted, sending again", self.key, failed)

    async def play_game(self) -> tuple[Payment, ...]:
        """Run :meth:`play` as a hook and return its payouts, checked.

        Payouts that would not empty the pot exactly (or take more than it
        holds) count as a hook failure, like an error raised by play(): the room
        moves to FAILED, on_failed runs, and the error is raised. For custom
        flows; :meth:`run` calls it.
        """
        self.services.begin()
        try:
            payouts = self._payments(await self.play())
            advance(self.book, Step.EARN_LEAVE_END, (), self._with_everyone(payouts))
        except Exception as exc:
            async with self._exclusive():
                await self._fail(Step.EARN, exc)

            raise
        finally:
            self.services.done()

        self.payouts = payouts
        return payouts

    # -- resume -------------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        services: RoomServices,
        entry: JournaledRoom,
        players: Iterable[PlayerLike] = (),
    ) -> Self:
        """Rebuild a room from its journal entry (session JWTs are not journaled).

        Steps journaled after the room's record was last written are replayed
        onto its book when they succeeded; the first one whose outcome is not
        known (none, TIMEOUT, LOST, UNKNOWN, a FAILED that may have executed)
        makes the room unsettled: settle it with :meth:`reconcile` or
        :meth:`resolve` first. *players* gives back the session JWTs of players
        still online (the journal never holds them).
        """
        record = entry.room
        data = record.data
        room = cls(
            services,
            players,
            key=record.key,
            token=data.get("token"),
            stake=data.get("stake"),
        )
        for plyr_id in record.players:
            room.players.setdefault(plyr_id, Player(plyr_id))

        if "book" in data:
            room.book = RoomBook.from_json(data["book"])
        else:
            room.book = RoomBook(state=RoomState(record.state))

        room.room_id, room.room_address = record.room_id, record.room_address
        room.refused = dict(data.get("refused", {}))
        room.applied_seq = data.get("applied_seq")
        room._journaled = True
        for step in entry.steps:
            if room.applied_seq is not None and step.seq <= room.applied_seq:
                continue

            room._replay(step, record.unsettled)
            if room.unsettled is not None:
                break

        room.load_state(data.get("game", {}))
        return room

    def _replay(self, record: StepRecord, why: str | None) -> None:
        # Bring the book up to a journaled step the record does not show yet.
        step = Step(record.step)
        ids, payments = read_request(record.request)
        detail = record.detail or {}
        if record.outcome in _NOTHING_HAPPENED:
            return

        if record.outcome == "CHECKED":
            # Resume settled a join or leave from isJoined: some are done.
            ids = tuple(detail.get("done", ()))
        elif record.outcome != "SUCCESS":
            why = why or f"{step.value}: outcome {record.outcome or 'not journaled'}"
            self.unsettled = Unsettled(
                step, why, record.task_id, ids, payments, record.seq
            )
            return

        if Step.CREATE in step.parts:
            self.room_id = detail.get("roomId", self.room_id)
            self.room_address = detail.get("roomAddress", self.room_address)

        if ids or payments or Step.JOIN not in step.parts:
            try:
                self.book = advance(self.book, step, ids, payments)
            except InvalidTransition as refused:
                why = f"the journal's {step.value} does not fit the book: {refused}"
                self.unsettled = Unsettled(step, why, record.task_id, ids, payments)
                return

        self.applied_seq = record.seq
