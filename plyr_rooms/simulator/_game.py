"""The game-room endpoints of section 6.2, with their middleware chains.

Each handler runs its chain's checks in the real order, builds the params the
controller enqueues (``taskData.body``), and submits the task.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from plyr_rooms.simulator._amounts import js_truthy
from plyr_rooms.simulator._checks import (
    chain_room_id,
    check_all_joined,
    check_allowances,
    check_session_jwts,
    check_tokens,
    lower,
    merge_entries,
    refuse,
    room_text,
)
from plyr_rooms.simulator._http import MISSING, field, json_answer, raw_json_answer
from plyr_rooms.simulator._ledger import DEFAULT_ROOM_SECONDS
from plyr_rooms.tasks import TaskMethod

if TYPE_CHECKING:
    from aiohttp import web

    from plyr_rooms.simulator._http import Ctx, Router
    from plyr_rooms.simulator._state import SimState

__all__ = ["GameRoutes"]

_ALL_JOINED = {"message": "All players are already joined"}
_BAD_INPUT = "Input params was incorrect."


def _clean(value: Any) -> Any:
    # JSON.stringify drops undefined properties and prints undefined slots as null.
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not MISSING}

    if isinstance(value, list):
        return [None if v is MISSING else _clean(v) for v in value]

    return value


class GameRoutes:
    """Handlers for ``/api/game/*`` bound to one simulator's state."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def register(self, router: Router) -> None:
        """Add every game-room route to *router*."""
        for path, handler in (
            ("/api/game/create", self.create),
            ("/api/game/join", self.join),
            ("/api/game/pay", self.pay),
            ("/api/game/earn", self.earn),
            ("/api/game/leave", self.leave),
            ("/api/game/end", self.end),
            ("/api/game/joinPay", self.join_pay),
            ("/api/game/earnLeave", self.earn_leave),
            ("/api/game/createJoinPay", self.create_join_pay),
            ("/api/game/earnLeaveEnd", self.earn_leave_end),
            ("/api/game/close", self.close),
        ):
            router.add("POST", path, handler, role="user")

        router.add("GET", "/api/game/isJoined", self.is_joined, role="user")

    async def _submit(
        self, ctx: Ctx, method: TaskMethod, params: dict[str, Any]
    ) -> web.Response:
        worker = self.state.worker
        task = worker.submit(method.value, _clean(params))
        if not js_truthy(field(ctx.body, "sync")):
            # Task ids are plain ASCII digits and a dash: no escaping needed.
            reply = f'{{"task":{{"id":"{task.id}","status":"PENDING"}}}}'
            return raw_json_answer(200, reply.encode())

        status, body = await worker.sync_answer(task)
        return raw_json_answer(status, body)

    async def create(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/create`` (hmacAuth only)."""
        expires_in = field(ctx.body, "expiresIn")
        if not js_truthy(expires_in):
            expires_in = DEFAULT_ROOM_SECONDS

        params = {"gameId": ctx.game_id, "expiresIn": expires_in}
        return await self._submit(ctx, TaskMethod.CREATE, params)

    async def join(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/join``: only the players not yet joined are enqueued."""
        players = check_session_jwts(self.state, ctx)
        room_id = field(ctx.body, "roomId")
        chain_id = chain_room_id(room_id, stack=False)
        chain, game = self.state.chain, ctx.game_id
        unjoined = [
            p.lower() for p in players if not chain.is_joined(game, chain_id, p.lower())
        ]
        if not unjoined:
            return json_answer(200, _ALL_JOINED)

        params = {"plyrIds": unjoined, "gameId": game, "roomId": room_id}
        answer = await self._submit(ctx, TaskMethod.JOIN, params)
        if js_truthy(field(ctx.body, "sync")):
            await self._await_joined(game, chain_id, players)

        return answer

    async def _await_joined(self, game: str, room_id: int, players: list[str]) -> None:
        # Join's second sync phase: re-read isJoined until everyone is in.
        config, chain = self.state.config, self.state.chain
        for _ in range(config.sync_checks):
            if all(chain.is_joined(game, room_id, p.lower()) for p in players):
                return

            await asyncio.sleep(2 * config.sync_interval)

    async def pay(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/pay``: JWTs, tokens, allowances, joined, then merge."""
        players = check_session_jwts(self.state, ctx)
        check_tokens(self.state, ctx)
        check_allowances(self.state, ctx, players)
        check_all_joined(self.state, ctx, players)
        plyr_ids, tokens, amounts = merge_entries(
            players, field(ctx.body, "tokens"), field(ctx.body, "amounts")
        )
        params = {
            "plyrIds": plyr_ids,
            "gameId": ctx.game_id,
            "roomId": room_text(ctx),
            "tokens": tokens,
            "amounts": amounts,
        }
        return await self._submit(ctx, TaskMethod.PAY, params)

    async def earn(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/earn``: no JWTs, no allowance, no joined check."""
        check_tokens(self.state, ctx)
        plyr_ids, tokens, amounts = merge_entries(
            field(ctx.body, "plyrIds"),
            field(ctx.body, "tokens"),
            field(ctx.body, "amounts"),
        )
        params = {
            "plyrIds": plyr_ids,
            "gameId": ctx.game_id,
            "roomId": room_text(ctx),
            "tokens": tokens,
            "amounts": amounts,
        }
        return await self._submit(ctx, TaskMethod.EARN, params)

    async def leave(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/leave``: needs live JWTs of joined players."""
        players = check_session_jwts(self.state, ctx)
        check_all_joined(self.state, ctx, players)
        params = {
            "plyrIds": [p.lower() for p in players],
            "gameId": ctx.game_id,
            "roomId": room_text(ctx),
        }
        return await self._submit(ctx, TaskMethod.LEAVE, params)

    async def end(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/end`` (hmacAuth only)."""
        params = {"gameId": ctx.game_id, "roomId": room_text(ctx)}
        return await self._submit(ctx, TaskMethod.END, params)

    async def close(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/close`` (undocumented; its task always FAILS)."""
        params = {
            "gameId": field(ctx.body, "gameId"),
            "roomId": field(ctx.body, "roomId"),
        }
        return await self._submit(ctx, TaskMethod.CLOSE, params)

    async def join_pay(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/joinPay``: no joined check, no merging."""
        players = check_session_jwts(self.state, ctx)
        check_tokens(self.state, ctx)
        check_allowances(self.state, ctx, players)
        tokens, amounts = _same_length(ctx, players)
        params = {
            "gameId": ctx.game_id,
            "roomId": room_text(ctx),
            "plyrIds": [p.lower() for p in players],
            "tokens": tokens,
            "amounts": amounts,
        }
        return await self._submit(ctx, TaskMethod.JOIN_PAY, params)

    async def create_join_pay(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/createJoinPay``: a new room, joined and paid in one go."""
        players = check_session_jwts(self.state, ctx)
        check_tokens(self.state, ctx)
        check_allowances(self.state, ctx, players)
        tokens, amounts = _same_length(ctx, players)
        expires_in = field(ctx.body, "expiresIn")
        params = {
            "gameId": ctx.game_id,
            "expiresIn": expires_in if js_truthy(expires_in) else DEFAULT_ROOM_SECONDS,
            "plyrIds": [p.lower() for p in players],
            "tokens": tokens,
            "amounts": amounts,
        }
        return await self._submit(ctx, TaskMethod.CREATE_JOIN_PAY, params)

    async def earn_leave(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/earnLeave``: earn each entry, then all listed leave."""
        return await self._earn_out(ctx, TaskMethod.EARN_LEAVE)

    async def earn_leave_end(self, ctx: Ctx) -> web.Response:
        """``POST /api/game/earnLeaveEnd``: earn, leave and end in one transaction."""
        return await self._earn_out(ctx, TaskMethod.EARN_LEAVE_END)

    async def _earn_out(self, ctx: Ctx, method: TaskMethod) -> web.Response:
        check_tokens(self.state, ctx)
        players = field(ctx.body, "plyrIds")
        if not js_truthy(players) or not isinstance(players, list | str):
            raise refuse(400, _BAD_INPUT)

        tokens, amounts = _same_length(ctx, list(players))
        params = {
            "gameId": ctx.game_id,
            "roomId": room_text(ctx),
            "plyrIds": [lower(p, "plyrId", stack=False) for p in players],
            "tokens": tokens,
            "amounts": amounts,
        }
        return await self._submit(ctx, method, params)

    async def is_joined(self, ctx: Ctx) -> web.Response:
        """``GET /api/game/isJoined?roomId=&plyrId=``."""
        query = ctx.request.query
        plyr_ids, room_ids = query.getall("plyrId", []), query.getall("roomId", [])
        if not plyr_ids or not plyr_ids[0]:
            raise refuse(400, "plyrId is required")

        if not room_ids or not room_ids[0]:
            raise refuse(400, "roomId is required")

        plyr_id = lower(plyr_ids[0] if len(plyr_ids) == 1 else plyr_ids, "plyrId")
        room = lower(room_ids[0] if len(room_ids) == 1 else room_ids, "roomId")
        joined = self.state.chain.is_joined(ctx.game_id, chain_room_id(room), plyr_id)
        return json_answer(200, {"isJoined": joined})


def _same_length(ctx: Ctx, players: list[Any]) -> tuple[list[Any], list[Any]]:
    # The helpers' controllers refuse mismatched lists with a 400.
    tokens, amounts = field(ctx.body, "tokens"), field(ctx.body, "amounts")
    if not isinstance(tokens, list | str) or not isinstance(amounts, list | str):
        raise refuse(400, _BAD_INPUT)

    if not (len(players) == len(tokens) == len(amounts)):
        raise refuse(400, _BAD_INPUT)

    return [lower(t, "token", stack=False) for t in tokens], list(amounts)
