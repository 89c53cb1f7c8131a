# The sans-IO core of a game room.
#
# This module owns the rules, not the traffic: the room and player states, the one
# TRANSITIONS table every step is checked against, and the room's book (who is in
# the room, who paid and earned what, the pot per token). Its functions are pure:
# they take a book and a step and return the next book, or raise InvalidTransition
# before anything is sent. Nothing here awaits, sleeps, logs requests or imports
# aiohttp; GameRoom (room.py) is the async shell that sends what this allows.
"""Room and player states, the transition table and the room's book."""

from __future__ import annotations

import decimal
import enum
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from .errors import InvalidInput, InvalidTransition
from .tasks import TaskMethod

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "COMPOSITES",
    "MAX_DECIMALS",
    "TRANSITIONS",
    "Move",
    "Payment",
    "Player",
    "PlayerState",
    "RoomBook",
    "RoomState",
    "Step",
    "advance",
    "allowed_steps",
    "fail",
    "plan",
    "split_earn",
    "table_markdown",
    "to_amount",
]

#: Every token the service lists has 18 decimals; finer amounts would be rounded by
#: the chain and the book would no longer match it, so they are refused.
MAX_DECIMALS = 18

# Sums of amounts must be exact whatever their size: 28 digits (the default
# context) is not enough for 18 decimals plus a large integer part.
_MONEY = decimal.Context(prec=80, traps=[decimal.InvalidOperation])
_ZERO = Decimal(0)
_UNIT = Decimal(1).scaleb(-MAX_DECIMALS)


class RoomState(enum.StrEnum):
    """Where a room stands, named after the last step it completed.

    The order of the members is the order of the walk; a room never moves to an
    earlier state. FAILED (a hook raised) comes after every open state: from it
    only the steps that give tokens back and close the room are allowed.
    """

    NEW = "NEW"
    CREATED = "CREATED"
    JOINED = "JOINED"
    PAID = "PAID"
    EARNED = "EARNED"
    LEFT = "LEFT"
    FAILED = "FAILED"
    ENDED = "ENDED"

    @property
    def rank(self) -> int:
        """Position in the walk; a room's rank never decreases."""
        return _ROOM_RANK[self]


_ROOM_RANK = {state: i for i, state in enumerate(RoomState)}


class Step(enum.StrEnum):
    """What a room can be asked to do: one per API operation."""

    CREATE = "create"
    JOIN = "join"
    PAY = "pay"
    EARN = "earn"
    LEAVE = "leave"
    END = "end"
    CREATE_JOIN_PAY = "create_join_pay"
    JOIN_PAY = "join_pay"
    EARN_LEAVE = "earn_leave"
    EARN_LEAVE_END = "earn_leave_end"

    @property
    def parts(self) -> tuple[Step, ...]:
        """The plain steps this one stands for, in order (itself if plain)."""
        return COMPOSITES.get(self, (self,))

    @property
    def method(self) -> TaskMethod:
        """The task name the service gives this step."""
        return _METHODS[self]


_METHODS = {
    Step.CREATE: TaskMethod.CREATE,
    Step.JOIN: TaskMethod.JOIN,
    Step.PAY: TaskMethod.PAY,
    Step.EARN: TaskMethod.EARN,
    Step.LEAVE: TaskMethod.LEAVE,
    Step.END: TaskMethod.END,
    Step.CREATE_JOIN_PAY: TaskMethod.CREATE_JOIN_PAY,
    Step.JOIN_PAY: TaskMethod.JOIN_PAY,
    Step.EARN_LEAVE: TaskMethod.EARN_LEAVE,
    Step.EARN_LEAVE_END: TaskMethod.EARN_LEAVE_END,
}


class PlayerState(enum.StrEnum):
    """Where one player stands in a room; like the room, it only moves forward."""

    JOINED = "JOINED"
    PAID = "PAID"
    EARNED = "EARNED"
    LEFT = "LEFT"

    @property
    def rank(self) -> int:
        """Position in the player's walk."""
        return _PLAYER_RANK[self]


_PLAYER_RANK = {state: i for i, state in enumerate(PlayerState)}

#: The API's helpers and the plain steps they stand for (one transaction each).
COMPOSITES: Mapping[Step, tuple[Step, ...]] = {
    Step.CREATE_JOIN_PAY: (Step.CREATE, Step.JOIN, Step.PAY),
    Step.JOIN_PAY: (Step.JOIN, Step.PAY),
    Step.EARN_LEAVE: (Step.EARN, Step.LEAVE),
    Step.EARN_LEAVE_END: (Step.EARN, Step.LEAVE, Step.END),
}

