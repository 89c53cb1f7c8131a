"""The game routes' middlewares: session JWTs, tokens, allowances, joined players.

Each check either returns what the next step needs or raises :class:`Refusal`
with the exact answer the real middleware sends (API reference, 5.2 and 6.2).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from plyr_rooms.simulator._amounts import (
    ViemError,
    format_units,
    js_bigint,
    js_number,
    js_string,
    js_truthy,
    parse_units,
)
from plyr_rooms.simulator._eth import is_address
from plyr_rooms.simulator._http import MISSING, JsError, field, json_answer

if TYPE_CHECKING:
    from aiohttp import web

    from plyr_rooms.simulator._http import Ctx
    from plyr_rooms.simulator._state import SimState

__all__ = [
    "Refusal",
    "chain_room_id",
    "check_all_joined",
    "check_allowances",
    "check_session_jwts",
    "check_tokens",
    "lower",
    "merge_entries",
    "room_text",
    "show",
]

# Strings a plain JavaScript object "has" as keys, so the token check lets them by.
_PROTOTYPE_KEYS = frozenset({"constructor", "__proto__"})


class Refusal(Exception):
    """A middleware's early answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def refuse(status: int, error: object) -> Refusal:
    """Return a :class:`Refusal` answering ``{"error": error}``."""
    return Refusal(json_answer(status, {"error": error}))


def show(value: object) -> str:
    """Return a value as a JavaScript template literal prints it."""
    return "undefined" if value is MISSING else js_string(value)


def lower(value: object, name: str, *, stack: bool = True) -> str:
    """Return ``value.toLowerCase()``, failing as JavaScript does on non-strings."""
    if isinstance(value, str):
        return value.lower()

    if value is MISSING or value is None:
        kind = "undefined" if value is MISSING else "null"
        raise JsError(
            f"Cannot read properties of {kind} (reading 'toLowerCase')", stack=stack
        )

    raise JsError(f"{name}.toLowerCase is not a function", stack=stack)


def check_session_jwts(state: SimState, ctx: Ctx) -> list[str]:
    """Run ``checkSessionJwts`` and return the players named by the JWTs."""
    tokens = field(ctx.body, "sessionJwts")
    if not js_truthy(tokens) or tokens == []:
        raise refuse(400, "sessionJwts is empty")

    if not isinstance(tokens, list):
        raise JsError("sessionJwts.map is not a function", stack=True)

    expected = field(ctx.body, "gameId")
    if not js_truthy(expected):
        assert ctx.api_key is not None
        expected = ctx.api_key.plyr_id

    result = state.sessions.check(tokens, expected)
    if result.invalid:
        answer = {"error": "Invalid sessionJwts", "invalidPlyrIds": result.invalid}
        raise Refusal(json_answer(401, answer))

    ctx.sessions = result
    return result.plyr_ids


def _known_token(state: SimState, token: str) -> bool:
    low = token.lower()
    return low in state.config.tokens or low in _PROTOTYPE_KEYS or is_address(token)


def check_tokens(state: SimState, ctx: Ctx) -> None:
    """Run ``checkTokens``: every token is a listed symbol or an address."""
    tokens = field(ctx.body, "tokens")
    if not js_truthy(tokens):
        raise refuse(401, "Token is required")

    if not isinstance(tokens, list | str):
        raise JsError("tokens is not iterable", stack=True)

    for token in tokens:
        if not isinstance(token, str):
            raise JsError("token.toLowerCase is not a function", stack=True)

        if not _known_token(state, token):
            raise refuse(401, f"Invalid token: {token}")


def _length(value: object) -> int | None:
    return len(value) if isinstance(value, list | str) else None


def _at(values: object, index: int) -> Any:
    if isinstance(values, list | str) and index < len(values):
        return values[index]

    return MISSING


