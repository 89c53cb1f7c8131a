"""The SQLite journal: one file, WAL, one writer thread and group commit.

The event loop never touches the file. Each call puts an operation on a queue and
awaits a future; one dedicated thread takes everything queued (up to
``max_batch``), runs it in ONE transaction, commits, and only then resolves the
futures of that batch through ``loop.call_soon_threadsafe``. While it waits on
the disk, the next batch piles up, so ten thousand rooms writing at once cost a
few hundred commits, not ten thousand, and every writer still returns only once
its own record is durable.

A batch of writes of distinct rooms takes one multi-row statement per kind of
record, not one per record, so the thread takes the GIL back a few times per
batch instead of once per record (see ``_commit_at_once`` for why that matters).
A batch with a read, two records of one room, or a record the rules refuse runs
one statement per record instead, with the same result.

``synchronous=FULL`` is the default: with WAL, NORMAL survives a killed process
but not a power cut (the last commits may not have reached the disk), and a lost
intent is exactly what would let resume send a payment twice. Group commit pays
the fsync once per batch, which keeps FULL affordable. NORMAL stays available for
throwaway runs and benchmarks.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar, cast

import anyio

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
    _check_submit,
    check_no_secrets,
    data_text,
    json_text,
    scan_json,
)
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

_T = TypeVar("_T")
# Ten thousand rooms in flight touch a room row and a step index entry each, all
# over the file, in every small commit: with SQLite's default 2 MiB page cache
# most of those pages are read back from the OS each time. 16 MiB holds the hot
# part of a 10,000-room run's file (32 MiB took that run's RSS to 400 MB), and
# the cache grows only as far as the file does. A checkpoint every 10,000 pages
# (40 MiB of WAL) instead of 1,000 copies a page updated by many commits once.
_CACHE_KIB: Final = 16 * 1024
_CHECKPOINT_PAGES: Final = 10_000
_SYNC_MODES = frozenset({"FULL", "NORMAL", "EXTRA"})
_STOP: Final = object()


class _Refused(Exception):
    """A statement of a batch changed fewer rows than it carried records."""


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


def _dumps(value: object) -> str:
    return json_text(value)


# One queued call: the function the writer runs (with the connection first),
# its arguments, and the future it resolves. A plain tuple: ten thousand rooms
# keep one each alive while they wait, and the garbage collector walks them all.
_Op = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
# A call once the writer ran it: its result, or the error its waiter gets.
_Done = tuple[_Op, Any, "BaseException | None"]


class SQLiteJournal:
    """The default :class:`~plyr_rooms.journal.Journal`: a SQLite file in WAL mode.

    The file is opened (and migrated) synchronously by the constructor, which
    then starts the writer thread; call :meth:`aclose` (or use ``async with``)
    to stop it. One process at a time should write a given file.

    Args:
        path: the journal file; created if missing.
        synchronous: SQLite's ``synchronous`` setting, ``"FULL"`` (default:
            survives power loss) or ``"NORMAL"`` (survives a killed process).
        max_batch: the most records one transaction may carry; 1 disables
            group commit (one transaction per write).
        at_once: write a batch of writes of distinct rooms with one statement
            per kind of record (the default); False runs one statement per
            record, as a batch holding a refused record does anyway.

    Raises:
        JournalVersionError: the file was written by a newer plyr-rooms.
        JournalError: the file is not a journal (or not a SQLite database).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        max_batch: int = 4096,
        at_once: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        if synchronous.upper() not in _SYNC_MODES:
            raise InvalidInput(f"synchronous must be FULL or NORMAL: {synchronous!r}")

        if max_batch < 1:
            raise InvalidInput(f"max_batch must be at least 1: {max_batch!r}")

        self.path = os.fspath(path)
        self._max_batch = max_batch
        self._conn = _connect(self.path, synchronous.upper(), migrations)
        self._at_once = at_once
        self._seq, self._clock = _counters(self._conn)
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._closing = False
        self._writes = 0
        self._transactions = 0
        self._largest = 0
        self._writer_cpu = 0.0
        self._thread = threading.Thread(
            target=self._run, name="plyr-rooms-journal", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"SQLiteJournal({self.path!r})"

    @property
    def stats(self) -> JournalStats:
        """Writes, transactions, the largest batch and the writer's CPU so far."""
        return JournalStats(
            self._writes, self._transactions, self._largest, self._writer_cpu
        )

    async def __aenter__(self) -> SQLiteJournal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def room_opened(self, room: RoomRecord) -> None:
        """Record a new room (its key must be new); durable on return."""
        _check_room(room)
        row = (*_room_row(room), self._tick(), time.time())
        del room  # see settled
        await self._call(_insert_room, row)

    async def room_updated(self, room: RoomRecord) -> None:
        """Replace the record of a known room; durable on return."""
        _check_room(room)
        row = (*_room_row(room), self._tick())
        del room  # see settled
        await self._call(_update_room, row)

    async def room_closed(self, room_key: str, reason: str | None = None) -> None:
        """Mark a room as needing nothing more; durable on return."""
        check_no_secrets(reason, where="close reason")
        await self._call(_close_room, room_key, reason)

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
        await self._call(_insert_step, seq, room_key, step, text, time.time())
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
            return self._call(_submit_step, room_key, step_seq, task_id)
        except (InvalidInput, JournalClosed) as exc:
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
            await self._call(_settle_step, args)
            return

        # The step first: if it is refused, nothing was written. The room row
        # cannot then be missing, since the step's row refers to it.
        row = (*_room_row(room), self._tick())
        # Only the row's strings wait for the commit, not the record and its
        # parsed data (a few dozen objects): a step waits long enough for the
        # garbage collector to move whatever it holds to the oldest generation,
        # and ten thousand rooms' worth of that brings more full collections.
        del room
        await self._call(_settle_and_update, args, row)

    async def unfinished(self) -> list[JournaledRoom]:
        """Return every room not finished nor closed, with its steps."""
        return await self._call(_read_rooms, "finished = 0 AND closed = 0")

    async def rooms(self, *, include_finished: bool = False) -> list[JournaledRoom]:
        """Return the journaled rooms (all of them with *include_finished*)."""
        where = "1" if include_finished else "finished = 0 AND closed = 0"
        return await self._call(_read_rooms, where)

    async def aclose(self) -> None:
        """Write what was already asked for, then close the file.

        A cancelled call leaves the writer thread finishing on its own.
        """
        self.close_nowait()
        await anyio.to_thread.run_sync(self._thread.join)

    def close_nowait(self) -> None:
        """Ask the writer thread to finish the queued writes and close the file."""
        if not self._closing:
            self._closing = True
            self._queue.put(_STOP)

    def _tick(self) -> int:
        # Stamps are taken in call order, which is also the order the writer
        # thread applies the records in.
        self._clock += 1
        return self._clock

    def _call(self, run: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        # A plain function, so that a waiting write holds no coroutine of its own.
        if self._closing:
            raise JournalClosed(f"the journal {self.path!r} is closed")

        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue.put((run, args, future))
        return future

    # The writer thread from here on.

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                batch, stop = self._take()
                if batch:
                    self._commit(batch)

        finally:
            self._conn.close()

    def _take(self) -> tuple[list[_Op], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True

        batch = [cast("_Op", first)]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break

            if item is _STOP:
                return batch, True

            batch.append(cast("_Op", item))

        return batch, False

    def _commit(self, batch: list[_Op]) -> None:
        done = self._commit_at_once(batch) if self._at_once else None
        if done is None:
            done = self._commit_each(batch)

        _deliver(done)
        self._writer_cpu = time.thread_time()

    def _commit_at_once(self, batch: list[_Op]) -> list[_Done] | None:
        # The thread gives up the GIL around every statement, and taking it back
        # from an event loop busy with thousands of rooms can take long: the
        # loop's thread drops and retakes it at every socket call and wins most
        # of those races. Batches of one statement per record spent most of
        # their time in that wait; a few statements per batch (one per kind of
        # record) make it rare. See "a batch in a few statements" below.
        groups = _batch_groups(batch)
        if groups is None:
            return None

        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind in _GROUPS:
                rows = groups.get(kind)
                if rows and not _run_group(conn, kind, rows):
                    raise _Refused(kind)

            conn.execute("COMMIT")
        except Exception as exc:
            logger.debug(
                "journal batch of %d goes record by record: %r", len(batch), exc
            )
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                # The record-by-record path then fails to begin, and reports
                # the error to every waiter; the writer thread must not die.
                logger.exception("journal rollback failed")

            return None

        self._count(len(batch))
        return [(op, None, None) for op in batch]

    def _commit_each(self, batch: list[_Op]) -> list[_Done]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            done = [_apply(self._conn, op) for op in batch]
            self._conn.execute("COMMIT")
        except Exception as exc:
            logger.exception("journal transaction of %d records failed", len(batch))
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

            error = JournalError(f"journal write failed: {exc}")
            return [(op, None, error) for op in batch]

        self._count(sum(1 for op in batch if op[0] in _SHAPES))
        return done

    def _count(self, writes: int) -> None:
        self._writes += writes
        self._transactions += 1 if writes else 0
        self._largest = max(self._largest, writes)


def _connect(
    path: str, synchronous: str, migrations: Sequence[Migration]
) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _migrate(conn, path, migrations)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB:d}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES:d}")
        conn.execute("PRAGMA foreign_keys = ON")
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


# -- a batch in a few statements -----------------------------------------------------
#
# A batch whose records are writes of distinct rooms is written as one
# multi-row statement per kind of record (rooms opened, steps intended, task ids,
# outcomes, room records, rooms closed), in one transaction. Records of distinct
# rooms touch distinct rows, so their order inside the batch does not matter.
# Each statement must change exactly as many rows as it carries records: if one
# does not (a room or a step missing, a task id already there) or raises (a room
# already journaled), the transaction is rolled back and the batch goes record
# by record, which says which record was refused and keeps the others.

#: Per kind of record: its number of values, and its statement around
#: ``{values}`` (``VALUES (?, ...), ...``, whose columns SQLite names column1...).
_GROUPS: Final = {
    "open": (
        12,
        "INSERT INTO rooms (key, class_name, state, room_id, room_address, players,"
        " pot, unsettled, data, finished, stamp, opened_at, updated_at)"
        " SELECT column1, column2, column3, column4, column5, column6, column7,"
        " column8, column9, column10, column11, column12, column12"
        " FROM ({values}) WHERE column1 IS NOT NULL",
    ),
    "intend": (
        5,
        "INSERT INTO steps (seq, room_key, step, request, intended_at)"
        " SELECT n.column1, rooms.key, n.column3, n.column4, n.column5"
        " FROM ({values}) AS n JOIN rooms ON rooms.key = n.column2",
    ),
    "submit": (
        4,
        "UPDATE steps SET task_id = n.column3, submitted_at = n.column4"
        " FROM ({values}) AS n WHERE steps.seq = n.column2"
        " AND steps.room_key = n.column1 AND steps.task_id IS NULL"
        " AND steps.outcome IS NULL",
    ),
    "settle": (
        6,
        "UPDATE steps SET outcome = n.column1, detail = n.column2,"
        " settled_stamp = n.column3, settled_at = n.column4"
        " FROM ({values}) AS n WHERE steps.seq = n.column5"
        " AND steps.room_key = n.column6",
    ),
    "update": (
        12,
        "UPDATE rooms SET class_name = n.column2, state = n.column3,"
        " room_id = n.column4, room_address = n.column5, players = n.column6,"
        " pot = n.column7, unsettled = n.column8, data = n.column9,"
        " finished = n.column10, stamp = n.column11, updated_at = n.column12"
        " FROM ({values}) AS n WHERE rooms.key = n.column1",
    ),
    "close": (
        3,
        "UPDATE rooms SET closed = 1, closed_reason = n.column2,"
        " updated_at = n.column3 FROM ({values}) AS n WHERE rooms.key = n.column1",
    ),
}
#: The most records one statement carries (12 values each, under SQLite's
#: limit of 32,766 per statement).
_GROUP_ROWS: Final = 1024

_Rows = list[tuple[str, tuple[Any, ...]]]


@functools.cache
def _group_statement(kind: str, rows: int) -> str:
    width, text = _GROUPS[kind]
    one = "(" + ", ".join("?" * width) + ")"
    return text.format(values="VALUES " + ", ".join([one] * rows))


def _run_group(
    conn: sqlite3.Connection, kind: str, rows: list[tuple[Any, ...]]
) -> bool:
    # Write one kind's records; False if the statement did not change one row
    # per record. Padded to a power of two rows of NULLs (which match and insert
    # nothing), so that a few dozen statement texts serve every batch from the
    # statement cache: preparing one is one more time the thread gives up the GIL.
    width = _GROUPS[kind][0]
    for start in range(0, len(rows), _GROUP_ROWS):
        chunk = rows[start : start + _GROUP_ROWS]
        size = 1 << (len(chunk) - 1).bit_length()
        values = [value for row in chunk for value in row]
        values += [None] * (width * (size - len(chunk)))
        before = conn.total_changes
        conn.execute(_group_statement(kind, size), values)
        if conn.total_changes - before != len(chunk):
            return False

    return True


def _batch_groups(batch: list[_Op]) -> dict[str, list[tuple[Any, ...]]] | None:
    # The batch's records by kind, or None if it holds a call that is not a
    # write (a read), or two records of one room (their order would matter).
    now = time.time()
    rooms: set[str] = set()
    groups: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for run, args, _ in batch:
        shape = _SHAPES.get(run)
        if shape is None:
            return None

        key, rows = shape(now, *args)
        if key in rooms:
            return None

        rooms.add(key)
        for kind, values in rows:
            groups[kind].append(values)

    return groups


def _open_rows(now: float, row: tuple[Any, ...]) -> tuple[str, _Rows]:
    return row[0], [("open", row)]


def _update_rows(now: float, row: tuple[Any, ...]) -> tuple[str, _Rows]:
    return row[0], [("update", (*row, now))]


def _close_rows(now: float, key: str, reason: str | None) -> tuple[str, _Rows]:
    return key, [("close", (key, reason, now))]


def _intend_rows(
    now: float, seq: int, key: str, step: str, request: str, at: float
) -> tuple[str, _Rows]:
    return key, [("intend", (seq, key, step, request, at))]


def _submit_rows(now: float, key: str, seq: int, task_id: str) -> tuple[str, _Rows]:
    return key, [("submit", (key, seq, task_id, now))]


def _settle_rows(now: float, args: tuple[Any, ...]) -> tuple[str, _Rows]:
    return args[5], [("settle", args)]


def _settle_update_rows(
    now: float, args: tuple[Any, ...], row: tuple[Any, ...]
) -> tuple[str, _Rows]:
    return args[5], [("settle", args), ("update", (*row, now))]


# -- one record at a time ----------------------------------------------------------


def _apply(conn: sqlite3.Connection, op: _Op) -> _Done:
    # A refused record fails alone: its statement did nothing (SQLite undoes a
    # failed statement, not the transaction), and the batch goes on.
    run, args, _ = op
    try:
        return op, run(conn, *args), None
    except JournalError as exc:
        return op, None, exc
    except sqlite3.IntegrityError as exc:
        return op, None, JournalError(f"journal refused the record: {exc}")


def _deliver(done: list[_Done]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Done]] = defaultdict(list)
    for item in done:
        by_loop[item[0][2].get_loop()].append(item)

    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:
            # The loop is closed: nobody is waiting any more.
            logger.debug("journal results for a closed event loop dropped")


