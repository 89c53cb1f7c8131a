"""The room strategies: plyr-rooms itself, step by step (``shared``) and atomic.

Rooms are :class:`GameRoom` subclasses opened by one :class:`RoomManager` that
owns the shared :class:`TaskPoller` (and, when asked, a journal). Each room's
hooks stamp the moment a step returned to the room; a step is taken to start
when the previous one returned, since :meth:`GameRoom.run` chains them.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..journal import MemoryJournal, SQLiteJournal
from ..manager import RoomManager
from ..poller import TaskPoller
from ..room import GameRoom
from ._config import room_players, walk_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from .._observe import Transition
    from ..client import PlyrClient
    from ._config import BenchConfig, Target
    from ._walks import CountingSource, Recorder

__all__ = ["BenchRoom", "run_room_strategy"]


class BenchRoom(GameRoom):
    """A room whose game is "the first player named wins the pot"."""

    room_name = "plyr_rooms._bench.BenchRoom"

    # Set by the harness right after the manager opened the room.
    index: int = 0
    recorder: Recorder | None = None
    _mark: float = 0.0
    _seen: Transition | None = None

    async def play(self) -> Mapping[str, Decimal | int | str]:
        """Give the whole pot to the winner."""
        members = sorted(self.book.members())
        winner = members[self.index % len(members)]
        return {winner: self.book.pot.get(self.token, Decimal(0))}

    def start_clock(self) -> None:
        """Take now as the start of the room's first step."""
        self._mark = time.monotonic()

    def _stamp(self, transition: Transition) -> None:
        # A composite step runs one hook per part; stamp it once.
        if transition is self._seen or self.recorder is None:
            return

        self._seen = transition
        result = transition.result
        task_id = None if result is None else result.task_id
        self.recorder.step(self.index, transition.step.value, task_id, self._mark)
        self._mark = time.monotonic()

    async def on_created(self, transition: Transition) -> None:
        """Stamp the step."""
        self._stamp(transition)

    async def on_joined(self, transition: Transition) -> None:
        """Stamp the step."""
        self._stamp(transition)

    async def on_paid(self, transition: Transition) -> None:
        """Stamp the step."""
        self._stamp(transition)

    async def on_earned(self, transition: Transition) -> None:
        """Stamp the step."""
        self._stamp(transition)

    async def on_left(self, transition: Transition) -> None:
        """Stamp the step."""
        self._stamp(transition)

    async def on_ended(self, transition: Transition) -> None:
        """Stamp the step."""
        self._stamp(transition)


class DiscardingJournal(SQLiteJournal):
    """A SQLite journal whose writer answers every call and writes nothing.

    The event loop's side is the SQLite journal's own: each call is checked,
    turned into its row, sent to the writer, and awaited until the writer
    answers its batch. Reads find nothing; the load test makes none.
    """

    _discard = True


@contextlib.asynccontextmanager
async def _journal(
    kind: str | None,
) -> AsyncIterator[MemoryJournal | SQLiteJournal | None]:
    # kind: None, "memory", "sqlite", "thread" (SQLite, its writer a thread),
    # or "discard" (DiscardingJournal).
    if kind is None:
        yield None
    elif kind == "memory":
        async with MemoryJournal() as journal:
            yield journal
    else:
        with tempfile.TemporaryDirectory(prefix="plyr-bench-") as folder:
            path = Path(folder) / "journal.sqlite3"
            if kind == "discard":
                store: SQLiteJournal = DiscardingJournal(path)
            elif kind == "thread":
                store = SQLiteJournal(path, writer="thread")
            else:
                store = SQLiteJournal(path)

            async with store as journal:
                yield journal


async def run_room_strategy(
    strategy: str,
    client: PlyrClient,
    source: CountingSource,
    config: BenchConfig,
    target: Target,
    recorder: Recorder,
) -> None:
    """Walk every room of *config* with :class:`BenchRoom` through a manager."""
    # A "+journal" strategy's journal is SQLite unless --journal says otherwise.
    walk, store = walk_of(strategy)
    atomic = walk == "atomic"
    kind = config.journal
    if store in ("discard", "thread"):
        kind = store
    elif store is not None:
        kind = config.journal or "sqlite"

    async with (
        _journal(kind) as journal,
        TaskPoller(source, **config.poller_options()) as poller,
        RoomManager(
            client,
            poller=poller,
            journal=journal,
            task_timeout=config.step_timeout,
        ) as manager,
    ):
        async with anyio.create_task_group() as group:
            for index in range(config.rooms):
                players = room_players(target.players, index, config.players)
                group.start_soon(
                    _walk, manager, index, players, config, recorder, atomic
                )

        recorder.poller_closing(poller.stats)
        if journal is not None:
            recorder.journal_closing(journal.stats)


async def _walk(
    manager: RoomManager,
    index: int,
    players: Any,
    config: BenchConfig,
    recorder: Recorder,
    atomic: bool,
) -> None:
    room = manager.open(BenchRoom, players, token=config.token, stake=config.stake)
    room.index, room.recorder = index, recorder
    room.start_clock()
    try:
        with anyio.fail_after(config.step_timeout * 6):
            await room.run(atomic=atomic)
    except Exception as error:  # one room's failure is a figure, not a crash
        recorder.failed(error)
    else:
        recorder.rooms_ended += 1
