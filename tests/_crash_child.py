"""A game server that dies: runs rooms on a journal and SIGKILLs itself on cue.

Run by tests/test_resume.py as ``python tests/_crash_child.py CONFIG.json``. The
config names the simulator (URL and credentials), the players (plyr id and
session JWT), the journal file, how many rooms to run (or ``resume``: take back
the journal's rooms instead, as a restarted server would) and where to die: at the
Nth call of one journal method (before or after its write is durable), or in
the Nth hook. Dying is ``os.kill(os.getpid(), SIGKILL)``: no cleanup, no flush,
exactly what a crashed or OOM-killed server leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from plyr_rooms._resume import resume
from plyr_rooms._schedule import PollSchedule
from plyr_rooms.client import PlyrClient
from plyr_rooms.errors import PlyrError
from plyr_rooms.journal import SQLiteJournal
from plyr_rooms.lifecycle import Player
from plyr_rooms.manager import RoomManager
from plyr_rooms.room import GameRoom

if TYPE_CHECKING:
    from collections.abc import Awaitable, Generator, Mapping

    from plyr_rooms.journal import Journal, JournaledRoom, RoomRecord
    from plyr_rooms.room import Transition

#: Polls as fast as the simulator's tiny latencies call for.
SCHEDULE = PollSchedule(
    first_delay=0.005,
    min_first_delay=0.002,
    interval=0.01,
    max_interval=0.05,
    error_interval=0.01,
    rate_limit_pause=0.02,
)


class Killer:
    """Counts calls of one kind and kills this process at the Nth one."""

    def __init__(self, kind: str | None, when: str, n: int) -> None:
        self.kind = kind
        self.when = when
        self.n = n
        self.seen = 0

    def call(self, kind: str) -> bool:
        """Count a call of *kind*; die now if it is the Nth and *when* is before."""
        if kind != self.kind:
            return False

        self.seen += 1
        if self.seen != self.n:
            return False

        if self.when == "before":
            die()

        return True


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


KILLER = Killer(None, "after", 0)


class KillingJournal:
    """A journal that dies around the Nth call of one of its methods."""

    def __init__(self, inner: Journal) -> None:
        self.inner = inner

    async def room_opened(self, room: RoomRecord) -> None:
        last = KILLER.call("room_opened")
        await self.inner.room_opened(room)
        _after(last)

    async def room_updated(self, room: RoomRecord) -> None:
        last = KILLER.call("room_updated")
        await self.inner.room_updated(room)
        _after(last)

    async def room_closed(self, room_key: str, reason: str | None = None) -> None:
        await self.inner.room_closed(room_key, reason)

    async def intend(self, room_key: str, step: str, request: Mapping[str, Any]) -> int:
        last = KILLER.call("intend")
        seq = await self.inner.intend(room_key, step, request)
        _after(last)
        return seq

    def submitted(self, room_key: str, step_seq: int, task_id: str) -> Awaitable[None]:
        # Queued by the call, as the store's own: the room polls meanwhile.
        last = KILLER.call("submitted")
        return _Then(self.inner.submitted(room_key, step_seq, task_id), last)

    async def settled(
        self,
        room_key: str,
        step_seq: int,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
        *,
        room: RoomRecord | None = None,
    ) -> None:
        last = KILLER.call("settled")
        await self.inner.settled(room_key, step_seq, outcome, detail, room=room)
        _after(last)

    async def unfinished(self) -> list[JournaledRoom]:
        return await self.inner.unfinished()

    async def rooms(self, *, include_finished: bool = False) -> list[JournaledRoom]:
        return await self.inner.rooms(include_finished=include_finished)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _after(last: bool) -> None:
    if last:
        die()


class _Then:
    """A queued write that kills the process once awaited, if *last*."""

    def __init__(self, written: Awaitable[None], last: bool) -> None:
        self.written = written
        self.last = last

    def __await__(self) -> Generator[Any, None, None]:
        yield from self.written.__await__()
        _after(self.last)


class CrashDuel(GameRoom):
    """Two players stake 10; the lowest plyr id takes the pot. Hooks may kill."""

    room_name = "tests.CrashDuel"
    stake = Decimal(10)

    async def on_created(self, transition: Transition) -> None:
        await self._hook()

    async def on_joined(self, transition: Transition) -> None:
        await self._hook()

    async def on_paid(self, transition: Transition) -> None:
        await self._hook()

    async def on_earned(self, transition: Transition) -> None:
        await self._hook()

    async def on_left(self, transition: Transition) -> None:
        await self._hook()

    async def play(self) -> Mapping[str, Decimal]:
        winner = min(self.book.members())
        return {winner: self.book.pot[self.token]}

    async def _hook(self) -> None:
        # A hook that takes a moment, so that a kill lands while hooks of other
        # rooms are in flight too.
        KILLER.call("hook")
        await anyio.lowlevel.checkpoint()


async def main(config: dict[str, Any]) -> None:
    global KILLER
    kill = config.get("kill") or {}
    KILLER = Killer(kill.get("kind"), kill.get("when", "after"), int(kill.get("n", 0)))
    players = [Player(p, jwt) for p, jwt in config["players"]]
    rng = random.Random(config["seed"])
    async with (
        PlyrClient(
            config["url"], config["api_key"], config["api_secret"], retry_backoff=0.01
        ) as client,
        SQLiteJournal(config["journal"]) as store,
        RoomManager(
            client,
            journal=KillingJournal(store),
            task_timeout=30.0,
            poller_options={"schedule": SCHEDULE, "requests_per_second": 5000.0},
        ) as manager,
        anyio.create_task_group() as tg,
    ):
        if config.get("resume"):
            # A server restarted after a crash, dying again while it resumes.
            await resume(manager, players=players, task_wait=10.0)
            return

        for _ in range(config["rooms"]):
            pair = rng.sample(players, 2)
            atomic = rng.random() < config.get("atomic_share", 0.5)
            tg.start_soon(_walk, manager, pair, atomic)


async def _walk(manager: RoomManager, players: list[Player], atomic: bool) -> None:
    # One room's trouble (a slow task on a loaded machine, say) must not end
    # the server: the room stays in the journal as it is, for resume.
    with contextlib.suppress(PlyrError):
        await manager.run(CrashDuel, players, atomic=atomic)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as file:
        settings = json.load(file)

    anyio.run(main, settings, backend="asyncio")