def check_allowances(state: SimState, ctx: Ctx, players: list[str]) -> None:
    """Run ``checkAllowances``: per entry, the player approved enough of the token."""
    tokens, amounts = field(ctx.body, "tokens"), field(ctx.body, "amounts")
    if not js_truthy(tokens) or not js_truthy(amounts):
        raise refuse(401, "Tokens and amounts and sessionJwts are required")

    if _length(tokens) != _length(amounts):
        raise refuse(401, "Tokens and amounts must be the same length")

    errors = []
    for index in range(_length(tokens) or 0):
        error = _allowance_error(
            state, ctx, tokens[index], amounts[index], players, index
        )
        if error is not None:
            errors.append(error)

    if errors:
        raise refuse(401, errors)


def _allowance_error(
    state: SimState, ctx: Ctx, token: Any, amount: Any, players: list[str], index: int
) -> str | None:
    if not isinstance(token, str) or not _known_token(state, token):
        return f"Invalid token: {show(token)}"

    number = js_number(amount)
    if amount is MISSING or number < 0:
        return f"Invalid amount: {show(amount)}"

    if not number > 0:
        return None

    player = players[index] if index < len(players) else "undefined"
    key = (player.lower(), ctx.game_id, token.lower())
    approval = state.chain.allowances.get(key)
    if approval is None:
        return f"User not approved: {player}"

    if approval.amount < _decimal(number):
        return f"Insufficient allowance: {player}"

    return None


def _decimal(number: float) -> Decimal:
    try:
        return Decimal(js_string(number))
    except (InvalidOperation, ValueError):
        return Decimal("Infinity")


def chain_room_id(value: object, *, stack: bool = True) -> int:
    """Return ``BigInt(roomId)`` as the chain reads it, or fail with its message."""
    if value is MISSING:
        raise JsError("Cannot convert undefined to a BigInt", stack=stack)

    try:
        return js_bigint(value)
    except ValueError as exc:
        raise JsError(str(exc), stack=stack) from None


def check_all_joined(state: SimState, ctx: Ctx, players: list[str]) -> None:
    """Run ``checkAllJoined``: every JWT player is in the room on chain."""
    room_id = chain_room_id(field(ctx.body, "roomId"))
    errors = [
        f"Player is not joined: {player}"
        for player in players
        if not state.chain.is_joined(ctx.game_id, room_id, player.lower())
    ]
    if errors:
        raise refuse(401, errors)


def room_text(ctx: Ctx) -> str:
    """Return ``roomId.toLowerCase()`` (the controllers need a string)."""
    return lower(field(ctx.body, "roomId"), "roomId", stack=False)


def merge_entries(
    players: object, tokens: object, amounts: object
) -> tuple[list[str], list[str], list[Any]]:
    """Merge entries with the same player and token, as pay and earn do.

    A merged amount becomes the decimal string of the 18-decimal sum; the
    order of first appearance is kept.
    """
    if not isinstance(players, list):
        kind = "undefined" if players is MISSING else type(players).__name__
        message = (
            f"Cannot read properties of {kind} (reading 'forEach')"
            if players is MISSING or players is None
            else "plyrIds.forEach is not a function"
        )
        raise JsError(message, stack=True)

    slots: dict[tuple[str, str], int] = {}
    out_players: list[str] = []
    out_tokens: list[str] = []
    out_amounts: list[Any] = []
    for index, player in enumerate(players):
        key = (lower(player, "plyrId"), lower(_at(tokens, index), "token"))
        amount = _at(amounts, index)
        slot = slots.get(key)
        if slot is None:
            slots[key] = len(out_players)
            out_players.append(key[0])
            out_tokens.append(key[1])
            out_amounts.append(None if amount is MISSING else amount)
        else:
            out_amounts[slot] = _add(out_amounts[slot], amount)

    return out_players, out_tokens, out_amounts


def _add(left: object, right: object) -> str:
    try:
        total = parse_units(show(left), 18) + parse_units(show(right), 18)
    except ViemError as exc:
        raise JsError(exc.short_message, stack=True) from None

    return format_units(total, 18)
