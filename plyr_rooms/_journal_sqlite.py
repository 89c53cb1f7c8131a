"""The SQLite journal: one file, WAL, one writer and group commit.

The event loop never touches the file. Each call adds its record to a frame
and returns a future; once per pass of the event loop the frame goes to the
writer, which takes every frame waiting (up to ``max_batch`` records), runs them
in ONE transaction, commits, and only then answers. While it waits on the disk
the next frames pile up, so ten thousand rooms writing at once cost a few
hundred commits, not ten thousand, and every call still returns only once its
own record is durable. ``_journal_writer`` holds the statements.

The writer is a child process on POSIX systems (the default): the event loop
writes each frame to its pipe and reads the answers as they come, with no
thread of its own. A writer thread in this process (``writer="thread"``, and the
default elsewhere) does the same work, but each of its SQLite calls gives up the
GIL, and taking it back from an event loop busy with ten thousand rooms is most
of the time a batch takes: rooms then wait longer for their records, and hold
what they hold for longer. In the 10,000-room load test the process ran within a
few percent of a store that writes nothing (median x0.97), and x1.04 to x1.12 of
the thread in the same runs.

The writer process exits when this process dies (its pipe closes): it then
commits nothing more, as a killed thread would. If the writer dies first, every
waiting call fails with :class:`~plyr_rooms.journal.JournalError`, and so does
every later call: a room then stops, unsettled, where it was.

``synchronous=FULL`` is the default: with WAL, NORMAL survives a killed process
but not a power cut (the last commits may not have reached the disk), and a lost
intent is exactly what would let resume send a payment twice. Group commit pays
the fsync once per batch, which keeps FULL affordable. NORMAL stays available for
throwaway runs and benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

from ._journal_link import Link, ProcessLink, ThreadLink
from ._journal_records import (
    JournalClosed,
    JournaledRoom,
    JournalError,
    JournalStats,
    JournalVersionError,
    RoomRecord,
    StepRecord,
    _check_room,
    _check_same_room,
    check_no_secrets,
    data_text,
    json_text,
    scan_json,
)
from ._journal_writer import Answer, Call, Stats, Writer, connect
from .errors import InvalidInput

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteJournal"]

logger = logging.getLogger(__name__)

#: One migration takes an open transaction on a file of version *i* to *i + 1*.
Migration = Callable[[sqlite3.Connection], None]


def _create_v1(conn: sqlite3.Connection) -> None:
    # ``finished`` mirrors RoomRecord.finished; ``closed`` is set by room_closed
    # and never cleared. ``stamp`` (room record written) and ``settled_stamp``
    # (step outcome written) share one clock: a step settled after its room's
    # record was last written is not reflected in that record. The partial
    # index keeps unfinished() cheap however many finished rooms the file holds.
    conn.execute(
        "CREATE TABLE rooms ("
        " key TEXT PRIMARY KEY, class_name TEXT NOT NULL, state TEXT NOT NULL,"
        " room_id TEXT, room_address TEXT, players TEXT NOT NULL,"
        " pot TEXT NOT NULL, unsettled TEXT, data TEXT NOT NULL,"
        " finished INTEGER NOT NULL, closed INTEGER NOT NULL DEFAULT 0,"
        " closed_reason TEXT, stamp INTEGER NOT NULL, opened_at REAL NOT NULL,"
        " updated_at REAL NOT NULL)"
    )
    conn.execute(
        "CREATE INDEX rooms_open ON rooms (key) WHERE finished = 0 AND closed = 0"
    )
    conn.execute(
        "CREATE TABLE steps ("
        " seq INTEGER PRIMARY KEY, room_key TEXT NOT NULL REFERENCES rooms (key),"
        " step TEXT NOT NULL, request TEXT NOT NULL, task_id TEXT, outcome TEXT,"
        " detail TEXT, settled_stamp INTEGER, intended_at REAL NOT NULL,"
        " submitted_at REAL, settled_at REAL)"
    )
    conn.execute("CREATE INDEX steps_room ON steps (room_key, seq)")


#: The schema's history: MIGRATIONS[i] upgrades version i to i + 1. Append only.
MIGRATIONS: Final[tuple[Migration, ...]] = (_create_v1,)
#: The schema version this plyr-rooms writes (``PRAGMA user_version``).
SCHEMA_VERSION: Final = len(MIGRATIONS)

_SYNC_MODES = frozenset({"FULL", "NORMAL", "EXTRA"})
_WRITERS = frozenset({"process", "thread"})
_DEFAULT_WRITER: Final = "process" if os.name == "posix" else "thread"


def _migrate(
    conn: sqlite3.Connection, path: str, migrations: Sequence[Migration]
) -> None:
    # Refuse a newer file before anything writes to it (even the WAL switch).
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > len(migrations):
        raise JournalVersionError(path, found, len(migrations))

    for version in range(found, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1:d}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

        conn.execute("COMMIT")
        logger.debug("journal %s migrated to schema version %d", path, version + 1)


class SQLiteJournal:
    """The default :class:`~plyr_rooms.journal.Journal`: a SQLite file in WAL mode.

    The file is opened (and migrated) synchronously by the constructor, which
    then starts the writer; call :meth:`aclose` (or use ``async with``) to stop
    it. The journal serves the first event loop that uses it. One process at a
    time should write a given file.

    Args:
        path: the journal file; created if missing.
        synchronous: SQLite's ``synchronous`` setting, ``"FULL"`` (default:
            survives power loss) or ``"NORMAL"`` (survives a killed process).
        max_batch: the most records one transaction may carry; 1 disables
            group commit (one transaction per write).
        at_once: write a batch of writes of distinct rooms with one statement
            per kind of record (the default); False runs one statement per
            record, as a batch holding a refused record does anyway.
        writer: ``"process"`` (the default on POSIX systems), the SQLite work
            in a child process, or ``"thread"`` (the default elsewhere), in a
            thread of this process.

    Raises:
        JournalVersionError: the file was written by a newer plyr-rooms.
        JournalError: the file is not a journal (or not a SQLite database).
    """

    #: Answer every write without writing it (the load test's control).
    _discard: ClassVar[bool] = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        max_batch: int = 4096,
        at_once: bool = True,
        writer: str = _DEFAULT_WRITER,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        synchronous = synchronous.upper()
        if synchronous not in _SYNC_MODES:
            raise InvalidInput(f"synchronous must be FULL or NORMAL: {synchronous!r}")

        if max_batch < 1:
            raise InvalidInput(f"max_batch must be at least 1: {max_batch!r}")

        if writer not in _WRITERS or (writer == "process" and os.name != "posix"):
            raise InvalidInput(f"writer must be 'process' or 'thread': {writer!r}")

        self.path = os.fspath(path)
        self._max_batch = max_batch
        self._at_once = at_once
        conn = _connect(self.path, migrations)
        try:
            self._seq, self._clock = _counters(conn)
        finally:
            conn.close()

        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: list[Call] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._flushing = False
        self._closing = False
        self._lost: str | None = None
        self._stats: Stats = (0, 0, 0, 0.0)
        self._link: Link
        if writer == "process":
            args = [self.path, synchronous, str(max_batch), str(int(at_once))]
            args.append(str(int(self._discard)))
            self._link = ProcessLink(args, self._answer, self._ended)
        else:
            store = Writer(
                connect(self.path, synchronous), at_once=at_once, discard=self._discard
            )
            self._link = ThreadLink(store, max_batch, self._answer, self._ended)

    def __repr__(self) -> str:
        return f"SQLiteJournal({self.path!r})"

    @property
    def stats(self) -> JournalStats:
        """Writes, transactions, the largest batch and the writer's CPU so far."""
        return JournalStats(*self._stats)

    async def __aenter__(self) -> SQLiteJournal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def room_opened(self, room: RoomRecord) -> None:
        """Record a new room (its key must be new); durable on return."""
        _check_room(room)
        row = (*_room_row(room), self._tick(), time.time())
        del room  # see settled
        await self._call("open", row)

    async def room_updated(self, room: RoomRecord) -> None:
        """Replace the record of a known room; durable on return."""
        _check_room(room)
        row = (*_room_row(room), self._tick())
        del room  # see settled
        await self._call("update", row)

    async def room_closed(self, room_key: str, reason: str | None = None) -> None:
        """Mark a room as needing nothing more; durable on return."""
        check_no_secrets(reason, where="close reason")
        await self._call("close", room_key, reason)

    async def intend(self, room_key: str, step: str, request: Mapping[str, Any]) -> int:
        """Record that *step* is about to be sent; durable on return.

        Returns:
            The step's sequence number. A cancelled call may or may not have
            written the intent; the room must then treat the step as uncertain.
        """
        check_no_secrets(step, where="step name")
        text = scan_json(json_text(dict(request)), where=f"{step} request")
        self._seq += 1
        seq = self._seq
        await self._call("intend", seq, room_key, step, text, time.time())
        return seq

    def submitted(
        self, room_key: str, step_seq: int, task_id: str
    ) -> asyncio.Future[None]:
        """Queue the task id the service gave the step.

        Returns:
            A future resolved once the record is durable, or failed with what
            refused it. The write is queued by the call itself (see
            :meth:`Journal.submitted <plyr_rooms.journal.Journal.submitted>`).
        """
        try:
            check_no_secrets(task_id, where="task id")
            return self._call("submit", room_key, step_seq, task_id)
        except (InvalidInput, JournalError) as exc:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def settled(
        self,
        room_key: str,
        step_seq: int,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
        *,
        room: RoomRecord | None = None,
    ) -> None:
        """Record how the step ended, and with *room* the room's new record.

        Both go in one transaction; durable on return.
        """
        check_no_secrets(outcome, where="step outcome")
        text = None
        if detail is not None:
            text = scan_json(json_text(dict(detail)), where="step outcome")

        if room is not None:
            _check_same_room(room, room_key)

        args = (outcome, text, self._tick(), time.time(), step_seq, room_key)
        if room is None:
            await self._call("settle", args)
            return

        # The step first: if it is refused, nothing was written. The room row
        # cannot then be missing, since the step's row refers to it.
        row = (*_room_row(room), self._tick())
        # Only the row's strings wait for the commit, not the record and its
        # parsed data (a few dozen objects): a step waits long enough for the
        # garbage collector to move whatever it holds to the oldest generation,
        # and ten thousand rooms' worth of that brings more full collections.
        del room
        await self._call("settle+update", args, row)

    async def unfinished(self) -> list[JournaledRoom]:
        """Return every room not finished nor closed, with its steps."""
        return _rooms_of(await self._call("read", "finished = 0 AND closed = 0"))

    async def rooms(self, *, include_finished: bool = False) -> list[JournaledRoom]:
        """Return the journaled rooms (all of them with *include_finished*)."""
        where = "1" if include_finished else "finished = 0 AND closed = 0"
        return _rooms_of(await self._call("read", where))

    async def aclose(self) -> None:
        """Write what was already asked for, then close the file.

        A cancelled call leaves the writer finishing on its own.
        """
        self.close_nowait()
        await self._link.join()

    def close_nowait(self) -> None:
        """Ask the writer to finish the queued writes and close the file."""
        if not self._closing:
            self._closing = True
            self._flush()
            self._link.stop()

    def _tick(self) -> int:
        # Stamps are taken in call order, which is also the order the writer
        # applies the records in.
        self._clock += 1
        return self._clock

    def _call(self, name: str, *args: Any) -> asyncio.Future[Any]:
        # A plain function, so that a waiting write holds no coroutine of its
        # own; its record goes to the writer with the others of this loop pass.
        if self._closing:
            raise JournalClosed(f"the journal {self.path!r} is closed")

        if self._lost is not None:
            raise JournalError(self._lost)

        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)

        future: asyncio.Future[Any] = loop.create_future()
        self._calls.append((name, args))
        self._waiting.append(future)
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)

        return future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None:
            raise JournalError(
                f"the journal {self.path!r} serves another event loop; open one"
                " journal per event loop"
            )

        self._loop = loop
        self._link.start(loop)

    def _flush(self) -> None:
        self._flushing = False
        calls, self._calls = self._calls, []
        for start in range(0, len(calls), self._max_batch):
            self._link.send(calls[start : start + self._max_batch])

    # The link calls these, in the event loop.

    def _answer(
        self,
        answers: list[Answer],
        stats: Stats,
        error: str | None,
        fallback: str | None,
    ) -> None:
        # One answer per call, in the order the calls were made.
        self._stats = stats
        if fallback is not None:
            logger.debug(
                "journal batch of %d went record by record: %s", len(answers), fallback
            )

        if error is not None:
            logger.error(
                "journal transaction of %d records failed: %s", len(answers), error
            )

        waiting = self._waiting
        for ok, value in answers:
            future = waiting.popleft()
            if future.done():  # the waiter was cancelled
                continue

            if ok:
                future.set_result(value)
            else:
                future.set_exception(JournalError(value))

    def _ended(self, why: str | None) -> None:
        # The writer is gone: *why* is None after a stop asked for.
        if why is None and not self._waiting:
            return

        self._lost = f"the journal writer of {self.path!r} stopped: {why or 'early'}"
        if self._waiting:
            logger.error("%s; %d calls failed", self._lost, len(self._waiting))

        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(JournalError(self._lost))