_S = RoomState
_OPEN_AFTER_JOIN = {
    Step.JOIN: _S.JOINED,
    Step.PAY: _S.PAID,
    Step.EARN: _S.EARNED,
    Step.LEAVE: _S.LEFT,
    Step.END: _S.ENDED,
}

# The plain steps. Late players may join, pay and earn while the room is open, so
# the open states accept the same steps; the target is never behind the state
# (a late join in PAID stays PAID). The book's rules decide the rest.
_PLAIN: dict[RoomState, dict[Step, RoomState]] = {
    _S.NEW: {Step.CREATE: _S.CREATED},
    _S.CREATED: {Step.JOIN: _S.JOINED, Step.END: _S.ENDED},
    **{
        state: {
            step: max(state, target, key=lambda s: s.rank)
            for step, target in _OPEN_AFTER_JOIN.items()
        }
        for state in (_S.JOINED, _S.PAID, _S.EARNED, _S.LEFT)
    },
    # After a hook failed: only give tokens back, let players go, and end.
    _S.FAILED: {
        Step.EARN: _S.FAILED,
        Step.LEAVE: _S.FAILED,
        Step.END: _S.ENDED,
    },
    _S.ENDED: {},
}


def _fold(state: RoomState, parts: tuple[Step, ...]) -> RoomState | None:
    # A composite step is allowed where its parts are, one after the other.
    for part in parts:
        target = _PLAIN[state].get(part)
        if target is None:
            return None

        state = target

    return state


def _build_table() -> dict[RoomState, dict[Step, RoomState]]:
    table: dict[RoomState, dict[Step, RoomState]] = {}
    for state in RoomState:
        row = dict(_PLAIN[state])
        for step, parts in COMPOSITES.items():
            target = _fold(state, parts)
            if target is not None:
                row[step] = target

        table[state] = row

    return table


#: state -> {step: the state the room is in after it}. The only record of which
#: steps are legal where; composite rows are the fold of their parts.
TRANSITIONS: Mapping[RoomState, Mapping[Step, RoomState]] = _build_table()


