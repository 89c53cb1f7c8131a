"""Game server: players queue over HTTP, are matched into rooms, and watch them.

Run it as ``python examples/game_server.py [--players N]``. It starts the
embedded simulator, a RoomManager and an aiohttp server with three endpoints:

- ``POST /queue`` with ``{"plyr_id", "session_jwt"}``: wait for a match; two
  queued players make a dice duel that the manager runs;
- ``GET /players/{plyr_id}/match``: the player's room key (waits until matched);
- ``GET /rooms/{key}/transitions``: the room's transitions so far and as they
  happen, one JSON object per line, until the room ends.

Then it plays the players' part: each one queues, finds its room and watches it
to the end, and the server prints a summary. Pass ``--serve`` to keep serving
(on ``--port``) instead, until interrupted.
"""

from __future__ import annotations

import argparse
import json
import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
from aiohttp import web

from plyr_rooms.lifecycle import Player, RoomState
from plyr_rooms.manager import RoomManager
from plyr_rooms.room import GameRoom
from plyr_rooms.simulator import Latency, Simulator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.abc import TaskGroup

    from plyr_rooms.room import Transition
    from plyr_rooms.simulator import SimPlayer


class Duel(GameRoom):
    """Each player rolls a die; the highest roll takes the pot."""

    room_name = "examples.ServerDuel"
    stake = Decimal(2)

    async def play(self) -> Mapping[str, Decimal]:
        dice = random.Random(self.key)
        rolls = {p: (dice.randint(1, 6), dice.random()) for p in self.book.members()}
        return {max(rolls, key=rolls.__getitem__): self.book.pot[self.token]}


class GameServer:
    """Matches queued players into duels and keeps every room's history."""

    def __init__(self, manager: RoomManager, tg: TaskGroup) -> None:
        self.manager = manager
        self.tg = tg
        self.waiting: list[Player] = []
        self.matches: dict[str, str] = {}  # plyr id -> room key
        self.history: dict[str, list[dict[str, Any]]] = {}  # room key -> lines
        self.ended: set[str] = set()
        self.failures: list[str] = []
        self._changed = anyio.Event()

    def app(self) -> web.Application:
        """Return the aiohttp application."""
        app = web.Application()
        app.router.add_post("/queue", self.queue)
        app.router.add_get("/players/{plyr_id}/match", self.match)
        app.router.add_get("/rooms/{key}/transitions", self.transitions)
        return app

    async def follow(self) -> None:
        """Record every transition of every room (one manager-level observer)."""
        async for transition in self.manager.transitions():
            self.history.setdefault(transition.room_key, []).append(_line(transition))
            if transition.new is RoomState.ENDED:
                self.ended.add(transition.room_key)

            self._notify()

    async def queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.waiting.append(Player(body["plyr_id"], body["session_jwt"]))
        if len(self.waiting) >= 2:
            pair, self.waiting = self.waiting[:2], self.waiting[2:]
            room = self.manager.open(Duel, pair)
            for player in pair:
                self.matches[player.plyr_id] = room.key

            self.tg.start_soon(self._run, room)
            self._notify()

        return web.json_response({"queued": body["plyr_id"]})

    async def match(self, request: web.Request) -> web.Response:
        plyr_id = request.match_info["plyr_id"]
        with anyio.fail_after(30):
            while plyr_id not in self.matches:
                await self._wait()

        return web.json_response({"room": self.matches[plyr_id]})

    async def transitions(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        response = web.StreamResponse()
        response.content_type = "application/x-ndjson"
        await response.prepare(request)
        sent = 0
        while True:
            lines = self.history.get(key, [])
            for line in lines[sent:]:
                await response.write(json.dumps(line).encode() + b"\n")

            sent = len(lines)
            if key in self.ended or key in self.failures:
                break

            await self._wait()

        await response.write_eof()
        return response

    async def _run(self, room: GameRoom) -> None:
        try:
            await room.run()
        except Exception:
            self.failures.append(room.key)
            self._notify()
            raise

    async def _wait(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


def _line(transition: Transition) -> dict[str, Any]:
    return {
        "room_id": transition.room_id,
        "step": transition.step.value,
        "old": transition.old.value,
        "new": transition.new.value,
        "task": transition.result.task_id if transition.result else None,
    }


async def play_client(base: str, player: SimPlayer) -> list[str]:
    """Queue, find the room, watch it to the end; return the states seen."""
    async with aiohttp.ClientSession() as http:
        body = {"plyr_id": player.plyr_id, "session_jwt": player.session_jwt}
        async with http.post(f"{base}/queue", json=body) as answer:
            answer.raise_for_status()

        async with http.get(f"{base}/players/{player.plyr_id}/match") as answer:
            key = (await answer.json())["room"]

        states = []
        async with http.get(f"{base}/rooms/{key}/transitions") as answer:
            async for raw in answer.content:
                states.append(json.loads(raw)["new"])

        return states


async def main(players: int = 8, serve: bool = False, port: int = 0) -> int:
    """Run the server and *players* simulated players; return the exit status."""
    async with (
        Simulator(latency=Latency.fixed(0.02)) as sim,
        RoomManager(
            endpoint=sim.url, api_key=sim.api_key, api_secret=sim.api_secret
        ) as manager,
        anyio.create_task_group() as tg,
    ):
        server = GameServer(manager, tg)
        tg.start_soon(server.follow)
        runner = web.AppRunner(server.app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        print(f"game server on {base}")
        if serve:
            await anyio.sleep_forever()

        seen: dict[str, list[str]] = {}

        async def client(player: SimPlayer) -> None:
            seen[player.plyr_id] = await play_client(base, player)

        async with anyio.create_task_group() as clients:
            for player in await sim.add_players(players, balance=20):
                clients.start_soon(client, player)

        await runner.cleanup()
        tg.cancel_scope.cancel()

    watched = sum(states[-1:] == ["ENDED"] for states in seen.values())
    print(f"{watched}/{players} players watched their room to the end")
    print(f"{len(server.ended)} rooms ended, {len(server.failures)} failed")
    return 0 if watched == players and not server.failures else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=8, help="an even number")
    parser.add_argument("--serve", action="store_true", help="keep serving")
    parser.add_argument("--port", type=int, default=0, help="port for --serve")
    args = parser.parse_args()
    code = anyio.run(main, args.players, args.serve, args.port, backend="asyncio")
    raise SystemExit(code)
