"""The SQLite journal's writer: its statements, its batches, and its process.

This module uses the standard library only, because it is also the program the
journal starts as its writer process (``python -I -S _journal_writer.py ...``):
that process must start in a few milliseconds, without importing plyr_rooms.
:class:`Writer` runs a batch of calls in one transaction and answers each with
plain data, ``(True, value)`` or ``(False, why it was refused)``; the journal
turns those into results and :class:`~plyr_rooms.errors.JournalError`.

A batch of writes of distinct rooms takes one multi-row statement per kind of
record, not one per record: each statement is a few trips through SQLite's C code
and, with the writer in a thread, one more time that thread gives up the GIL and
waits to take it back from a busy event loop. A batch with a read, two records of
one room, or a record the rules refuse runs one statement per record instead,
with the same result.

The process speaks in frames on its standard input and output: a 4-byte
little-endian length, then a pickle. The journal sends lists of calls
``(name, args)``, or None to stop; the writer takes every whole frame already
waiting (up to *max_batch* calls, never part of a frame), commits them in one
transaction, and sends back ``("done", answers, stats)``, one answer per call in
order, with the counters and what went wrong with the batch, if anything. An
end of input without the stop frame means the journal's process died:
the writer then exits without committing anything more.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import select
import sqlite3
import struct
import sys
import time
import traceback
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# Ten thousand rooms in flight touch a room row and a step index entry each, all
# over the file, in every small commit: with SQLite's default 2 MiB page cache
# most of those pages are read back from the OS each time. 16 MiB holds the hot
# part of a 10,000-room run's file (32 MiB took that run's RSS to 400 MB), and
# the cache grows only as far as the file does. A checkpoint every 10,000 pages
# (40 MiB of WAL) instead of 1,000 copies a page updated by many commits once.
_CACHE_KIB: Final = 16 * 1024
_CHECKPOINT_PAGES: Final = 10_000

#: A call, as the journal sends it: its name in ``CALLS`` and its arguments.
Call = tuple[str, tuple[Any, ...]]
#: What a call got: ``(True, result)``, or ``(False, why it was refused)``.
Answer = tuple[bool, Any]
#: The writer's counters: writes, transactions, largest batch, CPU seconds.
Stats = tuple[int, int, int, float]

_HEADER: Final = struct.Struct("<I")


class Refused(Exception):
    """The rules refuse a record; its message says why."""


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """Open a journal file already migrated, with the writer's settings."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB:d}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES:d}")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise

    return conn


class Writer:
    """Runs batches of journal calls on one connection, one transaction each.

    With *discard*, answers every write without writing it (the load test's
    control: the journal's whole path but the disk).
    """

    def __init__(
        self, conn: sqlite3.Connection, *, at_once: bool = True, discard: bool = False
    ) -> None:
        self.conn = conn
        self._at_once = at_once
        self._discard = discard
        self._writes = 0
        self._transactions = 0
        self._largest = 0
        #: Why the last batch's transaction failed as a whole, if it did.
        self.error: str | None = None
        #: Why the last batch went record by record after a try at once.
        self.fallback: str | None = None

    def stats(self, cpu: float) -> Stats:
        """The counters so far, with *cpu* seconds of the writer's CPU."""
        return self._writes, self._transactions, self._largest, cpu

    def commit(self, batch: list[Call]) -> list[Answer]:
        """Run *batch* in one transaction; one answer per call, in order."""
        self.error = self.fallback = None
        if self._discard:
            self._count(len(batch))
            return [(True, ([], []) if name == "read" else None) for name, _ in batch]

        done = self._commit_at_once(batch) if self._at_once else None
        return self._commit_each(batch) if done is None else done

    def _commit_at_once(self, batch: list[Call]) -> list[Answer] | None:
        groups = _batch_groups(batch)
        if groups is None:
            return None

        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind in GROUPS:
                rows = groups.get(kind)
                if rows and not _run_group(conn, kind, rows):
                    raise Refused(kind)

            conn.execute("COMMIT")
        except Exception as exc:
            self.fallback = repr(exc)
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                # The record-by-record path then fails to begin, and reports
                # the error to every call; the writer must not die.
                pass

            return None

        self._count(len(batch))
        return [(True, None)] * len(batch)

    def _commit_each(self, batch: list[Call]) -> list[Answer]:
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            done = [_apply(conn, call) for call in batch]
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

            self.error = f"journal write failed: {exc}"
            failed = (False, self.error)
            return [failed] * len(batch)

        self._count(sum(1 for name, _ in batch if name in SHAPES))
        return done

    def _count(self, writes: int) -> None:
        self._writes += writes
        self._transactions += 1 if writes else 0
        self._largest = max(self._largest, writes)


