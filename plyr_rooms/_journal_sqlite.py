"""The SQLite journal: one file, WAL, one writer thread and group commit.

The event loop never touches the file. Each call puts an operation on a queue and
awaits a future; one dedicated thread takes everything queued (up to
``max_batch``), runs it in ONE transaction, commits, and only then resolves the
futures of that batch through ``loop.call_soon_threadsafe``. While it waits on
the disk, the next batch piles up, so ten thousand rooms writing at once cost a
few hundred commits, not ten thousand, and every writer still returns only once
its own record is durable.

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
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import anyio
import attrs

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


@attrs.define(eq=False)
class _Op:
    run: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    write: bool


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
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        if synchronous.upper() not in _SYNC_MODES:
            raise InvalidInput(f"synchronous must be FULL or NORMAL: {synchronous!r}")

        if max_batch < 1:
            raise InvalidInput(f"max_batch must be at least 1: {max_batch!r}")

        self.path = os.fspath(path)
        self._max_batch = max_batch
        self._conn = _connect(self.path, synchronous.upper(), migrations)
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
        await self._call(lambda c: _insert_room(c, row))

    async def room_updated(self, room: RoomRecord) -> None:
        """Replace the record of a known room; durable on return."""
        _check_room(room)
        row = (*_room_row(room), self._tick())
        await self._call(lambda c: _update_room(c, row))

    async def room_closed(self, room_key: str, reason: str | None = None) -> None:
        """Mark a room as needing nothing more; durable on return."""
        check_no_secrets(reason, where="close reason")
        await self._call(lambda c: _close_room(c, room_key, reason))

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
        row = (seq, room_key, step, text, time.time())
        await self._call(lambda c: _insert_step(c, row))
        return seq

    async def submitted(self, room_key: str, step_seq: int, task_id: str) -> None:
        """Record the task id the service gave the step; durable on return."""
        check_no_secrets(task_id, where="task id")
        await self._call(lambda c: _submit_step(c, room_key, step_seq, task_id))

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
            await self._call(lambda c: _settle_step(c, args))
            return

        # The step first: if it is refused, nothing was written. The room row
        # cannot then be missing, since the step's row refers to it.
        row = (*_room_row(room), self._tick())
        await self._call(lambda c: _settle_and_update(c, args, row))

    async def unfinished(self) -> list[JournaledRoom]:
        """Return every room not finished nor closed, with its steps."""
        where = "finished = 0 AND closed = 0"
        return await self._call(lambda c: _read_rooms(c, where), write=False)

    async def rooms(self, *, include_finished: bool = False) -> list[JournaledRoom]:
        """Return the journaled rooms (all of them with *include_finished*)."""
        where = "1" if include_finished else "finished = 0 AND closed = 0"
        return await self._call(lambda c: _read_rooms(c, where), write=False)

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

    async def _call(
        self, run: Callable[[sqlite3.Connection], _T], *, write: bool = True
    ) -> _T:
        if self._closing:
            raise JournalClosed(f"the journal {self.path!r} is closed")

        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue.put(_Op(run, loop, future, write))
        return await future

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

        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break

            if item is _STOP:
                return _ops(batch), True

            batch.append(item)

        return _ops(batch), False

    def _commit(self, batch: list[_Op]) -> None:
        done: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                done.append(_apply(self._conn, op))

            self._conn.execute("COMMIT")
        except Exception as exc:
            logger.exception("journal transaction of %d records failed", len(batch))
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

            error = JournalError(f"journal write failed: {exc}")
            done = [(op, None, error) for op in batch]
        else:
            writes = sum(1 for op in batch if op.write)
            self._writes += writes
            self._transactions += 1 if writes else 0
            self._largest = max(self._largest, writes)

        _deliver(done)
        self._writer_cpu = time.thread_time()


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


def _ops(items: list[_Op | object]) -> list[_Op]:
    return [item for item in items if isinstance(item, _Op)]


def _apply(conn: sqlite3.Connection, op: _Op) -> tuple[_Op, Any, BaseException | None]:
    # A refused record fails alone: its statement did nothing (SQLite undoes a
    # failed statement, not the transaction), and the batch goes on.
    try:
        return op, op.run(conn), None
    except JournalError as exc:
        return op, None, exc
    except sqlite3.IntegrityError as exc:
        return op, None, JournalError(f"journal refused the record: {exc}")


def _deliver(done: list[tuple[_Op, Any, BaseException | None]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = defaultdict(list)
    for item in done:
        by_loop[item[0].loop].append(item)

    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:
            # The loop is closed: nobody is waiting any more.
            logger.debug("journal results for a closed event loop dropped")


def _resolve(items: list[tuple[_Op, Any, BaseException | None]]) -> None:
    for op, result, error in items:
        if op.future.done():  # the waiter was cancelled
            continue

        if error is None:
            op.future.set_result(result)
        else:
            op.future.set_exception(error)


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


def _insert_step(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    cursor = conn.execute(
        "INSERT INTO steps (seq, room_key, step, request, intended_at)"
        " SELECT ?, key, ?, ?, ? FROM rooms WHERE key = ?",
        (row[0], row[2], row[3], row[4], row[1]),
    )
    if cursor.rowcount == 0:
        raise JournalError(f"room {row[1]!r} is not journaled")


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
