"""Instant Play Pass guests: ``POST /api/instantPlayPass/register`` (6.1.4).

A guest gets a generated PLYR[ID], a session that lasts thirty years (nonce 1),
and approvals of 100 000 000 for every listed token. Its wallet starts empty.
"""

from __future__ import annotations

import hashlib
import random
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from plyr_rooms.simulator._amounts import js_string, js_truthy
from plyr_rooms.simulator._checks import show
from plyr_rooms.simulator._http import JsError, field, json_answer
from plyr_rooms.simulator._ledger import Approval
from plyr_rooms.simulator._users import AVATAR

if TYPE_CHECKING:
    from aiohttp import web

    from plyr_rooms.simulator._http import Ctx, Router
    from plyr_rooms.simulator._state import SimState

__all__ = ["IppRoutes"]

_COLOURS = ("amber", "azure", "coral", "indigo", "jade", "lilac", "ruby", "teal")
_FRUITS = ("apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum")
_THIRTY_YEARS = 30 * 365 * 86_400
# The server passes a millisecond value as seconds: the JWT never expires.
_IPP_JWT_SECONDS = 946_080_000_000
_IPP_APPROVAL = Decimal(100_000_000)


class IppRoutes:
    """The guest-registration endpoint."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._rng = random.Random(f"{state.config.seed}:ipp")

    def register(self, router: Router) -> None:
        """Add the route to *router*."""
        router.add(
            "POST", "/api/instantPlayPass/register", self.register_guest, role="user"
        )

    def _new_id(self) -> str:
        while True:
            suffix = f"{self._rng.getrandbits(24):06x}"
            plyr_id = (
                f"{self._rng.choice(_COLOURS)}-{self._rng.choice(_FRUITS)}-{suffix}"
            )
            if plyr_id not in self.state.sessions.users:
                return plyr_id

    async def register_guest(self, ctx: Ctx) -> web.Response:
        """``POST /api/instantPlayPass/register`` (``sync`` is ignored)."""
        sessions = self.state.sessions
        plyr_id = self._new_id()
        mirror = "0x" + hashlib.sha256(f"mirror:{plyr_id}".encode()).hexdigest()[-40:]
        primary = "0x" + hashlib.sha256(f"primary:{plyr_id}".encode()).hexdigest()[-40:]
        user = sessions.add_user(plyr_id, primary, mirror)
        user.is_ipp = True
        game = field(ctx.body, "gameId")
        if not js_truthy(game):
            assert ctx.api_key is not None
            game = ctx.api_key.plyr_id

        tokens = field(ctx.body, "tokens")
        if not isinstance(tokens, list):
            # The user exists already when the missing list is noticed.
            raise JsError(f"Cannot read properties of {show(tokens)} (reading 'map')")

        now = time.time()
        for token in tokens:
            key = (plyr_id, js_string(game).lower(), js_string(token).lower())
            self.state.chain.allowances[key] = Approval(
                _IPP_APPROVAL, _THIRTY_YEARS, now
            )

        jwt = sessions.login(
            plyr_id,
            js_string(game),
            expires_in=_IPP_JWT_SECONDS,
            deadline_ms=(now + _THIRTY_YEARS) * 1000,
        )
        answer = {
            "sessionJwt": jwt,
            "plyrId": plyr_id,
            "gameId": game,
            "primaryAddress": primary,
            "mirrorAddress": mirror,
            "avatar": AVATAR,
            "isIPP": True,
            "ippClaimed": False,
        }
        return json_answer(200, answer)
