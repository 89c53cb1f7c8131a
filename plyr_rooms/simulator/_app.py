"""The request pipeline and the small routes outside ``/api/game``.

One low-level aiohttp handler does what the real Koa stack does, in its
order: (simulated proxy faults), body parsing, routing, ``hmacAuth``, the
route's middlewares and controller.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from plyr_rooms.simulator._amounts import format_units
from plyr_rooms.simulator._checks import Refusal, refuse
from plyr_rooms.simulator._game import GameRoutes
from plyr_rooms.simulator._http import (
    Ctx,
    JsError,
    Router,
    authenticate,
    json_answer,
    parse_body,
    raw_json_answer,
    text_answer,
)
from plyr_rooms.simulator._ipp import IppRoutes
from plyr_rooms.simulator._users import UserRoutes

if TYPE_CHECKING:
    from plyr_rooms.simulator._state import SimState

__all__ = ["App"]

logger = logging.getLogger(__name__)

_CORS_METHODS = "GET,HEAD,PUT,POST,DELETE,PATCH"


class App:
    """Turns requests into answers for one simulator."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.router = Router()
        GameRoutes(state).register(self.router)
        UserRoutes(state).register(self.router)
        IppRoutes(state).register(self.router)
        add = self.router.add
        add("GET", "/api", self.welcome, role=None)
        add("GET", "/api/now", self.now, role="user")
        add("GET", "/api/status", self.service_status, role="admin")
        add("GET", "/api/jwt/publicKey", self.public_key, role="user")
        add("GET", "/api/task/status/:taskId", self.task_status, role="user")
        add("GET", "/api/user/balance/:plyrId", self.balances, role="user")
        add("GET", "/api/user/balance/:plyrId/:tokenName", self.balance, role="user")
        allowance = "/api/game/allowance/:plyrId/:gameId/:token"
        add("GET", allowance, self.allowance, role="user")

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one request (the aiohttp low-level handler)."""
        answer = await self._answer(request)
        origin = request.headers.get("Origin")
        if origin is not None:
            answer.headers["Access-Control-Allow-Origin"] = origin
            answer.headers["Vary"] = "Origin"

        return answer

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        state = self.state
        route, params, known = self.router.match(request.method, request.path)
        state.requests[route.name if route else ("405" if known else "404")] += 1
        if state.faults.active:
            trouble = self._trouble(request)
            if trouble is not None:
                return trouble

        if request.method == "OPTIONS" and known:
            return _preflight(request)

        try:
            body = parse_body(request.content_type, await request.read())
        except web.HTTPRequestEntityTooLarge:
            return text_answer(413, "Payload Too Large")
        except ValueError:
            return text_answer(400, "Bad Request")

        if route is None:
            if known:
                return text_answer(405, "Method Not Allowed")

            return text_answer(404, "Not Found")

        ctx = Ctx(request, params, body)
        if route.role is not None:
            record = authenticate(request, body, state.keys, route.role)
            if isinstance(record, web.Response):
                return record

            ctx.api_key = record

        try:
            return await route.handler(ctx)
        except Refusal as refusal:
            return refusal.response
        except JsError as error:
            return error.answer()
        except Exception as exc:
            # A simulator bug: answer like Koa's global handler, keep serving.
            logger.exception("simulator failed on %s %s", request.method, request.path)
            return JsError(f"{type(exc).__name__}: {exc}", stack=True).answer()

    def _trouble(self, request: web.BaseRequest) -> web.StreamResponse | None:
        faults = self.state.faults
        loop = asyncio.get_running_loop()
        limited = faults.over_budget(request.headers.get("apikey", ""), loop.time())
        if limited is not None:
            return limited

        if faults.drop():
            # Close without a word; aiohttp then has nowhere to write the answer.
            if request.transport is not None:
                request.transport.abort()

            return web.Response(status=500)

        return faults.server_error()

    async def welcome(self, ctx: Ctx) -> web.Response:
        """``GET /api/`` (no HMAC)."""
        return json_answer(200, {"message": "Welcome to the API"})

    async def now(self, ctx: Ctx) -> web.Response:
        """``GET /api/now``: the server clock, for measuring skew."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        return json_answer(200, {"now": now.replace("+00:00", "Z")})

    async def service_status(self, ctx: Ctx) -> web.Response:
        """``GET /api/status`` (admin only; the simulator's key never gets here)."""
        return json_answer(200, {"status": "ok"})

    async def public_key(self, ctx: Ctx) -> web.Response:
        """``GET /api/jwt/publicKey``: base64 of the PEM the JWTs verify with."""
        return json_answer(200, {"publicKey": self.state.sessions.public_key_b64})

    async def task_status(self, ctx: Ctx) -> web.Response:
        """``GET /api/task/status/:taskId``."""
        self.state.status_polls += 1
        status, body = self.state.worker.status(ctx.params["taskId"])
        return raw_json_answer(status, body)

    def _user_wallet(self, ctx: Ctx) -> dict[str, int]:
        plyr_id = ctx.params["plyrId"]
        if plyr_id not in self.state.sessions.users:
            raise Refusal(json_answer(404, {"error": "User not found"}))

        return self.state.chain.balances.get(plyr_id, {})

    async def balances(self, ctx: Ctx) -> web.Response:
        """``GET /api/user/balance/:plyrId``: every listed token, as decimal strings."""
        wallet = self._user_wallet(ctx)
        tokens = self.state.config.tokens
        answer = {t: format_units(wallet.get(t, 0), d) for t, d in tokens.items()}
        return json_answer(200, answer)

    async def balance(self, ctx: Ctx) -> web.Response:
        """``GET /api/user/balance/:plyrId/:tokenName``."""
        wallet = self._user_wallet(ctx)
        name = ctx.params["tokenName"]
        decimals = self.state.config.tokens.get(name.lower())
        if decimals is None:
            raise refuse(401, "Invalid tokenName")

        return json_answer(
            200, {name: format_units(wallet.get(name.lower(), 0), decimals)}
        )

    async def allowance(self, ctx: Ctx) -> web.Response:
        """``GET /api/game/allowance/:plyrId/:gameId/:token``: a plain number."""
        params = ctx.params
        key = (
            params["plyrId"].lower(),
            params["gameId"].lower(),
            params["token"].lower(),
        )
        approval = self.state.chain.allowances.get(key)
        now = datetime.now(UTC).timestamp()
        amount = 0.0
        expires_in = None if approval is None else approval.expires_in
        if approval is not None and expires_in is not None:
            amount = (
                float(approval.amount)
                if approval.created_at + expires_in >= now
                else 0.0
            )

        return json_answer(200, {"allowance": amount})


def _preflight(request: web.BaseRequest) -> web.Response:
    headers = {"Access-Control-Allow-Methods": _CORS_METHODS}
    wanted = request.headers.get("Access-Control-Request-Headers")
    if wanted:
        headers["Access-Control-Allow-Headers"] = wanted

    return web.Response(status=204, headers=headers)
