"""The journal: what every room did, durably, so that a restart never pays twice.

A room records each step before it sends anything (:meth:`Journal.intend`), the
task id as soon as the service gives one (:meth:`Journal.submitted`) and the
outcome once it is known (:meth:`Journal.settled`); :meth:`Journal.room_updated`
keeps the room's own state (server room id, state, players, pot). After a crash,
:meth:`Journal.unfinished` hands every room that was not finished, with its steps,
to :func:`plyr_rooms._resume.resume`.

Two stores behave the same: :class:`MemoryJournal` (tests, throwaway runs) and
:class:`SQLiteJournal` (the default, one file, see ``_journal_sqlite``). Secrets
never enter either: every record is checked for session JWTs and secret-named
keys before it is accepted, and refused with :class:`~plyr_rooms.errors.InvalidInput`.
"""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ._journal_records import (
    FINISHED_STATES,
    JournalClosed,
    JournaledRoom,
    JournalError,
    JournalStats,
    JournalVersionError,
    RoomRecord,
    StepRecord,
    _check_room,
    _check_same_room,
    _check_submit,
    _frozen_json,
    check_no_secrets,
)
from ._journal_sqlite import SQLiteJournal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Mapping

__all__ = [
    "FINISHED_STATES",
    "Journal",
    "JournalClosed",
    "JournalError",
    "JournalStats",
    "JournalVersionError",
    "JournaledRoom",
    "MemoryJournal",
    "RoomRecord",
    "SQLiteJournal",
    "StepRecord",
]


@runtime_checkable
class Journal(Protocol):
    """Where rooms record their steps; both stores implement it.

    Every write is durable when the call returns (for :meth:`submitted`, when
    the awaitable it returns completes): a room awaits :meth:`intend` before it
    sends a step. A cancelled call leaves its record either written or not; the
    caller must treat it as unknown.
    """

    async def room_opened(self, room: RoomRecord) -> None:
        """Record a new room (its key must be new)."""
        ...

    async def room_updated(self, room: RoomRecord) -> None:
        """Replace the record of a known room (state, room id, players, pot)."""
        ...

    async def room_closed(self, room_key: str, reason: str | None = None) -> None:
        """Mark a room as needing nothing more, whatever its state."""
        ...

    async def intend(self, room_key: str, step: str, request: Mapping[str, Any]) -> int:
        """Record that *step* is about to be sent; return its sequence number."""
        ...

    def submitted(self, room_key: str, step_seq: int, task_id: str) -> Awaitable[None]:
        """Record the task id the service gave the step.

        The write starts with the call; the returned awaitable completes once it
        is durable, and raises what refused it. A room waits for its task while
        the write goes on, and awaits it before it writes the step's outcome.
        An ``async def`` (whose write starts only when awaited) also works: a
        room then awaits it at once.
        """
        ...

    async def settled(
        self,
        room_key: str,
        step_seq: int,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
        *,
        room: RoomRecord | None = None,
    ) -> None:
        """Record how the step ended (a later call replaces the outcome).

        With *room*, the room's record (the same key) is replaced in the same
        write: the two are durable together or not at all.
        """
        ...

    async def unfinished(self) -> list[JournaledRoom]:
        """Return every room not finished nor closed, with its steps."""
        ...

    async def rooms(self, *, include_finished: bool = False) -> list[JournaledRoom]:
        """Return the journaled rooms (all of them with *include_finished*)."""
        ...

    async def aclose(self) -> None:
        """Finish the writes already asked for, then close the store."""
        ...


@attrs.define(eq=False)
class _MemRoom:
    record: RoomRecord
    steps: dict[int, StepRecord]
    # When the record was last written, and when each step's outcome was, on
    # the journal's one clock: a step settled later than the record is not
    # reflected in it.
    stamp: int = 0
    settled_at: dict[int, int] = attrs.Factory(dict)
    # Set by room_closed and never cleared.
    closed: bool = False

    @property
    def open(self) -> bool:
        return not self.closed and not self.record.finished