def _connect(path: str, migrations: Sequence[Migration]) -> sqlite3.Connection:
    # Open, check and migrate the file; the writer then opens it for itself.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _migrate(conn, path, migrations)
        conn.execute("PRAGMA journal_mode = WAL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(f"{path!r} is not a plyr-rooms journal: {exc}") from None
    except BaseException:
        conn.close()
        raise

    return conn


def _counters(conn: sqlite3.Connection) -> tuple[int, int]:
    seq = conn.execute("SELECT MAX(seq), MAX(settled_stamp) FROM steps").fetchone()
    room = conn.execute("SELECT MAX(stamp) FROM rooms").fetchone()
    return int(seq[0] or 0), max(int(seq[1] or 0), int(room[0] or 0))


def _room_row(room: RoomRecord) -> tuple[Any, ...]:
    return (
        room.key,
        room.class_name,
        room.state,
        room.room_id,
        room.room_address,
        json_text(list(room.players)),
        json_text(dict(room.pot)),
        room.unsettled,
        data_text(room),
        int(room.finished),
    )


def _rooms_of(
    rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]],
) -> list[JournaledRoom]:
    # The journal's records from the writer's rows (see _journal_writer._read_rooms).
    rooms, step_rows = rows
    stamps = {row[0]: row[9] for row in rooms}
    steps: dict[str, list[StepRecord]] = defaultdict(list)
    later: dict[str, list[int]] = defaultdict(list)
    for row in step_rows:
        detail = None if row[6] is None else json.loads(row[6])
        steps[row[0]].append(
            StepRecord(row[1], row[2], json.loads(row[3]), row[4], row[5], detail)
        )
        if row[7] is not None and row[7] > stamps[row[0]]:
            later[row[0]].append(row[1])

    return [
        JournaledRoom(
            RoomRecord(
                key=row[0],
                class_name=row[1],
                state=row[2],
                room_id=row[3],
                room_address=row[4],
                players=json.loads(row[5]),
                pot=json.loads(row[6]),
                unsettled=row[7],
                data=json.loads(row[8]),
            ),
            tuple(steps.get(row[0], ())),
            tuple(later.get(row[0], ())),
        )
        for row in rooms
    ]
