"""User endpoints: two-factor login, logout, session checks and token approval.

Simulated users have a TOTP secret (RFC 6238: 30 s steps, six digits, one
step of tolerance either side); :meth:`Simulator.otp` gives the current code.
``otpAuth`` remembers every (plyrId, code) pair it was shown for five minutes,
and locks a user for 60 s after five wrong codes in a row (section 6.1.1).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import struct
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from plyr_rooms.simulator._amounts import js_number, js_string, js_truthy
from plyr_rooms.simulator._checks import Refusal, lower, refuse, show
from plyr_rooms.simulator._eth import is_address
from plyr_rooms.simulator._http import MISSING, JsError, field, json_answer
from plyr_rooms.simulator._ledger import Approval

if TYPE_CHECKING:
    from aiohttp import web

    from plyr_rooms.simulator._http import Ctx, Router
    from plyr_rooms.simulator._sessions import User
    from plyr_rooms.simulator._state import SimState

__all__ = ["UserRoutes", "totp"]

AVATAR = "https://ipfs.plyr.network/ipfs/QmNRjvbBfJ7GpRzjs7uxRUytAAuuXjhBqKhDETbET2h6wR"
_STEP = 30
_USED_FOR = 300.0
_LOCK_AFTER = 5
_LOCK_FOR = 60.0
_APPROVAL_DEFAULT = 365 * 86_400
_BAD_EXPIRY = (
    '"expiresIn" should be a number of seconds or string representing a timespan'
)
_MS_UNITS = {
    "ms": 1, "msec": 1, "msecs": 1, "millisecond": 1, "milliseconds": 1,
    "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000,
    "m": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hr": 3_600_000, "hrs": 3_600_000, "hour": 3_600_000,
    "hours": 3_600_000, "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
    "w": 604_800_000, "week": 604_800_000, "weeks": 604_800_000,
    "y": 31_557_600_000, "yr": 31_557_600_000, "yrs": 31_557_600_000,
    "year": 31_557_600_000, "years": 31_557_600_000,
}  # fmt: skip
_MS_TEXT = re.compile(r"(-?(?:\d+)?\.?\d+) *([a-z]*)", re.IGNORECASE)


def totp(secret: bytes, at: float, offset: int = 0) -> str:
    """Return the six-digit TOTP code of *secret* at unix time *at*."""
    counter = int(at // _STEP) + offset
    digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    start = digest[-1] & 0x0F
    value = int.from_bytes(digest[start : start + 4], "big") & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def _ms(text: str) -> float | None:
    # The `ms` package jsonwebtoken uses for string lifetimes.
    match = _MS_TEXT.fullmatch(text.strip()) if len(text) <= 100 else None
    if match is None:
        return None

    factor = _MS_UNITS.get(match.group(2).lower() or "ms")
    return None if factor is None else float(match.group(1)) * factor


class UserRoutes:
    """``/api/user/*`` session endpoints and ``/api/game/approve``."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        # (plyrId as sent, code as sent) -> when it was first shown
        self._used: dict[tuple[str, str], float] = {}

    def register(self, router: Router) -> None:
        """Add the routes to *router*."""
        router.add("POST", "/api/user/login", self.login, role="user")
        router.add("POST", "/api/user/logout", self.logout, role="user")
        router.add("POST", "/api/user/session/verify", self.verify, role="user")
        router.add("POST", "/api/game/approve", self.approve, role="user")

    def _otp_auth(self, ctx: Ctx) -> User:
        now = time.time()
        plyr_id, code = field(ctx.body, "plyrId"), field(ctx.body, "otp")
        key = (show(plyr_id), show(code))
        if len(self._used) > 10_000:
            self._used = {k: t for k, t in self._used.items() if now - t < _USED_FOR}

        seen = self._used.get(key)
        if seen is not None and now - seen < _USED_FOR:
            raise refuse(401, "2FA token already used")

        self._used[key] = now
        user = self.state.sessions.users.get(lower(plyr_id, "plyrId"))
        if user is None:
            raise refuse(404, "User not found")

        if user.is_ipp:
            raise refuse(403, "User is instant play pass, can not use 2fa to login")

        if now < user.locked_until:
            raise refuse(403, "User is temporary locked")

        if not any(
            show(code) == totp(user.otp_secret, now, step) for step in (-1, 0, 1)
        ):
            user.failures += 1
            if user.failures >= _LOCK_AFTER:
                user.failures, user.locked_until = 0, now + _LOCK_FOR

            raise refuse(401, "Invalid 2fa token")

        user.failures = 0
        return user

    async def login(self, ctx: Ctx) -> web.Response:
        """``POST /api/user/login``: a new session JWT (the previous one dies)."""
        user = self._otp_auth(ctx)
        game = field(ctx.body, "gameId")
        if not js_truthy(game):
            assert ctx.api_key is not None
            game = ctx.api_key.plyr_id

        lifetime, deadline = _lifetime(field(ctx.body, "expiresIn"))
        jwt = self.state.sessions.login(
            user.plyr_id, str(game), expires_in=lifetime, deadline_ms=deadline
        )
        answer = {
            "sessionJwt": jwt,
            "plyrId": user.plyr_id,
            "gameId": game,
            "primaryAddress": user.primary_address,
            "mirrorAddress": user.mirror_address,
            "avatar": AVATAR,
            "ippClaimed": False,
            "isIPP": False,
        }
        return json_answer(200, answer)

    def _session(self, ctx: Ctx) -> tuple[dict[str, Any], User]:
        payload = self.state.sessions.payload(field(ctx.body, "sessionJwt"))
        if payload is None:
            raise refuse(401, "Invalid sessionJwt")

        user = self.state.sessions.users.get(str(payload.get("plyrId")))
        if user is None:
            raise refuse(401, "User not found")

        return payload, user

    async def logout(self, ctx: Ctx) -> web.Response:
        """``POST /api/user/logout``: every JWT of the user for this game dies."""
        payload, user = self._session(ctx)
        if user.is_ipp:
            raise refuse(401, "Instant Play Pass user cannot logout")

        assert ctx.api_key is not None
        game = ctx.api_key.plyr_id
        if not payload.get("nonce", 0) >= user.nonce.get(game, 0):
            raise Refusal(json_answer(401, {"message": "JWT nonce is expired"}))

        user.nonce[game] = user.nonce.get(game, 0) + 1
        user.deadline[game] = 0
        return json_answer(200, {"message": "Logout success"})

    async def verify(self, ctx: Ctx) -> web.Response:
        """``POST /api/user/session/verify``: signature, game, nonce (no deadline)."""
        payload, user = self._session(ctx)
        assert ctx.api_key is not None
        if payload.get("gameId") != ctx.api_key.plyr_id:
            raise refuse(401, "JWT and API key mismatch")

        if not payload.get("nonce", 0) >= user.nonce.get(ctx.api_key.plyr_id, 0):
            raise refuse(401, "JWT nonce is expired")

        extra = {"avatar": AVATAR, "ippClaimed": False, "isIPP": user.is_ipp}
        return json_answer(200, {"success": True, "payload": {**payload, **extra}})

    async def approve(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/approve``: replace the user's allowance per token."""
        user = self._otp_auth(ctx)
        entries = self._approve_entries(ctx)
        game = field(ctx.body, "gameId")
        if not js_truthy(game):
            raise refuse(401, "Game ID is required")

        game = lower(game, "gameId")
        if game not in {key.plyr_id.lower() for key in self.state.keys.values()}:
            raise refuse(401, "Invalid game ID")

        expires_in = field(ctx.body, "expiresIn")
        now = time.time()
        for token, amount in entries:
            number = js_number(amount)
            if math.isnan(number) or number <= 0:
                raise refuse(401, "Approve amount was incorrect.")

            self._upsert((user.plyr_id, game, token.lower()), number, expires_in, now)

        return json_answer(200, {"message": "Approved", "success": True})

    def _approve_entries(self, ctx: Ctx) -> list[tuple[str, Any]]:
        # checkToken: the list form and the single form, both validated.
        tokens, token = field(ctx.body, "tokens"), field(ctx.body, "token")
        if not js_truthy(tokens) and not js_truthy(token):
            raise refuse(401, "Token is required")

        amounts = field(ctx.body, "amounts")
        entries: list[tuple[Any, Any]] = []
        if isinstance(tokens, list):
            for index, item in enumerate(tokens):
                amount = (
                    amounts[index]
                    if isinstance(amounts, list) and index < len(amounts)
                    else MISSING
                )
                entries.append((item, amount))

        if js_truthy(token):
            entries.append((token, field(ctx.body, "amount")))

        for item, _ in entries:
            if not isinstance(item, str):
                raise JsError("token.toLowerCase is not a function", stack=True)

            if item.lower() not in self.state.config.tokens and not is_address(item):
                raise refuse(401, f"Invalid token: {item}")

        return entries

    def _upsert(
        self, key: tuple[str, str, str], number: float, expires_in: Any, now: float
    ) -> None:
        amount = Decimal(js_string(number))
        allowances = self.state.chain.allowances
        previous = allowances.get(key)
        if expires_in is MISSING:
            lifetime = _APPROVAL_DEFAULT if previous is None else previous.expires_in
        else:
            lifetime = None if expires_in is None else js_number(expires_in)

        allowances[key] = Approval(amount, lifetime, now)


def _lifetime(value: Any) -> tuple[int, float | None]:
    # jsonwebtoken: a number is seconds, a string goes through ms(); the
    # server's own deadline multiplies the raw value by 1000 (NaN for "1h").
    if not js_truthy(value):
        return 86_400, None

    if isinstance(value, bool) or not isinstance(value, float | int | str):
        raise JsError(_BAD_EXPIRY)

    if isinstance(value, str):
        millis = _ms(value)
        if millis is None:
            raise JsError(_BAD_EXPIRY + ' eg: "1d", "20h", 60')

        deadline = time.time() * 1000 + js_number(value) * 1000
        return math.floor(millis / 1000), deadline

    if value != int(value):
        raise JsError(_BAD_EXPIRY)

    return int(value), None