def table_markdown() -> str:
    """Return TRANSITIONS as a Markdown table (state rows, step columns)."""
    steps = list(Step)
    lines = [
        "| state | " + " | ".join(step.value for step in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for state, row in TRANSITIONS.items():
        cells = [row[step].value if step in row else "" for step in steps]
        lines.append(f"| {state.value} | " + " | ".join(cells) + " |")

    return "\n".join(lines) + "\n"


@attrs.frozen
class Move:
    """One row of the table: *step* takes a room from *state* to *target*."""

    state: RoomState
    step: Step
    target: RoomState


def allowed_steps(state: RoomState) -> tuple[Step, ...]:
    """Return the steps the table allows from *state*, in walk order."""
    return tuple(TRANSITIONS[state])


def plan(state: RoomState, step: Step) -> Move:
    """Return the move *step* makes from *state*.

    Raises:
        InvalidTransition: If the table has no such move.
    """
    target = TRANSITIONS[state].get(step)
    if target is None:
        raise InvalidTransition(state, step, allowed_steps(state))

    return Move(state, step, target)


def to_amount(value: Decimal | int | str) -> Decimal:
    """Return *value* as a Decimal amount of tokens.

    Raises:
        InvalidInput: If it is a float, not a finite number, negative, or finer
            than MAX_DECIMALS places.
    """
    if isinstance(value, float | bool):
        raise InvalidInput(f"amounts are Decimal, int or str, not {value!r}")

    try:
        amount = Decimal(value)
    except (decimal.InvalidOperation, TypeError, ValueError):
        raise InvalidInput(f"not an amount: {value!r}") from None

    if not amount.is_finite() or amount < 0:
        raise InvalidInput(f"amount must be finite and not negative: {value!r}")

    if amount != amount.quantize(_UNIT, context=_MONEY):
        raise InvalidInput(f"amount has more than {MAX_DECIMALS} decimals: {value!r}")

    return amount if amount else _ZERO


def split_earn(
    amount: Decimal, fee_percent: int = 2, decimals: int = MAX_DECIMALS
) -> tuple[Decimal, Decimal]:
    """Return (what the player receives, the platform fee) for an earn of *amount*.

    The chain takes ``floor(amount * fee_percent / 100)`` in the token's smallest
    unit out of every earn; the room's pot drops by the whole *amount*.
    """
    unit = Decimal(1).scaleb(-decimals)
    units = int(_MONEY.divide_int(amount, unit))
    fee = Decimal(units * fee_percent // 100).scaleb(-decimals)
    return _tidy(_MONEY.subtract(amount, fee)), _tidy(fee)


def _tidy(amount: Decimal) -> Decimal:
    # No trailing zeros, and no exponent either (1E+1 prints badly).
    plain = amount.normalize(_MONEY)
    exponent = plain.as_tuple().exponent
    return plain.quantize(1) if isinstance(exponent, int) and exponent > 0 else plain


def _lower(value: str) -> str:
    return value.lower()


@attrs.frozen
class Player:
    """A player: their plyr id and, when a step needs one, a live session JWT.

    Attributes:
        plyr_id: the lower-cased plyr id.
        session_jwt: the session token; a secret, never shown in a repr. None for
            players who can no longer sign (they still leave through earn-leave).
    """

    plyr_id: str = attrs.field(converter=_lower)
    session_jwt: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class Payment:
    """One entry of a pay or an earn: a player, a token, an amount.

    For an earn the amount is gross: the player receives it less the platform fee
    (see :func:`split_earn`) and the pot drops by all of it.
    """

    plyr_id: str = attrs.field(converter=_lower)
    token: str = attrs.field(converter=_lower)
    amount: Decimal = attrs.field(converter=to_amount)


@attrs.frozen
class RoomBook:
    """What the client knows of one room: its state, its players, its money.

    Attributes:
        state: the room's state.
        players: plyr id -> state, for everyone who ever joined (LEFT included).
        paid: (plyr id, token) -> total paid in, since the room opened.
        earned: (plyr id, token) -> total paid out (gross), since the room opened.
        pot: token -> paid minus earned over all players; never negative.
    """

    state: RoomState = RoomState.NEW
    players: Mapping[str, PlayerState] = attrs.field(factory=dict)
    paid: Mapping[tuple[str, str], Decimal] = attrs.field(factory=dict)
    earned: Mapping[tuple[str, str], Decimal] = attrs.field(factory=dict)
    pot: Mapping[str, Decimal] = attrs.field(factory=dict)

    def members(self) -> tuple[str, ...]:
        """Return the players in the room now (joined and not left)."""
        return tuple(p for p, s in self.players.items() if s is not PlayerState.LEFT)

    def pot_is_empty(self) -> bool:
        """Return True when no token is left in the room."""
        return not any(self.pot.values())

    def net_paid(self, plyr_id: str, token: str) -> Decimal:
        """Return what *plyr_id* paid in *token* minus what they earned in it."""
        key = (plyr_id, token)
        return self.paid.get(key, _ZERO) - self.earned.get(key, _ZERO)

    def to_json(self) -> dict[str, Any]:
        """Return the book as plain JSON values (amounts as decimal strings)."""
        return {
            "state": self.state.value,
            "players": {p: s.value for p, s in self.players.items()},
            "paid": [[p, t, _text(a)] for (p, t), a in self.paid.items()],
            "earned": [[p, t, _text(a)] for (p, t), a in self.earned.items()],
            "pot": {t: _text(a) for t, a in self.pot.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoomBook:
        """Read a book written by :meth:`to_json`."""
        return cls(
            state=RoomState(data["state"]),
            players={p: PlayerState(s) for p, s in data["players"].items()},
            paid={(p, t): Decimal(a) for p, t, a in data["paid"]},
            earned={(p, t): Decimal(a) for p, t, a in data["earned"]},
            pot={t: Decimal(a) for t, a in data["pot"].items()},
        )


def _text(amount: Decimal) -> str:
    return format(amount.normalize() if amount else _ZERO, "f")


class _Draft:
    # A mutable working copy of a book while one step's parts are checked; it is
    # frozen into a new RoomBook only if every part passes.
    def __init__(self, book: RoomBook, step: Step) -> None:
        self.book = book
        self.step = step
        self.players = dict(book.players)
        self.paid = dict(book.paid)
        self.earned = dict(book.earned)
        self.pot = dict(book.pot)

    def refuse(self, reason: str) -> InvalidTransition:
        state = self.book.state
        return InvalidTransition(state, self.step, allowed_steps(state), reason)

    def member(self, plyr_id: str, doing: str) -> PlayerState:
        state = self.players.get(plyr_id)
        if state is None:
            raise self.refuse(f"player {plyr_id!r} cannot {doing}: not in the room")

        if state is PlayerState.LEFT:
            raise self.refuse(f"player {plyr_id!r} cannot {doing}: already left")

        return state

    def promote(self, plyr_id: str, state: PlayerState) -> None:
        old = self.players[plyr_id]
        if state.rank > old.rank:
            self.players[plyr_id] = state

    def join(self, plyr_ids: Iterable[str]) -> None:
        for plyr_id in plyr_ids:
            if self.players.get(plyr_id) is PlayerState.LEFT:
                raise self.refuse(f"player {plyr_id!r} cannot join: already left")

            self.players.setdefault(plyr_id, PlayerState.JOINED)

    def pay(self, payments: Iterable[Payment]) -> None:
        for p in payments:
            self.member(p.plyr_id, "pay")
            self.promote(p.plyr_id, PlayerState.PAID)
            _add(self.paid, (p.plyr_id, p.token), p.amount)
            _add(self.pot, p.token, p.amount)

    def earn(self, payments: Iterable[Payment]) -> None:
        for p in payments:
            self.member(p.plyr_id, "earn")
            left = _MONEY.subtract(self.pot.get(p.token, _ZERO), p.amount)
            if left < 0:
                raise self.refuse(
                    f"pot of {p.token!r} would go negative: "
                    f"{_text(self.pot.get(p.token, _ZERO))} < {_text(p.amount)}"
                )

            self.promote(p.plyr_id, PlayerState.EARNED)
            _add(self.earned, (p.plyr_id, p.token), p.amount)
            self.pot[p.token] = left

    def leave(self, plyr_ids: Iterable[str]) -> None:
        for plyr_id in dict.fromkeys(plyr_ids):
            self.member(plyr_id, "leave")
            self.players[plyr_id] = PlayerState.LEFT

    def end(self) -> None:
        rest = {t: a for t, a in self.pot.items() if a}
        if rest:
            listed = ", ".join(f"{t}={_text(a)}" for t, a in sorted(rest.items()))
            raise self.refuse(f"the pot is not empty ({listed})")

    def freeze(self, state: RoomState) -> RoomBook:
        return RoomBook(state, self.players, self.paid, self.earned, self.pot)


def _add(totals: dict[Any, Decimal], key: object, amount: Decimal) -> None:
    totals[key] = _MONEY.add(totals.get(key, _ZERO), amount)


def advance(
    book: RoomBook,
    step: Step,
    plyr_ids: Iterable[str] = (),
    payments: Iterable[Payment] = (),
) -> RoomBook:
    """Return the book after *step*, checked against the table and the chain's rules.

    Args:
        book: the room's book before the step.
        step: the step.
        plyr_ids: who joins (JOIN) or leaves (LEAVE).
        payments: the entries of a pay or an earn. A composite step takes its
            players from its entries: create-join-pay and join-pay join the payers,
            earn-leave and earn-leave-end let the earners leave.

    Raises:
        InvalidTransition: If the table has no such move, or a part of the step
            breaks a rule: someone pays or earns without being in the room, earns
            after leaving, leaves twice or joins again after leaving, a pot would go
            negative, or the room would end with tokens in it. *book* is unchanged.
    """
    move = plan(book.state, step)
    entries = tuple(payments)
    ids = tuple(plyr_id.lower() for plyr_id in plyr_ids)
    if step in COMPOSITES:
        ids = tuple(dict.fromkeys(p.plyr_id for p in entries))

    draft = _Draft(book, step)
    needs_players = (Step.JOIN, Step.LEAVE, Step.PAY, Step.EARN)
    if not ids and not entries and any(p in needs_players for p in step.parts):
        raise draft.refuse("no players given")

    for part in step.parts:
        if part is Step.JOIN:
            draft.join(ids)
        elif part is Step.PAY:
            draft.pay(entries)
        elif part is Step.EARN:
            draft.earn(entries)
        elif part is Step.LEAVE:
            draft.leave(ids)
        elif part is Step.END:
            draft.end()

    return draft.freeze(move.target)


def fail(book: RoomBook) -> RoomBook:
    """Return the book of a room whose hook failed (an ended room stays ended)."""
    if book.state is RoomState.ENDED:
        return book

    return attrs.evolve(book, state=RoomState.FAILED)
