"""The simulated chain (GameRuleV1 / GameRoom) and the API-side allowance ledger.

Balances are integers in base units. Every task runs inside one :class:`_Tx`:
it works on copies of what it touches and writes them back only if the whole
operation succeeds, so composite tasks are atomic like the single on-chain
transaction they stand for.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import attrs

from plyr_rooms.simulator._amounts import (
    ViemError,
    js_bigint,
    js_number,
    js_string,
    js_truthy,
    parse_units,
    uint256_error,
)
from plyr_rooms.simulator._eth import fake_address

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Approval", "Chain", "PlainError", "Revert", "Room"]

#: Create's default room lifetime when ``expiresIn`` is falsy: 30 days.
DEFAULT_ROOM_SECONDS = 2_592_000


class Revert(Exception):
    """The transaction was mined and reverted (``Transaction Receipt Failed``)."""


class PlainError(Exception):
    """A JavaScript error without a ``shortMessage``: the task reports null."""


@attrs.define(eq=False)
class Room:
    address: str
    deadline: int  # unix seconds; only close() would look at it
    joined: set[str] = attrs.Factory(set)
    # every token ever paid or earned in the room, even at zero
    funds: dict[str, int] = attrs.Factory(dict)
    ended: bool = False

    def copy(self) -> Room:
        return Room(
            self.address, self.deadline, set(self.joined), dict(self.funds), self.ended
        )


@attrs.define(eq=False)
class Approval:
    amount: Decimal
    expires_in: float | None  # seconds after created_at; None counts as expired
    created_at: float  # unix seconds


class Chain:
    """Balances, rooms and the fee account, plus the API's allowance records."""

    def __init__(self, tokens: Mapping[str, int], fee_percent: int) -> None:
        self.tokens = dict(tokens)
        self.fee_percent = fee_percent
        self.balances: dict[str, dict[str, int]] = {}
        self.rooms: dict[tuple[str, str], Room] = {}
        self.room_count: dict[str, int] = {}
        self.fee_account: dict[str, int] = {}
        self.allowances: dict[tuple[str, str, str], Approval] = {}

    def is_joined(self, game_id: str, room_id: int, plyr_id: str) -> bool:
        """Return the contract's ``isJoined`` (the game itself is always joined)."""
        if plyr_id == game_id:
            return True

        room = self.rooms.get((game_id, str(room_id)))
        return room is not None and plyr_id in room.joined

    def run(self, method: str, params: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Execute one task atomically and return its (possibly empty) result.

        Raises:
            Revert: a precondition of the contract failed; nothing changed.
            ViemError: an amount or id could not be encoded; nothing changed.
            PlainError: any other worker error; nothing changed.
        """
        tx = _Tx(self)
        result = _SERVICES[method](tx, params, now)
        tx.commit()
        return result

    def spend_allowances(self, method: str, params: Mapping[str, Any]) -> None:
        """Charge a pay-type task's entries to the allowance records.

        The worker does this once, when the task is recorded as SUCCESS: an
        execution later reported FAILED (or an earlier attempt executed again
        by a retry) spends nothing. Each entry's approval is reduced, or deleted
        if what remains is smaller than the amount.
        """
        if method not in _PAYING:
            return

        game_id = params["gameId"]
        for plyr_id, token, amount in zip(
            params["plyrIds"], params["tokens"], params["amounts"], strict=False
        ):
            key = (js_string(plyr_id).lower(), game_id, js_string(token).lower())
            approval = self.allowances.get(key)
            spent = _js_decimal(amount)
            if approval is None or spent is None:
                continue

            if approval.amount < spent:
                del self.allowances[key]
            else:
                approval.amount -= spent


class _Tx:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.balances: dict[str, dict[str, int]] = {}
        self.rooms: dict[tuple[str, str], Room] = {}
        self.fees: dict[str, int] | None = None
        self.room_count: dict[str, int] = {}

    def room(self, game_id: str, room_id: int) -> Room:
        key = (game_id, str(room_id))
        room = self.rooms.get(key)
        if room is None:
            original = self.chain.rooms.get(key)
            if original is None:
                raise Revert(f"room {room_id} of {game_id} does not exist")

            room = self.rooms[key] = original.copy()

        return room

    def wallet(self, plyr_id: str) -> dict[str, int]:
        wallet = self.balances.get(plyr_id)
        if wallet is None:
            wallet = self.balances[plyr_id] = dict(self.chain.balances.get(plyr_id, {}))

        return wallet

    def fee_account(self) -> dict[str, int]:
        if self.fees is None:
            self.fees = dict(self.chain.fee_account)

        return self.fees

    def create(self, game_id: str, lifetime: int, now: float) -> tuple[int, Room]:
        count = self.room_count.get(game_id, self.chain.room_count.get(game_id, 0)) + 1
        self.room_count[game_id] = count
        room = Room(fake_address("room", game_id, str(count)), int(now) + lifetime)
        self.rooms[(game_id, str(count))] = room
        return count, room

    def pay(
        self, game_id: str, room_id: int, plyr_id: str, token: str, units: int
    ) -> None:
        room = self.room(game_id, room_id)
        wallet = self.wallet(plyr_id)
        if plyr_id not in room.joined and plyr_id != game_id:
            raise Revert(f"{plyr_id} is not joined")

        if wallet.get(token, 0) < units:
            raise Revert(f"{plyr_id} cannot pay {units} {token}")

        wallet[token] = wallet.get(token, 0) - units
        room.funds[token] = room.funds.get(token, 0) + units

    def earn(
        self, game_id: str, room_id: int, plyr_id: str, token: str, units: int
    ) -> None:
        room = self.room(game_id, room_id)
        if plyr_id not in room.joined and plyr_id != game_id:
            raise Revert(f"{plyr_id} is not joined")

        if room.funds.get(token, 0) < units:
            raise Revert(f"room {room_id} cannot pay out {units} {token}")

        fee = units * self.chain.fee_percent // 100
        room.funds[token] = room.funds.get(token, 0) - units
        wallet = self.wallet(plyr_id)
        wallet[token] = wallet.get(token, 0) + units - fee
        fees = self.fee_account()
        fees[token] = fees.get(token, 0) + fee

    def end(self, game_id: str, room_id: int) -> None:
        room = self.room(game_id, room_id)
        if any(room.funds.values()):
            raise Revert(f"room {room_id} still holds funds")

        room.ended = True

    def commit(self) -> None:
        chain = self.chain
        chain.balances.update(self.balances)
        chain.rooms.update(self.rooms)
        chain.room_count.update(self.room_count)
        if self.fees is not None:
            chain.fee_account = self.fees


def _js_decimal(amount: object) -> Decimal | None:
    number = js_number(amount)
    try:
        return Decimal(js_string(number))
    except (InvalidOperation, ValueError):
        return None


def _room_id(params: Mapping[str, Any]) -> int:
    try:
        room_id = js_bigint(params.get("roomId"))
    except ValueError as exc:
        raise PlainError(str(exc)) from None

    if room_id < 0:
        raise uint256_error(room_id)

    return room_id


def _entries(
    tx: _Tx, params: Mapping[str, Any], *, earn: bool
) -> list[tuple[str, str, int]]:
    # Converts every (player, token, amount) before anything moves, as the
    # worker encodes the whole call before sending it.
    entries = []
    plyr_ids: Sequence[Any] = params.get("plyrIds") or []
    tokens: Sequence[Any] = params.get("tokens") or []
    amounts: Sequence[Any] = params.get("amounts") or []
    for index, plyr_id in enumerate(plyr_ids):
        token = js_string(tokens[index]).lower() if index < len(tokens) else ""
        decimals = tx.chain.tokens.get(token)
        if decimals is None:
            raise PlainError("zeroAddress is not defined")

        amount = amounts[index] if index < len(amounts) else None
        entries.append((js_string(plyr_id), token, _units(amount, decimals, earn=earn)))

    return entries


def _units(amount: object, decimals: int, *, earn: bool) -> int:
    if earn and not js_truthy(amount):
        return 0

    text = js_string(amount)
    if text == "":
        # The real worker refuses an empty pay amount with a viem error too.
        raise ViemError("Number `` is not a valid decimal number.")

    units = parse_units(text, decimals)
    if units < 0:
        raise uint256_error(units)

    return units


def _lifetime(value: object) -> int:
    if not js_truthy(value):
        return DEFAULT_ROOM_SECONDS

    try:
        lifetime = js_bigint(value)
    except ValueError as exc:
        raise PlainError(str(exc)) from None

    if lifetime < 0:
        raise uint256_error(lifetime)

    return lifetime


def _create(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    game_id = params["gameId"]
    room_id, room = tx.create(game_id, _lifetime(params.get("expiresIn")), now)
    return {"gameId": game_id, "roomId": str(room_id), "roomAddress": room.address}


def _join(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    room = tx.room(params["gameId"], _room_id(params))
    room.joined.update(js_string(plyr_id) for plyr_id in params["plyrIds"])
    return {}


def _leave(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    room = tx.room(params["gameId"], _room_id(params))
    room.joined.difference_update(js_string(plyr_id) for plyr_id in params["plyrIds"])
    return {}


def _pay(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    game_id, room_id = params["gameId"], _room_id(params)
    for plyr_id, token, units in _entries(tx, params, earn=False):
        tx.pay(game_id, room_id, plyr_id, token, units)

    return {}


def _earn(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    game_id, room_id = params["gameId"], _room_id(params)
    for plyr_id, token, units in _entries(tx, params, earn=True):
        tx.earn(game_id, room_id, plyr_id, token, units)

    return {}


def _end(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    tx.end(params["gameId"], _room_id(params))
    return {}


def _close(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    raise ViemError("ABI encoding params/values length mismatch.")


def _create_join_pay(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    entries = _entries(tx, params, earn=False)
    result = _create(tx, params, now)
    room_id = int(result["roomId"])
    tx.room(params["gameId"], room_id).joined.update(p for p, _, _ in entries)
    for plyr_id, token, units in entries:
        tx.pay(params["gameId"], room_id, plyr_id, token, units)

    return result


def _join_pay(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    game_id, room_id = params["gameId"], _room_id(params)
    entries = _entries(tx, params, earn=False)
    tx.room(game_id, room_id).joined.update(p for p, _, _ in entries)
    for plyr_id, token, units in entries:
        tx.pay(game_id, room_id, plyr_id, token, units)

    return {}


def _earn_leave(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    _earn(tx, params, now)
    return _leave(tx, params, now)


def _earn_leave_end(tx: _Tx, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    _earn_leave(tx, params, now)
    return _end(tx, params, now)


_SERVICES = {
    "createGameRoom": _create,
    "joinGameRoom": _join,
    "leaveGameRoom": _leave,
    "batchPayGameRoom": _pay,
    "batchEarnGameRoom": _earn,
    "endGameRoom": _end,
    "closeGameRoom": _close,
    "createJoinPayGameRoom": _create_join_pay,
    "joinPayGameRoom": _join_pay,
    "earnLeaveGameRoom": _earn_leave,
    "earnLeaveEndGameRoom": _earn_leave_end,
}
_PAYING = frozenset({"batchPayGameRoom", "joinPayGameRoom", "createJoinPayGameRoom"})
