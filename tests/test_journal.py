"""Both journal stores: same behaviour, durability, group commit, schema, secrets."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plyr_rooms import _journal_link, _journal_sqlite, _journal_writer
from plyr_rooms._journal_records import _JWT, _SECRET_KEY, scan_json
from plyr_rooms._journal_sqlite import MIGRATIONS, SCHEMA_VERSION
from plyr_rooms._journal_writer import frame, unframe
from plyr_rooms.errors import InvalidInput
from plyr_rooms.journal import (
    Journal,
    JournalClosed,
    JournaledRoom,
    JournalError,
    JournalVersionError,
    MemoryJournal,
    RoomRecord,
    SQLiteJournal,
    StepRecord,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

# Marked at collection (not only by conftest's late hook) so that anyio's plugin
# keeps this module's other parameters.
pytestmark = pytest.mark.anyio

# Shaped like a real ES256 session JWT (header.payload.signature, base64url).
JWT = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJwbHlySWQiOiJhbGljZSIsIm5vbmNlIjoxfQ"
    ".c2lnbmF0dXJlLW9mLXRoZS1zZXNzaW9uLWp3dA"
)


@pytest.fixture(params=["memory", "sqlite", "sqlite-thread"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    store: MemoryJournal | SQLiteJournal
    if request.param == "memory":
        store = MemoryJournal()
    elif request.param == "sqlite":
        store = SQLiteJournal(tmp_path / "journal.db")
    else:
        store = SQLiteJournal(tmp_path / "journal.db", writer="thread")

    async with store:
        yield store


def room(key: str = "k1", **changes: Any) -> RoomRecord:
    changes.setdefault("players", ("alice", "bob"))
    return RoomRecord(key, "DiceDuel", **changes)


class TestRecords:
    def test_pot_is_plain_decimal_strings(self) -> None:
        record = room(pot={"plyr": "1.500", "gamr": 0, "x": "1E+2"})
        assert record.pot == {"gamr": "0", "plyr": "1.5", "x": "100"}

    def test_players_are_lower_case_ids(self) -> None:
        assert room(players=["Alice"]).players == ("alice",)

    def test_finished_only_when_ended_and_settled(self) -> None:
        assert room(state="ENDED").finished
        assert not room(state="ENDED", unsettled="why").finished
        assert not room(state="PAID").finished

    def test_pending_task_ids(self) -> None:
        entry = JournaledRoom(
            room(),
            (
                StepRecord(1, "create", {}, "t1", "SUCCESS"),
                StepRecord(2, "join", {}, "t2"),
                StepRecord(3, "pay", {}),
            ),
        )
        assert [s.seq for s in entry.pending] == [2, 3]
        assert entry.pending_task_ids == ("t2",)


# Pieces of JSON-ish text: the secret words, their case variants, and the
# characters that match a letter only when case is ignored (U+017F long s,
# U+0131 dotless i, U+0130 dotted I, U+212A Kelvin sign).
SCAN_PIECES = [
    '"', ":", " ", "{", "}", ",", "x", "_", "a", "p", "i",
    "jwt", "JWT", "eyJ", "eYj", "password", "PassWord", "secret", "key", "KEY",
    "api", "API", "word", "cret", "\u017f", "\u0131", "\u0130", "\u212a",
    "eyJhbGciOiJ.eyJ.sig", "pa\u017f\u017fword", "ap\u0131_\u017fecret",
    "api_\u212aey",
]  # fmt: skip


class TestSecretScan:
    @settings(max_examples=500)
    @given(st.lists(st.sampled_from(SCAN_PIECES), max_size=14).map("".join))
    def test_the_quick_check_never_lets_a_secret_through(self, text: str) -> None:
        """The word check before the patterns refuses exactly what they refuse."""
        expected = bool(_JWT.search(text) or _SECRET_KEY.search(text))
        try:
            scan_json(text, where="x")
        except InvalidInput:
            refused = True
        else:
            refused = False

        assert refused == expected

    @pytest.mark.parametrize(
        "text",
        [
            '{"pa\u017f\u017fword":1}',
            '{"ap\u0131_\u017fecret":1}',
            '{"api_\u212aey":1}',
            '{"sessionJWT":1}',
        ],
    )
    def test_case_folded_secret_keys_are_refused(self, text: str) -> None:
        with pytest.raises(InvalidInput, match="secret-named key"):
            scan_json(text, where="room")


class TestBothStores:
    async def test_a_walk_is_read_back(self, journal: Journal) -> None:
        await journal.room_opened(room())
        seq = await journal.intend("k1", "create", {"expiresIn": 60})
        await journal.submitted("k1", seq, "100-0")
        pending = await journal.unfinished()
        assert pending[0].pending_task_ids == ("100-0",)

        await journal.settled("k1", seq, "SUCCESS", {"roomId": "7"})
        await journal.room_updated(room(state="CREATED", room_id="7"))
        [entry] = await journal.unfinished()
        assert entry.room.room_id == "7"
        assert entry.steps == (
            StepRecord(
                seq, "create", {"expiresIn": 60}, "100-0", "SUCCESS", {"roomId": "7"}
            ),
        )

    async def test_an_outcome_carries_the_room_record(self, journal: Journal) -> None:
        await journal.room_opened(room())
        seq = await journal.intend("k1", "create", {})
        created = room(state="CREATED", room_id="7")
        await journal.settled("k1", seq, "SUCCESS", {"roomId": "7"}, room=created)
        [entry] = await journal.unfinished()
        assert entry.room == created
        assert entry.steps[0].outcome == "SUCCESS"
        assert entry.after_record == ()

    @pytest.mark.parametrize(
        ("record", "error"),
        [
            (room("k2", state="CREATED"), InvalidInput),  # another room's record
            (room(state="CREATED", data={"jwt": "x"}), InvalidInput),  # a secret
        ],
        ids=["other-room", "secret"],
    )
    async def test_a_refused_room_record_writes_no_outcome(
        self, journal: Journal, record: RoomRecord, error: type[Exception]
    ) -> None:
        await journal.room_opened(room())
        seq = await journal.intend("k1", "create", {})
        with pytest.raises(error):
            await journal.settled("k1", seq, "SUCCESS", room=record)

        [entry] = await journal.unfinished()
        assert entry.room == room()
        assert entry.pending[0].seq == seq

    async def test_steps_settled_after_the_record_are_unapplied(
        self, journal: Journal
    ) -> None:
        await journal.room_opened(room())
        first = await journal.intend("k1", "join", {})
        await journal.settled("k1", first, "SUCCESS")
        await journal.room_updated(room(state="JOINED"))
        second = await journal.intend("k1", "pay", {})
        await journal.settled("k1", second, "SUCCESS")
        [entry] = await journal.unfinished()
        assert entry.after_record == (second,)
        assert [s.seq for s in entry.unapplied] == [second]

        await journal.room_updated(room(state="PAID"))
        [entry] = await journal.unfinished()
        assert entry.unapplied == ()

    async def test_finished_and_closed_rooms_are_not_unfinished(
        self, journal: Journal
    ) -> None:
        for key in ("a", "b", "c"):
            await journal.room_opened(room(key))

        await journal.room_updated(room("a", state="ENDED"))
        await journal.room_closed("b", "never created")
        assert [e.room.key for e in await journal.unfinished()] == ["c"]
        everything = await journal.rooms(include_finished=True)
        assert sorted(e.room.key for e in everything) == ["a", "b", "c"]

    async def test_sequence_numbers_increase(self, journal: Journal) -> None:
        await journal.room_opened(room("a"))
        await journal.room_opened(room("b"))
        seqs = [await journal.intend(k, "join", {}) for k in ("a", "b", "a")]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 3

    async def test_decimal_amounts_are_kept_as_strings(self, journal: Journal) -> None:
        from decimal import Decimal

        await journal.room_opened(room())
        await journal.intend("k1", "pay", {"amounts": [Decimal("0.10")]})
        [entry] = await journal.unfinished()
        assert entry.steps[0].request == {"amounts": ["0.10"]}

    @pytest.mark.parametrize(
        "call",
        [
            lambda j: j.room_opened(room()),
            lambda j: j.intend("nope", "join", {}),
            lambda j: j.submitted("k1", 999, "1-0"),
            lambda j: j.settled("k1", 999, "SUCCESS"),
            lambda j: j.room_updated(room("nope")),
            lambda j: j.room_closed("nope"),
        ],
        ids=["open-twice", "intend", "submitted", "settled", "updated", "closed"],
    )
    async def test_unknown_or_repeated_records_are_refused(
        self, journal: Journal, call: Callable[[Journal], Any]
    ) -> None:
        await journal.room_opened(room())
        with pytest.raises(JournalError):
            await call(journal)

        await journal.intend("k1", "join", {})  # the store goes on working

    async def test_a_task_id_is_written_once(self, journal: Journal) -> None:
        await journal.room_opened(room())
        seq = await journal.intend("k1", "pay", {})
        await journal.submitted("k1", seq, "1-0")
        await journal.submitted("k1", seq, "1-0")  # the same id again is fine
        with pytest.raises(JournalError, match="already has task id"):
            await journal.submitted("k1", seq, "2-0")

        await journal.settled("k1", seq, "FAILED")
        with pytest.raises(JournalError, match="already settled"):
            await journal.submitted("k1", seq, "1-0")

    @pytest.mark.parametrize(
        "call",
        [
            lambda j: j.intend("k1", "join", {"sessionJwts": ["x"]}),
            lambda j: j.intend("k1", "join", {"ids": [JWT]}),
            lambda j: j.intend("k1", "join", {"note": f"Bearer {JWT}"}),
            lambda j: j.room_updated(room(players=(JWT,))),
            lambda j: j.room_updated(room(data={"player": {"jwt": "x"}})),
            lambda j: j.room_updated(room(unsettled=f"jwt {JWT} lapsed")),
            lambda j: j.settled("k1", 1, "FAILED", {"body": {"t": JWT}}),
        ],
    )
    async def test_secrets_are_refused(
        self, journal: Journal, call: Callable[[Journal], Any]
    ) -> None:
        await journal.room_opened(room())
        await journal.intend("k1", "join", {})
        with pytest.raises(InvalidInput) as caught:
            await call(journal)

        assert JWT not in str(caught.value)

    async def test_non_json_requests_are_refused(self, journal: Journal) -> None:
        await journal.room_opened(room())
        with pytest.raises(InvalidInput):
            await journal.intend("k1", "join", {"when": object()})

    async def test_closed_journal_refuses_calls(self, journal: Journal) -> None:
        await journal.aclose()
        with pytest.raises(JournalClosed):
            await journal.room_opened(room())


class TestSQLite:
    async def test_records_survive_close_and_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        async with SQLiteJournal(path) as journal:
            await journal.room_opened(room(pot={"plyr": "2"}, data={"walk": "atomic"}))
            seq = await journal.intend("k1", "pay", {"amounts": ["2"]})
            await journal.submitted("k1", seq, "5-0")
            before = await journal.rooms(include_finished=True)

        async with SQLiteJournal(path) as journal:
            assert await journal.rooms(include_finished=True) == before
            # Sequence numbers go on after the ones already in the file.
            assert await journal.intend("k1", "earn", {}) > seq

    async def test_many_writers_share_transactions(self, tmp_path: Path) -> None:
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            await asyncio.gather(
                *(journal.room_opened(room(f"r{i}")) for i in range(500))
            )
            stats = journal.stats

        assert stats.writes == 500
        assert stats.transactions < 50
        assert stats.largest_batch > 10

    async def test_max_batch_one_is_one_transaction_per_write(
        self, tmp_path: Path
    ) -> None:
        async with SQLiteJournal(tmp_path / "j.db", max_batch=1) as journal:
            await asyncio.gather(
                *(journal.room_opened(room(f"r{i}")) for i in range(50))
            )
            assert journal.stats.transactions == 50

    async def test_a_refused_record_fails_alone_in_its_batch(
        self, tmp_path: Path
    ) -> None:
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            calls: list[Coroutine[Any, Any, object]] = [
                journal.room_opened(room(f"r{i}")) for i in range(20)
            ]
            calls.append(journal.intend("missing", "join", {}))
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert [type(r) for r in results].count(JournalError) == 1
            assert len(await journal.unfinished()) == 20

    async def test_a_cancelled_writer_does_not_wedge_the_store(
        self, tmp_path: Path
    ) -> None:
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            task = asyncio.ensure_future(journal.room_opened(room("a")))
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await journal.room_opened(room("b"))
            keys = {e.room.key for e in await journal.unfinished()}
            assert "b" in keys

    async def test_newer_schema_is_refused_and_left_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        async with SQLiteJournal(path) as journal:
            await journal.room_opened(room())

        with sqlite3.connect(path) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

        conn.close()
        before = path.read_bytes()
        with pytest.raises(JournalVersionError, match="newer plyr-rooms") as caught:
            SQLiteJournal(path)

        assert caught.value.found == SCHEMA_VERSION + 1
        assert caught.value.supported == SCHEMA_VERSION
        assert path.read_bytes() == before

    async def test_an_older_file_is_migrated(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        async with SQLiteJournal(path) as journal:
            await journal.room_opened(room())

        def add_column(conn: sqlite3.Connection) -> None:
            conn.execute("ALTER TABLE rooms ADD COLUMN note TEXT")

        migrations = (*MIGRATIONS, add_column)
        async with SQLiteJournal(path, migrations=migrations) as journal:
            assert [e.room.key for e in await journal.unfinished()] == ["k1"]

        with sqlite3.connect(path) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            columns = [row[1] for row in conn.execute("PRAGMA table_info(rooms)")]

        conn.close()
        assert version == SCHEMA_VERSION + 1
        assert "note" in columns

    def test_a_file_that_is_not_a_journal_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        path.write_bytes(b"certainly not SQLite " * 100)
        with pytest.raises(JournalError, match="not a plyr-rooms journal"):
            SQLiteJournal(path)

    def test_bad_options_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInput):
            SQLiteJournal(tmp_path / "j.db", synchronous="OFF")

        with pytest.raises(InvalidInput):
            SQLiteJournal(tmp_path / "j.db", max_batch=0)

        with pytest.raises(InvalidInput):
            SQLiteJournal(tmp_path / "j.db", writer="fork")

    async def test_no_secret_reaches_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        async with SQLiteJournal(path) as journal:
            await journal.room_opened(room())
            seq = await journal.intend("k1", "join", {"plyrIds": ["alice"]})
            for call in (
                journal.intend("k1", "join", {"sessionJwts": [JWT]}),
                journal.settled("k1", seq, "SUCCESS", {"echo": JWT}),
                journal.room_updated(room(players=("alice", JWT))),
            ):
                with pytest.raises(InvalidInput):
                    await call

            await journal.settled("k1", seq, "SUCCESS")
            # While open, the records sit in the WAL file; after close, in the db.
            open_bytes = [
                await read_all(tmp_path, name) for name in ("j.db", "j.db-wal")
            ]

        closed_bytes = await read_all(tmp_path, "j.db")
        assert b"alice" in open_bytes[1]
        for data in (*open_bytes, closed_bytes):
            assert JWT.encode() not in data
            assert JWT.split(".")[2].encode() not in data


class TestWriterProcess:
    """The writer as a child process: its death, its end, its one event loop."""

    async def test_a_dead_writer_fails_what_waits_and_refuses_more(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "j.db"
        async with SQLiteJournal(path) as journal:
            await journal.room_opened(room("a"))
            waiting = asyncio.ensure_future(journal.room_opened(room("b")))
            await asyncio.sleep(0)  # b's record is in the frame for the writer
            writer = journal._link._proc  # type: ignore[attr-defined]
            writer.kill()
            writer.wait()
            with pytest.raises(JournalError, match=r"writer .* stopped: killed by si"):
                await waiting

            with pytest.raises(JournalError, match="stopped"):
                await journal.room_opened(room("c"))

            with pytest.raises(JournalError, match="stopped"):
                await journal.submitted("a", 1, "7-0")

        async with SQLiteJournal(path) as journal:
            keys = [e.room.key for e in await journal.rooms(include_finished=True)]
            assert keys == ["a"]

    async def test_a_writer_that_cannot_start_says_why(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        missing = tmp_path / "no-such-writer.py"
        monkeypatch.setattr(_journal_link, "_WRITER_FILE", str(missing))
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            with pytest.raises(JournalError, match="no-such-writer"):
                await journal.room_opened(room("a"))

    @pytest.mark.parametrize("stop", [True, False])
    def test_the_writer_commits_nothing_after_its_input_ends_unasked(
        self, tmp_path: Path, stop: bool
    ) -> None:
        # The journal's process died (its end of the pipe closed, no stop
        # frame): the frames it sent are not committed, as with a thread.
        path = str(tmp_path / "j.db")
        SQLiteJournal(path, writer="thread").close_nowait()
        row = (*_journal_sqlite._room_row(room("a")), 1, 0.0)
        to_writer, from_journal = os.pipe()
        to_journal, from_writer = os.pipe()
        os.write(from_journal, frame([("open", (row,))]))
        if stop:
            os.write(from_journal, frame(None))

        os.close(from_journal)
        _journal_writer.serve(path, "FULL", 64, fd_in=to_writer, fd_out=from_writer)
        os.close(from_writer)
        answers = bytearray(os.read(to_journal, 1 << 16))
        os.close(to_writer)
        os.close(to_journal)
        with sqlite3.connect(path) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM rooms").fetchone()

        conn.close()
        assert count == (1 if stop else 0)
        replies = list(unframe(answers))
        assert [reply[1] for reply in replies] == ([[(True, None)]] if stop else [])

    async def test_a_journal_serves_one_event_loop(self, tmp_path: Path) -> None:
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            await journal.room_opened(room("a"))
            elsewhere = journal.room_opened(room("b"))
            with pytest.raises(JournalError, match="another event loop"):
                await anyio.to_thread.run_sync(asyncio.run, elsewhere)

            assert len(await journal.unfinished()) == 1

    async def test_the_writer_has_a_process_group_of_its_own(
        self, tmp_path: Path
    ) -> None:
        # A Ctrl-C at the terminal goes to the foreground process group: the
        # game server may drain its rooms, and its writer must outlive that.
        async with SQLiteJournal(tmp_path / "j.db") as journal:
            writer = journal._link._proc  # type: ignore[attr-defined]
            assert os.getpgid(writer.pid) == writer.pid != os.getpgid(0)

    def test_a_journal_never_closed_lets_its_writer_go(self, tmp_path: Path) -> None:
        journal = SQLiteJournal(tmp_path / "j.db")
        writer = journal._link._proc  # type: ignore[attr-defined]
        del journal
        gc.collect()
        assert writer.returncode == 0


async def read_all(directory: Path, name: str) -> bytes:
    return await anyio.Path(directory / name).read_bytes()


# A simple model of the journal's rules, to check both stores against.


@attrs.define
class Model:
    rooms: dict[str, RoomRecord] = attrs.Factory(dict)
    closed: set[str] = attrs.Factory(set)
    steps: dict[str, dict[int, StepRecord]] = attrs.Factory(dict)
    seqs: list[tuple[str, int]] = attrs.Factory(list)
    # One clock for "room record written" and "step outcome written".
    clock: int = 0
    stamps: dict[str, int] = attrs.Factory(dict)
    settled_at: dict[int, int] = attrs.Factory(dict)

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def view(self, *, everything: bool) -> dict[str, JournaledRoom]:
        return {
            k: JournaledRoom(
                r,
                tuple(self.steps[k][s] for s in sorted(self.steps[k])),
                tuple(
                    s
                    for s in sorted(self.steps[k])
                    if self.settled_at.get(s, 0) > self.stamps[k]
                ),
            )
            for k, r in self.rooms.items()
            if everything or (k not in self.closed and not r.finished)
        }


KEYS = ("a", "b", "c")
STATES = ("NEW", "CREATED", "PAID", "ENDED")
# The calls other than open, as the model test and the batch tests draw them.
_WRITES = (
    st.tuples(
        st.just("update"),
        st.sampled_from(KEYS),
        st.sampled_from(STATES),
        st.none() | st.just("task lost"),
    ),
    st.tuples(st.just("close"), st.sampled_from(KEYS)),
    st.tuples(
        st.just("intend"), st.sampled_from(KEYS), st.sampled_from(["join", "pay"])
    ),
    st.tuples(st.just("submit"), st.integers(0, 6), st.sampled_from(["1-0", "2-0"])),
    st.tuples(
        st.just("settle"),
        st.integers(0, 6),
        st.sampled_from(["SUCCESS", "FAILED"]),
        st.none() | st.sampled_from(STATES),  # the room's record with it
    ),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.sampled_from(KEYS), st.sampled_from(STATES)),
        *_WRITES,
        st.tuples(st.just("reopen")),
    ),
    max_size=25,
)


async def apply(journal: Journal, model: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    record: RoomRecord | None = None
    if kind == "open":
        record = room(op[1], state=op[2])
        expect_error = op[1] in model.rooms
        call: Any = journal.room_opened(record)
    elif kind == "update":
        record = room(op[1], state=op[2], unsettled=op[3])
        expect_error = op[1] not in model.rooms
        call = journal.room_updated(record)
    elif kind == "close":
        expect_error = op[1] not in model.rooms
        call = journal.room_closed(op[1])
    elif kind == "intend":
        expect_error = op[1] not in model.rooms
        call = journal.intend(op[1], op[2], {"plyrIds": ["alice"]})
    else:
        key, seq = model.seqs[op[1]] if op[1] < len(model.seqs) else ("a", 10_000)
        step = model.steps.get(key, {}).get(seq)
        if kind == "submit":
            expect_error = (
                step is None
                or step.outcome is not None
                or (step.task_id not in (None, op[2]))
            )
            call = journal.submitted(key, seq, op[2])
        else:
            expect_error = step is None
            record = None if op[3] is None else room(key, state=op[3])
            call = journal.settled(key, seq, op[2], {"n": 1}, room=record)

    if expect_error:
        with pytest.raises(JournalError):
            await call
        return

    result = await call
    if kind in ("open", "update"):
        assert record is not None
        model.rooms[op[1]] = record
        model.stamps[op[1]] = model.tick()
        model.steps.setdefault(op[1], {})
    elif kind == "close":
        model.closed.add(op[1])
    elif kind == "intend":
        model.steps[op[1]][result] = StepRecord(result, op[2], {"plyrIds": ["alice"]})
        model.seqs.append((op[1], result))
    elif kind == "submit":
        assert step is not None
        model.steps[key][seq] = attrs.evolve(step, task_id=op[2])
    else:
        assert step is not None
        model.steps[key][seq] = attrs.evolve(step, outcome=op[2], detail={"n": 1})
        model.settled_at[seq] = model.tick()
        if record is not None:
            model.rooms[key] = record
            model.stamps[key] = model.tick()


@pytest.mark.parametrize("store", ["memory", "process", "thread"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=ops)
async def test_stores_follow_the_model(
    store: str, calls: list[tuple[Any, ...]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "j.db"
        journal: MemoryJournal | SQLiteJournal = (
            MemoryJournal() if store == "memory" else SQLiteJournal(path, writer=store)
        )
        model = Model()
        try:
            for op in calls:
                if op[0] == "reopen":
                    if isinstance(journal, SQLiteJournal):
                        await journal.aclose()
                        journal = SQLiteJournal(path, writer=store)
                    continue

                await apply(journal, model, op)

            every = {e.room.key: e for e in await journal.rooms(include_finished=True)}
            open_ = {e.room.key: e for e in await journal.unfinished()}
            assert every == model.view(everything=True)
            assert open_ == model.view(everything=False)
        finally:
            await journal.aclose()


# A batch in one statement (the triggers) against the same calls record by record.


async def _one_batch(
    journal: SQLiteJournal, calls: list[Callable[[], Any]]
) -> list[Any]:
    # Every call is made in one pass of the event loop, so that all of them
    # reach the writer in one frame, in call order, and share one transaction.
    async def made(call: Callable[[], Awaitable[Any]]) -> Any:
        # Called when its task runs (submitted queues when called, the others
        # when their coroutine runs): all of these tasks run in one pass.
        return await call()

    before = journal.stats.transactions
    tasks = [asyncio.ensure_future(made(call)) for call in calls]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert journal.stats.transactions <= before + 1
    return [
        (type(r).__name__, str(r)) if isinstance(r, BaseException) else r
        for r in results
    ]


def _batch_calls(
    journal: SQLiteJournal,
    ops: list[tuple[Any, ...]],
    intents: list[tuple[str, int]],
) -> list[Callable[[], Awaitable[Any]]]:
    # The model test's operations as calls; "submit i" and "settle i" name the
    # i-th intend so far (an intend takes its sequence number when called,
    # refused or not), or a step that does not exist.
    calls: list[Callable[[], Awaitable[Any]]] = []
    for op in ops:
        kind = op[0]
        if kind == "open":
            record = room(op[1], state=op[2], data={"note": op[3]})
            calls.append(functools.partial(journal.room_opened, record))
        elif kind == "update":
            record = room(op[1], state=op[2], unsettled=op[3])
            calls.append(functools.partial(journal.room_updated, record))
        elif kind == "close":
            calls.append(functools.partial(journal.room_closed, op[1], "by hand"))
        elif kind == "intend":
            intents.append((op[1], len(intents) + 1))
            request = {"plyrIds": ["alice"]}
            calls.append(functools.partial(journal.intend, op[1], op[2], request))
        elif kind == "read":
            calls.append(functools.partial(journal.rooms, include_finished=True))
        else:
            key, seq = intents[op[1]] if op[1] < len(intents) else ("a", 10_000)
            if kind == "submit":
                calls.append(functools.partial(journal.submitted, key, seq, op[2]))
            else:
                with_room = None if op[3] is None else room(key, state=op[3])
                settle = functools.partial(journal.settled, key, seq, op[2], {"n": 1})
                calls.append(functools.partial(settle, room=with_room))

    return calls


batch_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("open"),
            st.sampled_from(KEYS),
            st.sampled_from(STATES),
            st.sampled_from(["", "\x00", 'é \\ " ñ', "a\x00b"]),
        ),
        *_WRITES,
        st.tuples(st.just("read")),
    ),
    max_size=30,
)


@st.composite
def valid_batches(
    draw: st.DrawFn, size: int = 30
) -> list[tuple[list[tuple[Any, ...]], list[str], bool]]:
    # Batches of calls that the journal accepts, in order (each drawn from what
    # the calls before it made true), now and then with one it refuses. Some
    # batches touch each room at most once (those go in a few statements).
    # Each batch comes with the room of each of its calls ("" for a read), and
    # whether it holds a refused call.
    opened: list[str] = []
    steps: list[list[Any]] = []  # [room, task id or None, settled]
    batches = []
    for _ in range(3):
        distinct = draw(st.integers(0, 3)) > 0
        touched: list[str] = []
        batch: list[tuple[Any, ...]] = []
        refused = False
        for _ in range(draw(st.integers(0, size))):
            free = [k for k in opened if not (distinct and k in touched)]
            waiting = [
                i
                for i, (k, task, done) in enumerate(steps)
                if task is None and not done and not (distinct and k in touched)
            ]
            known = [i for i, s in enumerate(steps) if s[0] in free]
            done = [
                i
                for i, (k, task, settled) in enumerate(steps)
                if (task is not None or settled) and not (distinct and k in touched)
            ]
            kinds = ["open", "open"] if len(opened) < 20 else []
            kinds += ["update", "close", "intend", "intend"] if free else []
            kinds += ["submit", "submit"] if waiting else []
            kinds += ["settle", "settle"] if known else []
            if not kinds:  # every room is in this batch already
                break

            # Reads and refusals are rare: either sends its batch record by record.
            special = draw(st.integers(0, 24))
            if special == 0:
                kind = "read"
            elif special == 1:
                kind = "refused"
            elif special in (2, 3) and done:
                kind = "resubmit"
            else:
                kind = draw(st.sampled_from(kinds))
            if kind == "open":
                key = "abcdefghijklmnopqrst"[len(opened)]
                note = draw(st.sampled_from(["", 'é \\ " ñ', "a\x00b"]))
                batch.append(("open", key, draw(st.sampled_from(STATES)), note))
                opened.append(key)
            elif kind in ("update", "close", "intend"):
                key = draw(st.sampled_from(free))
                if kind == "update":
                    batch.append(("update", key, draw(st.sampled_from(STATES)), None))
                elif kind == "close":
                    batch.append(("close", key))
                else:
                    batch.append(("intend", key, "pay"))
                    steps.append([key, None, False])
            elif kind == "submit":
                index = draw(st.sampled_from(waiting))
                key = steps[index][0]
                steps[index][1] = str(index)
                batch.append(("submit", index, str(index)))
            elif kind == "settle":
                index = draw(st.sampled_from(known))
                key = steps[index][0]
                steps[index][2] = True
                state = draw(st.none() | st.sampled_from(STATES))
                batch.append(("settle", index, "SUCCESS", state))
            elif kind == "refused":
                key = "a"  # the room _batch_calls gives a step it does not know
                batch.append(("submit", 99, "x"))
                refused = True
            elif kind == "resubmit":  # a second task id, or one after the outcome
                index = draw(st.sampled_from(done))
                key = steps[index][0]
                batch.append(("submit", index, "another"))
                refused = True
            else:
                key = ""
                batch.append(("read",))

            touched.append(key)

        batches.append((batch, touched, refused))

    return batches


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _both_ways(batches: list[list[tuple[Any, ...]]]) -> list[str]:
    # Run the batches on a journal writing each batch at once and on one writing
    # record by record; both must give the same results and the same file.
    lines = _Lines()
    logger = logging.getLogger("plyr_rooms._journal_sqlite")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    try:
        with tempfile.TemporaryDirectory() as directory:
            outcomes = []
            for at_once in (True, False):
                path = Path(directory) / f"{at_once}.db"
                async with SQLiteJournal(path, at_once=at_once) as journal:
                    assert journal._at_once is at_once
                    intents: list[tuple[str, int]] = []
                    results = [
                        await _one_batch(journal, _batch_calls(journal, ops, intents))
                        for ops in batches
                    ]
                    every = await journal.rooms(include_finished=True)
                    outcomes.append((results, every, journal.stats.writes))

        assert outcomes[0] == outcomes[1]
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)

    return [line for line in lines.lines if "record by record" in line]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=valid_batches())
async def test_a_batch_in_few_statements_is_the_batch_record_by_record(
    batches: list[tuple[list[tuple[Any, ...]], list[str], bool]],
) -> None:
    fallbacks = await _both_ways([calls for calls, _, _ in batches])
    # A batch of writes of distinct rooms is tried in a few statements, and goes
    # record by record only if it holds a refused record; a batch holding a
    # read or two records of one room goes record by record from the start.
    tried = [
        refused
        for calls, rooms, refused in batches
        if ("read",) not in calls and len(set(rooms)) == len(rooms)
    ]
    assert len(fallbacks) == sum(tried)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=batch_ops, second=batch_ops)
async def test_a_batch_with_refusals_is_the_batch_record_by_record(
    first: list[tuple[Any, ...]], second: list[tuple[Any, ...]]
) -> None:
    await _both_ways([first, second])


async def test_a_batch_of_writes_is_one_statement(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="plyr_rooms")
    async with SQLiteJournal(tmp_path / "j.db") as journal:
        ops: list[tuple[Any, ...]] = [("open", "a", "NEW", ""), ("intend", "a", "pay")]
        ops += [("submit", 0, "1")]
        ops += [("settle", 0, "SUCCESS", "PAID"), ("update", "a", "ENDED", None)]
        results = await _one_batch(journal, _batch_calls(journal, ops, []))
        assert results == [None, 1, None, None, None]
        assert journal.stats.transactions == 1
        (entry,) = await journal.rooms(include_finished=True)
        assert entry.room.state == "ENDED"
        assert entry.steps == (
            StepRecord(1, "pay", {"plyrIds": ["alice"]}, "1", "SUCCESS", {"n": 1}),
        )

    assert "record by record" not in caplog.text