class MemoryJournal:
    """A :class:`Journal` held in memory: same rules as the SQLite store, no file.

    Useful for tests and for runs that need no crash safety.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, _MemRoom] = {}
        self._seq = itertools.count(1)
        self._clock = itertools.count(1)
        self._writes = 0
        self._closed = False

    @property
    def stats(self) -> JournalStats:
        """Counters (one transaction per write)."""
        return JournalStats(self._writes, self._writes, 1 if self._writes else 0)

    async def __aenter__(self) -> MemoryJournal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def room_opened(self, room: RoomRecord) -> None:
        """Record a new room (its key must be new)."""
        self._check_open()
        _check_room(room)
        if room.key in self._rooms:
            raise JournalError(f"room {room.key!r} is already journaled")

        self._rooms[room.key] = _MemRoom(room, {}, next(self._clock))
        self._wrote()

    async def room_updated(self, room: RoomRecord) -> None:
        """Replace the record of a known room."""
        self._check_open()
        _check_room(room)
        entry = self._room(room.key)
        entry.record = room
        entry.stamp = next(self._clock)
        self._wrote()

    async def room_closed(self, room_key: str, reason: str | None = None) -> None:
        """Mark a room as needing nothing more."""
        self._check_open()
        check_no_secrets(reason, where="close reason")
        self._room(room_key).closed = True
        self._wrote()

    async def intend(self, room_key: str, step: str, request: Mapping[str, Any]) -> int:
        """Record that *step* is about to be sent; return its sequence number."""
        self._check_open()
        check_no_secrets(step, where="step name")
        check_no_secrets(request, where=f"{step} request")
        entry = self._room(room_key)
        seq = next(self._seq)
        entry.steps[seq] = StepRecord(seq, step, request)
        self._wrote()
        return seq

    def submitted(self, room_key: str, step_seq: int, task_id: str) -> Awaitable[None]:
        """Record the task id the service gave the step (done when called).

        Errors are raised by the returned awaitable, as with the SQLite store.
        """
        try:
            self._check_open()
            check_no_secrets(task_id, where="task id")
            entry = self._room(room_key)
            step = self._step(entry, room_key, step_seq)
            _check_submit(step, room_key, task_id)
        except Exception as exc:
            return _Written(exc)

        entry.steps[step_seq] = attrs.evolve(step, task_id=task_id)
        self._wrote()
        return _Written(None)

    async def settled(
        self,
        room_key: str,
        step_seq: int,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
        *,
        room: RoomRecord | None = None,
    ) -> None:
        """Record how the step ended, and with *room* the room's new record."""
        self._check_open()
        check_no_secrets([outcome, detail], where="step outcome")
        if room is not None:
            _check_same_room(room, room_key)

        entry = self._room(room_key)
        step = self._step(entry, room_key, step_seq)
        kept = None if detail is None else _frozen_json(detail)
        entry.steps[step_seq] = attrs.evolve(step, outcome=outcome, detail=kept)
        entry.settled_at[step_seq] = next(self._clock)
        if room is not None:
            entry.record = room
            entry.stamp = next(self._clock)

        self._wrote()

    async def unfinished(self) -> list[JournaledRoom]:
        """Return every room not finished nor closed, with its steps."""
        return self._list(lambda e: e.open)

    async def rooms(self, *, include_finished: bool = False) -> list[JournaledRoom]:
        """Return the journaled rooms (all of them with *include_finished*)."""
        return self._list(lambda e: include_finished or e.open)

    async def aclose(self) -> None:
        """Close the journal; later calls raise :class:`JournalClosed`."""
        self._closed = True

    def _list(self, keep: Callable[[_MemRoom], bool]) -> list[JournaledRoom]:
        self._check_open()
        return [_view(e) for e in self._rooms.values() if keep(e)]

    def _room(self, room_key: str) -> _MemRoom:
        entry = self._rooms.get(room_key)
        if entry is None:
            raise JournalError(f"room {room_key!r} is not journaled")

        return entry

    @staticmethod
    def _step(entry: _MemRoom, room_key: str, seq: int) -> StepRecord:
        step = entry.steps.get(seq)
        if step is None:
            raise JournalError(f"room {room_key!r} has no step {seq!r}")

        return step

    def _check_open(self) -> None:
        if self._closed:
            raise JournalClosed("the journal is closed")

    def _wrote(self) -> None:
        self._writes += 1


def _view(entry: _MemRoom) -> JournaledRoom:
    steps = tuple(copy.deepcopy(entry.steps[seq]) for seq in sorted(entry.steps))
    later = tuple(s for s, at in sorted(entry.settled_at.items()) if at > entry.stamp)
    return JournaledRoom(entry.record, steps, later)


class _Written:
    """What :meth:`MemoryJournal.submitted` returns: a write already made."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def __await__(self) -> Generator[Any, None, None]:
        if self.error is not None:
            raise self.error

        yield from ()  # a generator that ends at once: no event loop needed