def _resolve(items: list[_Done]) -> None:
    for (_, _, future), result, error in items:
        if future.done():  # the waiter was cancelled
            continue

        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _room_row(room: RoomRecord) -> tuple[Any, ...]:
    return (
        room.key,
        room.class_name,
        room.state,
        room.room_id,
        room.room_address,
        _dumps(list(room.players)),
        _dumps(dict(room.pot)),
        room.unsettled,
        data_text(room),
        int(room.finished),
    )


def _insert_room(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    try:
        conn.execute(
            "INSERT INTO rooms (key, class_name, state, room_id, room_address,"
            " players, pot, unsettled, data, finished, stamp, opened_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row, row[-1]),
        )
    except sqlite3.IntegrityError:
        # The key is the only constraint a well-formed row can break.
        raise JournalError(f"room {row[0]!r} is already journaled") from None


def _update_room(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    cursor = conn.execute(
        "UPDATE rooms SET class_name = ?, state = ?, room_id = ?, room_address = ?,"
        " players = ?, pot = ?, unsettled = ?, data = ?, finished = ?, stamp = ?,"
        " updated_at = ? WHERE key = ?",
        (*row[1:], time.time(), row[0]),
    )
    if cursor.rowcount == 0:
        raise JournalError(f"room {row[0]!r} is not journaled")


def _close_room(conn: sqlite3.Connection, key: str, reason: str | None) -> None:
    cursor = conn.execute(
        "UPDATE rooms SET closed = 1, closed_reason = ?, updated_at = ? WHERE key = ?",
        (reason, time.time(), key),
    )
    if cursor.rowcount == 0:
        raise JournalError(f"room {key!r} is not journaled")


def _insert_step(
    conn: sqlite3.Connection, seq: int, key: str, step: str, request: str, at: float
) -> None:
    cursor = conn.execute(
        "INSERT INTO steps (seq, room_key, step, request, intended_at)"
        " SELECT ?, key, ?, ?, ? FROM rooms WHERE key = ?",
        (seq, step, request, at, key),
    )
    if cursor.rowcount == 0:
        raise JournalError(f"room {key!r} is not journaled")


def _submit_step(conn: sqlite3.Connection, key: str, seq: int, task_id: str) -> None:
    # One statement in the usual case (no task id yet, no outcome); the rules
    # are read back only to say why a write was refused, or that it was a repeat.
    cursor = conn.execute(
        "UPDATE steps SET task_id = ?, submitted_at = ?"
        " WHERE seq = ? AND room_key = ? AND task_id IS NULL AND outcome IS NULL",
        (task_id, time.time(), seq, key),
    )
    if cursor.rowcount == 1:
        return

    found = conn.execute(
        "SELECT task_id, outcome FROM steps WHERE seq = ? AND room_key = ?",
        (seq, key),
    ).fetchone()
    if found is None:
        raise JournalError(f"room {key!r} has no step {seq!r}")

    _check_submit(StepRecord(seq, "", {}, found[0], found[1]), key, task_id)


def _settle_step(conn: sqlite3.Connection, args: tuple[Any, ...]) -> None:
    cursor = conn.execute(
        "UPDATE steps SET outcome = ?, detail = ?, settled_stamp = ?, settled_at = ?"
        " WHERE seq = ? AND room_key = ?",
        args,
    )
    if cursor.rowcount == 0:
        raise JournalError(f"room {args[5]!r} has no step {args[4]!r}")


def _settle_and_update(
    conn: sqlite3.Connection, args: tuple[Any, ...], row: tuple[Any, ...]
) -> None:
    _settle_step(conn, args)
    _update_room(conn, row)


def _read_rooms(conn: sqlite3.Connection, where: str) -> list[JournaledRoom]:
    # *where* is one of two constant strings, never user input.
    rooms = conn.execute(
        "SELECT key, class_name, state, room_id, room_address, players, pot,"
        f" unsettled, data, stamp FROM rooms WHERE {where} ORDER BY opened_at, key"
    ).fetchall()
    stamps = {row[0]: row[9] for row in rooms}
    steps: dict[str, list[StepRecord]] = defaultdict(list)
    later: dict[str, list[int]] = defaultdict(list)
    for row in conn.execute(
        "SELECT room_key, seq, step, request, task_id, outcome, detail,"
        " settled_stamp FROM steps"
        f" WHERE room_key IN (SELECT key FROM rooms WHERE {where}) ORDER BY seq"
    ):
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


#: How each write becomes its room's key and rows of the kinds in ``_GROUPS``; a
#: call not here (a read) sends its batch record by record.
_SHAPES: Final[dict[Callable[..., Any], Callable[..., tuple[str, _Rows]]]] = {
    _insert_room: _open_rows,
    _update_room: _update_rows,
    _close_room: _close_rows,
    _insert_step: _intend_rows,
    _submit_step: _submit_rows,
    _settle_step: _settle_rows,
    _settle_and_update: _settle_update_rows,
}
