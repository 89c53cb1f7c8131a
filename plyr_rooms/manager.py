"""RoomManager: one client, one poller and one journal for every room of a process."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import attrs

from ._observe import TransitionHub
from ._roomvalues import FIRST_ATTEMPT_WINDOW
from .errors import PlyrError
from .lifecycle import RoomState
from .room import ROOM_CLASSES, GameRoom, RoomServices

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from ._observe import Subscription, Transition
    from .client import PlyrClient
    from .journal import Journal, JournaledRoom
    from .poller import TaskPoller
    from .room import PlayerLike

__all__ = ["ManagerClosed", "ManagerStats", "RoomManager"]

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=GameRoom)


class ManagerClosed(PlyrError, RuntimeError):
    """The manager is draining or closed: it opens no new room."""


@attrs.frozen
class ManagerStats:
    """Counts of a manager's rooms.

    Attributes:
        opened: rooms opened (or resumed) since the manager started.
        ended: rooms that reached ENDED (they are no longer tracked).
        active: rooms tracked now, by state name (FAILED and unsettled included).
        unsettled: tracked rooms waiting for reconcile or an operator.
        in_flight: steps (with their hooks) running now.
        dropped: transitions dropped by slow manager-level observers.
    """

    opened: int
    ended: int
    active: Mapping[str, int]
    unsettled: int
    in_flight: int
    dropped: int


class RoomManager:
    """Run many rooms at once over one client, one poller and one journal.

    An async context manager: entering starts the poller (and opens the client
    when the manager made it); leaving drains. What the manager creates it also
    closes; a client, poller or journal passed in is used and left open, except
    that a journal given as a path is opened and closed by the manager.

    Args:
        client: the API client; by default one is made from *endpoint*,
            *api_key*, *api_secret* (or the ``PLYR_API_*`` environment variables).
        poller: the task poller; by default one is made on the client.
        journal: a Journal, a path for a SQLite journal, or None for none.
        endpoint: see :class:`~plyr_rooms.client.PlyrClient`.
        api_key: see :class:`~plyr_rooms.client.PlyrClient`.
        api_secret: see :class:`~plyr_rooms.client.PlyrClient`.
        task_timeout: seconds a step waits for its task before its room is
            marked unsettled (None: the poller's default deadline).
        revert_window: seconds from enqueueing within which a reverted task
            that moves tokens proves nothing happened (the worker's first
            attempt; a later revert may follow an attempt that executed and
            lost its receipt, so its room is left unsettled). Default 41.
        poller_options: keyword arguments for the poller the manager makes.
        registry: room classes by name for :meth:`resume` (default: every
            GameRoom subclass defined so far).
        resume: resume the journal's unfinished rooms on entry.
        drain_timeout: seconds leaving the context waits for steps in flight.
    """

    def __init__(
        self,
        client: PlyrClient | None = None,
        *,
        poller: TaskPoller | None = None,
        journal: Journal | str | None = None,
        endpoint: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        task_timeout: float | None = None,
        revert_window: float = FIRST_ATTEMPT_WINDOW,
        poller_options: Mapping[str, Any] | None = None,
        registry: Mapping[str, type[GameRoom]] | None = None,
        resume: bool = False,
        drain_timeout: float = 30.0,
    ) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._make_client = client is None
        if client is None:
            from .client import PlyrClient

            client = PlyrClient(endpoint, api_key, api_secret)

        self._make_poller = poller is None
        if poller is None:
            from .poller import TaskPoller

            poller = TaskPoller(client, **dict(poller_options or {}))

        self._own_journal = isinstance(journal, str)
        if isinstance(journal, str):
            from .journal import SQLiteJournal

            journal = SQLiteJournal(journal)

        self.client = client
        self.poller = poller
        self.journal: Journal | None = journal
        self.registry = ROOM_CLASSES if registry is None else registry
        self.services = RoomServices(
            client,
            poller,
            journal,
            task_timeout=task_timeout,
            revert_window=revert_window,
            hub=TransitionHub(on_publish=self._track),
        )
        self.drain_timeout = drain_timeout
        self._resume_on_entry = resume
        self._rooms: dict[str, GameRoom] = {}
        self._opened = 0
        self._ended = 0
        self._state = "new"  # new -> running -> draining -> closed
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    # -- lifetime ---------------------------------------------------------------------

    async def __aenter__(self) -> RoomManager:
        # The client and the poller live in a task of our own, so that drain can
        # close them from any task without unwinding anyone else's scopes.
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        await tg.start(self._host)
        self._state = "running"
        if self._resume_on_entry:
            await self.resume()

        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.drain(self.drain_timeout)
            else:
                await self._close()
        finally:
            await self._stack.__aexit__(exc_type, exc, tb)

    async def _host(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._make_client:
                    await stack.enter_async_context(self.client)

                if self._make_poller:
                    await stack.enter_async_context(self.poller)

                task_status.started()
                await self._stop.wait()
        finally:
            self._stopped.set()

    async def drain(self, deadline: float | None = None) -> None:
        """Stop opening rooms, wait for walks and steps in flight, close everything.

        Steps still waiting when *deadline* (seconds) passes have their rooms
        marked unsettled, their task ids kept (and journaled). It may be called
        from any task, and never exits the process. A cancellation stops the wait
        and leaves the rest to the end of the ``async with`` block.
        """
        if self._state in ("closed", "new"):
            return

        self._state = "draining"
        with anyio.move_on_after(deadline):
            await self.services.wait_idle()

        await self._close()

    async def _close(self) -> None:
        if self._state == "closed":
            return

        self._state = "closed"
        self.services.hub.close()
        self._stop.set()
        await self._stopped.wait()
        if self._own_journal and self.journal is not None:
            await self.journal.aclose()

    # -- rooms ------------------------------------------------------------------------

    def open(
        self, room_class: type[R], players: Iterable[PlayerLike | str] = (), **kw: Any
    ) -> R:
        """Return a new room of *room_class* on this manager, for a custom flow.

        Keyword arguments go to the room's constructor (token, stake, ...).

        Raises:
            ManagerClosed: if the manager is not running.
        """
        if self._state != "running":
            raise ManagerClosed(f"the manager is {self._state}: it opens no room")

        room = room_class(self.services, players, **kw)
        self._add(room)
        return room

    async def run(
        self,
        room_class: type[R],
        players: Iterable[PlayerLike | str],
        *,
        atomic: bool | None = None,
        **kw: Any,
    ) -> R:
        """Open a room and walk it to the end (see :meth:`GameRoom.run`).

        Returns:
            The ended room (its ``payouts`` say who won what).

        Raises:
            Whatever stopped the walk; the room stays tracked in its state.
        """
        room = self.open(room_class, players, **kw)
        await room.run(atomic=atomic)
        return room

    @property
    def rooms(self) -> Mapping[str, GameRoom]:
        """The rooms tracked now, by key (ended rooms are dropped)."""
        return self._rooms

    def find(self, room_id: str) -> GameRoom | None:
        """Return the tracked room with server id *room_id*, if any."""
        for room in self._rooms.values():
            if room.room_id == room_id:
                return room

        return None

    def by_state(self, state: RoomState) -> list[GameRoom]:
        """Return the tracked rooms in *state*."""
        return [r for r in self._rooms.values() if r.state is state]

    def transitions(self, buffer: int = 1024) -> Subscription:
        """Return an async iterator over every room's transitions from now on.

        A full buffer drops the oldest (counted); it ends when the manager closes.
        """
        return self.services.hub.subscribe(buffer)

    @property
    def stats(self) -> ManagerStats:
        """A snapshot of the manager's counters."""
        active: dict[str, int] = {}
        unsettled = 0
        for room in self._rooms.values():
            active[room.state.name] = active.get(room.state.name, 0) + 1
            unsettled += room.unsettled is not None

        return ManagerStats(
            self._opened,
            self._ended,
            active,
            unsettled,
            self.services.busy,
            self.services.hub.dropped,
        )

    def _add(self, room: GameRoom) -> None:
        self._rooms[room.key] = room
        self._opened += 1

    def _track(self, transition: Transition) -> None:
        if transition.new is RoomState.ENDED and transition.room_key in self._rooms:
            del self._rooms[transition.room_key]
            self._ended += 1

    # -- resume -----------------------------------------------------------------------

    async def resume(
        self,
        players: Iterable[PlayerLike] = (),
        *,
        task_wait: float | None = None,
        walk: bool = True,
    ) -> list[GameRoom]:
        """Take back the journal's unfinished rooms after a restart.

        Every pending step is settled first from the service (task status, and
        ``isJoined`` for join and leave), never by sending it again. Each room is
        then rebuilt through the registry (:meth:`GameRoom.restore`). With *walk*,
        rooms that can finish without session JWTs carry on concurrently: a room
        that holds tokens is played and paid out, a room that never took any lets
        its players go and ends, a room never created is closed in the journal.
        Rooms left unsettled (and rooms whose class is not registered) are
        returned as they are, for an operator.

        Args:
            players: players still online, to give rooms back their JWTs.
            task_wait: seconds to wait for each still-pending task.
            walk: carry on the walks that can be finished.

        Returns:
            The rooms taken back (also tracked by the manager).
        """
        journal = self.journal
        if journal is None:
            raise ManagerClosed("resume needs a journal")

        from ._resume import reconcile_rooms

        online = list(players)
        # All rooms at once, so that their pending tasks share the poller's sweeps.
        await reconcile_rooms(
            await journal.unfinished(),
            journal,
            self.client,
            self.poller,
            timeout=task_wait,
            revert_window=self.services.revert_window,
        )

        rooms = [
            room
            for entry in await journal.unfinished()
            if (room := self._restore(entry, online)) is not None
        ]
        for room in rooms:
            # The book may have moved by steps settled above: record it.
            await room.journal_sync()
        if walk:
            async with anyio.create_task_group() as tg:
                for room in rooms:
                    if room.unsettled is None:
                        tg.start_soon(self._carry_on, room)

        return rooms

    def _restore(
        self, entry: JournaledRoom, players: list[PlayerLike]
    ) -> GameRoom | None:
        room_class = self.registry.get(entry.room.class_name)
        if room_class is None:
            logger.warning(
                "room %s: class %r is not registered; left as it is",
                entry.room.key,
                entry.room.class_name,
            )
            return None

        room = room_class.restore(self.services, entry, players)
        self._opened += 1
        if room.state is RoomState.ENDED:
            self._ended += 1
        else:
            self._rooms[room.key] = room

        return room

    async def _carry_on(self, room: GameRoom) -> None:
        # Errors stay with the room (its state, unsettled, error); resume goes on.
        try:
            if room.state is RoomState.NEW:
                assert self.journal is not None
                await self.journal.room_closed(room.key, "never created")
                del self._rooms[room.key]
            elif room.state in (RoomState.CREATED, RoomState.JOINED):
                await room.leave_all()
                await room.end()
            elif room.state is RoomState.FAILED:
                await room.refund()
            else:
                await room.run()
        except PlyrError as exc:
            logger.warning("room %s: resume stopped: %s", room.key, exc)