def _apply(conn: sqlite3.Connection, call: Call) -> Answer:
    # A refused record fails alone: its statement did nothing (SQLite undoes a
    # failed statement, not the transaction), and the batch goes on.
    name, args = call
    try:
        return True, CALLS[name](conn, *args)
    except Refused as exc:
        return False, str(exc)
    except sqlite3.IntegrityError as exc:
        return False, f"journal refused the record: {exc}"


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
GROUPS: Final = {
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
    width, text = GROUPS[kind]
    one = "(" + ", ".join("?" * width) + ")"
    return text.format(values="VALUES " + ", ".join([one] * rows))


def _run_group(
    conn: sqlite3.Connection, kind: str, rows: list[tuple[Any, ...]]
) -> bool:
    # Write one kind's records; False if the statement did not change one row
    # per record. Padded to a power of two rows of NULLs (which match and insert
    # nothing), so that a few dozen statement texts serve every batch from the
    # statement cache.
    width = GROUPS[kind][0]
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


def _batch_groups(batch: list[Call]) -> dict[str, list[tuple[Any, ...]]] | None:
    # The batch's records by kind, or None if it holds a call that is not a
    # write (a read), or two records of one room (their order would matter).
    now = time.time()
    rooms: set[str] = set()
    groups: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for name, args in batch:
        shape = SHAPES.get(name)
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
        raise Refused(f"room {row[0]!r} is already journaled") from None


def _update_room(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    cursor = conn.execute(
        "UPDATE rooms SET class_name = ?, state = ?, room_id = ?, room_address = ?,"
        " players = ?, pot = ?, unsettled = ?, data = ?, finished = ?, stamp = ?,"
        " updated_at = ? WHERE key = ?",
        (*row[1:], time.time(), row[0]),
    )
    if cursor.rowcount == 0:
        raise Refused(f"room {row[0]!r} is not journaled")


def _close_room(conn: sqlite3.Connection, key: str, reason: str | None) -> None:
    cursor = conn.execute(
        "UPDATE rooms SET closed = 1, closed_reason = ?, updated_at = ? WHERE key = ?",
        (reason, time.time(), key),
    )
    if cursor.rowcount == 0:
        raise Refused(f"room {key!r} is not journaled")


def _insert_step(
    conn: sqlite3.Connection, seq: int, key: str, step: str, request: str, at: float
) -> None:
    cursor = conn.execute(
        "INSERT INTO steps (seq, room_key, step, request, intended_at)"
        " SELECT ?, key, ?, ?, ? FROM rooms WHERE key = ?",
        (seq, step, request, at, key),
    )
    if cursor.rowcount == 0:
        raise Refused(f"room {key!r} is not journaled")


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
        raise Refused(f"room {key!r} has no step {seq!r}")

    why = submit_refusal(key, seq, found[0], found[1], task_id)
    if why is not None:
        raise Refused(why)


def submit_refusal(
    key: str, seq: int, known: str | None, outcome: str | None, task_id: str
) -> str | None:
    """Why step *seq* of room *key* may not take *task_id* now, or None.

    The rule of both stores: a task id is written once (the same one again is a
    repeat, not a change), and never after the outcome, since an outcome without
    its task id would hide a double submission.
    """
    if known is not None and known != task_id:
        return (
            f"step {seq} of room {key!r} already has task id {known!r}, not {task_id!r}"
        )

    if outcome is not None:
        return (
            f"step {seq} of room {key!r} is already settled ({outcome});"
            " too late for a task id"
        )

    return None


def _settle_step(conn: sqlite3.Connection, args: tuple[Any, ...]) -> None:
    cursor = conn.execute(
        "UPDATE steps SET outcome = ?, detail = ?, settled_stamp = ?, settled_at = ?"
        " WHERE seq = ? AND room_key = ?",
        args,
    )
    if cursor.rowcount == 0:
        raise Refused(f"room {args[5]!r} has no step {args[4]!r}")


def _settle_and_update(
    conn: sqlite3.Connection, args: tuple[Any, ...], row: tuple[Any, ...]
) -> None:
    _settle_step(conn, args)
    _update_room(conn, row)


def _read_rooms(
    conn: sqlite3.Connection, where: str
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    # The rows, as stored; the journal builds its records from them. *where* is
    # one of two constant strings, never user input.
    rooms = conn.execute(
        "SELECT key, class_name, state, room_id, room_address, players, pot,"
        f" unsettled, data, stamp FROM rooms WHERE {where} ORDER BY opened_at, key"
    ).fetchall()
    steps = conn.execute(
        "SELECT room_key, seq, step, request, task_id, outcome, detail,"
        " settled_stamp FROM steps"
        f" WHERE room_key IN (SELECT key FROM rooms WHERE {where}) ORDER BY seq"
    ).fetchall()
    return rooms, steps


#: Every call the journal can send, by name.
CALLS: Final[dict[str, Callable[..., Any]]] = {
    "open": _insert_room,
    "update": _update_room,
    "close": _close_room,
    "intend": _insert_step,
    "submit": _submit_step,
    "settle": _settle_step,
    "settle+update": _settle_and_update,
    "read": _read_rooms,
}

#: How each write becomes its room's key and rows of the kinds in ``GROUPS``; a
#: call not here (a read) sends its batch record by record.
SHAPES: Final[dict[str, Callable[..., tuple[str, _Rows]]]] = {
    "open": _open_rows,
    "update": _update_rows,
    "close": _close_rows,
    "intend": _intend_rows,
    "submit": _submit_rows,
    "settle": _settle_rows,
    "settle+update": _settle_update_rows,
}


# -- the writer process --------------------------------------------------------------


def frame(message: object) -> bytes:
    """One message as a frame: its length, then its pickle."""
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def unframe(buffer: bytearray) -> Iterator[Any]:
    """Take every whole frame off the front of *buffer*, and yield its message."""
    start = 0
    while len(buffer) - start >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer, start)
        end = start + _HEADER.size + size
        if len(buffer) < end:
            break

        yield pickle.loads(memoryview(buffer)[start + _HEADER.size : end])
        start = end

    del buffer[:start]


class _Input:
    """The journal's frames on a file descriptor, taken whole."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._ready: deque[Any] = deque()
        self.ended = False  # the input ended: the journal's process is gone

    def take(self, max_batch: int) -> tuple[list[Call], bool]:
        """Wait for calls; return those of every waiting whole frame, and stop.

        Frames are taken until *max_batch* calls (or one frame that is larger).
        """
        batch: list[Call] = []
        while not self._ready and not self.ended:
            self._read()

        while self._ready or self._more():
            message = self._ready.popleft()
            if message is None:
                return batch, True

            batch.extend(message)
            if len(batch) >= max_batch:
                break

        return batch, False

    def _more(self) -> bool:
        # Read what is already there, without waiting for more.
        while not self.ended and select.select([self._fd], [], [], 0)[0]:
            self._read()
            if self._ready:
                return True

        return False

    def _read(self) -> None:
        data = os.read(self._fd, 1 << 20)
        if not data:
            self.ended = True
            return

        self._buffer += data
        self._ready.extend(unframe(self._buffer))


def _send(fd: int, message: object) -> None:
    data = memoryview(frame(message))
    while data:
        data = data[os.write(fd, data) :]


def serve(
    path: str,
    synchronous: str,
    max_batch: int,
    *,
    at_once: bool = True,
    discard: bool = False,
    fd_in: int = 0,
    fd_out: int = 1,
) -> None:
    """Be the journal's writer: answer its frames until told to stop."""
    writer = Writer(connect(path, synchronous), at_once=at_once, discard=discard)
    source = _Input(fd_in)
    try:
        stop = False
        while not stop:
            batch, stop = source.take(max_batch)
            if source.ended and not stop:
                return  # the journal's process died: commit nothing more

            answers = writer.commit(batch) if batch else []
            stats = writer.stats(time.process_time())
            _send(fd_out, ("done", answers, stats, writer.error, writer.fallback))
    finally:
        writer.conn.close()


def main(argv: list[str]) -> int:
    """Be the writer process; *argv*: PATH SYNC MAX_BATCH AT_ONCE DISCARD."""
    path, synchronous, max_batch, at_once, discard = argv
    try:
        serve(
            path,
            synchronous,
            int(max_batch),
            at_once=at_once == "1",
            discard=discard == "1",
        )
    except BrokenPipeError:
        return 1  # the journal's process is gone: nobody to tell
    except BaseException:
        with contextlib.suppress(OSError):
            _send(1, ("fatal", traceback.format_exc(limit=8)))

        return 1

    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
