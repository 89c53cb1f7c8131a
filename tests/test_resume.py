"""Crash and resume: a game server SIGKILLed anywhere never pays twice.

A child process (tests/_crash_child.py) runs rooms against a simulator that lives
in this process, on a SQLite journal, and kills itself at a seeded point: right
after an intent is durable (before the request is sent), after a request was
sent but before its task id is journaled, after an outcome is journaled but
before the room's record is, inside hooks, and so on. This process then resumes
from the journal and checks, against the simulator's own ledger and task list:

- no pay-type or earn-type task was submitted twice for the same room and players;
- every journaled room ended, was closed (never created), or is reported
  unsettled with a reason; every room left open on the simulator is one of those;
- tokens are conserved, and rooms that ended hold nothing;
- no session JWT reached the journal file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sqlite3
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest
from _crash_child import SCHEDULE, CrashDuel

from plyr_rooms._cli_rooms import add_parser, unsettled_reason
from plyr_rooms._journal_sqlite import SCHEMA_VERSION
from plyr_rooms._resume import (
    MONEY_STEPS,
    ResumeReport,
    reconcile_rooms,
    resume,
    settle_step,
)
from plyr_rooms.client import PlyrClient
from plyr_rooms.errors import PlyrError, TaskFailed, TaskLost, TaskTimeout
from plyr_rooms.journal import (
    JournaledRoom,
    MemoryJournal,
    RoomRecord,
    SQLiteJournal,
    StepRecord,
)
from plyr_rooms.manager import RoomManager
from plyr_rooms.poller import TaskPoller
from plyr_rooms.simulator import Faults, Latency, SimConfig, Simulator
from plyr_rooms.tasks import TaskMethod, TaskRef, TaskResult, TaskState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from plyr_rooms.simulator import LedgerSnapshot, SimPlayer

CHILD = Path(__file__).with_name("_crash_child.py")
PAY_METHODS = {TaskMethod.PAY, TaskMethod.JOIN_PAY, TaskMethod.CREATE_JOIN_PAY}
EARN_METHODS = {TaskMethod.EARN, TaskMethod.EARN_LEAVE, TaskMethod.EARN_LEAVE_END}
REVERT = "Transaction Receipt Failed"
ROOMS_PER_RUN = 30
PLAYERS = 12

# Where the child dies: (journal call or "hook", before or after its write).
KILL_POINTS = [
    ("intend", "after"),  # intent durable, request not sent
    ("submitted", "before"),  # request sent, task id not journaled
    ("submitted", "after"),  # task id journaled, outcome not known
    ("settled", "before"),  # outcome known, neither it nor the room durable
    ("settled", "after"),  # outcome and room record journaled, hooks not run
    ("hook", "before"),  # inside a hook, after the step was journaled
    ("intend", "before"),  # before the intent is durable
    ("room_opened", "after"),  # a room journaled, nothing sent
]
# Where in the run: the Nth call of that kind, seeded, once early (many rooms
# still creating) and once late (rooms paying, earning, leaving). A run makes one
# room_opened per room and at least two (usually four or more) of the others.
_RNG = random.Random(20261203)
SCENARIOS = [
    (kind, when, _RNG.randint(*span))
    for kind, when in KILL_POINTS
    for span in (
        [(2, ROOMS_PER_RUN - 2)]
        if kind == "room_opened"
        else [(2, ROOMS_PER_RUN), (ROOMS_PER_RUN + 1, 2 * ROOMS_PER_RUN + 20)]
    )
]


def fast_sim(**config: Any) -> Simulator:
    settings: dict[str, Any] = {
        "latency": Latency.uniform(0.002, 0.02),
        "workers": None,
        "sync_interval": 0.01,
        "retry_sleep_scale": 0.001,
        **config,
    }
    return Simulator(SimConfig(**settings))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with fast_sim(seed=7) as running:
        yield running


def manager_on(
    sim: Simulator, client: PlyrClient, journal: SQLiteJournal
) -> RoomManager:
    return RoomManager(
        client,
        journal=journal,
        task_timeout=10.0,
        poller_options={"schedule": SCHEDULE, "requests_per_second": 5000.0},
    )


async def run_child(
    sim: Simulator,
    players: list[SimPlayer],
    journal: Path,
    kill: dict[str, Any],
    *,
    resume: bool = False,
) -> int:
    config = {
        "resume": resume,
        "url": sim.url,
        "api_key": sim.api_key,
        "api_secret": sim.api_secret,
        "players": [[p.plyr_id, p.session_jwt] for p in players],
        "journal": str(journal),
        "rooms": ROOMS_PER_RUN,
        "seed": kill.get("n", 0),
        "kill": kill,
    }
    path = journal.with_suffix(".resume.json" if resume else ".json")
    await anyio.Path(path).write_text(json.dumps(config))
    with anyio.fail_after(90):
        done = await anyio.run_process(
            [sys.executable, str(CHILD), str(path)], check=False
        )

    return done.returncode


async def resume_from(
    sim: Simulator, players: list[SimPlayer], journal_path: Path
) -> tuple[ResumeReport, list[JournaledRoom]]:
    async with (
        PlyrClient(sim.url, sim.api_key, sim.api_secret, retry_backoff=0.01) as client,
        SQLiteJournal(journal_path) as journal,
    ):
        async with manager_on(sim, client, journal) as manager:
            report = await resume(manager, players=players, task_wait=10.0)

        everything = await journal.rooms(include_finished=True)

    return report, everything


async def settled_ledger(sim: Simulator) -> LedgerSnapshot:
    # Tasks sent by the child just before it died finish on their own: wait for
    # each through a poller, whatever its outcome.
    open_tasks = [t for t in sim.ledger().tasks if t.completed_at is None]
    async with (
        PlyrClient(sim.url, sim.api_key, sim.api_secret) as client,
        TaskPoller(client, schedule=SCHEDULE, requests_per_second=5000.0) as poller,
    ):
        for task in open_tasks:
            with contextlib.suppress(PlyrError):
                await poller.wait(TaskRef(task.task_id, task.method), timeout=30)

    return sim.ledger()


async def money_tasks(
    sim: Simulator, ledger: LedgerSnapshot
) -> Counter[tuple[Any, ...]]:
    """Count pay-type and earn-type tasks per (room, kind, players), all outcomes."""
    counts: Counter[tuple[Any, ...]] = Counter()
    async with PlyrClient(sim.url, sim.api_key, sim.api_secret) as client:
        for task in ledger.tasks:
            kind = "pay" if task.method in PAY_METHODS else "earn"
            if task.method not in PAY_METHODS | EARN_METHODS:
                continue

            # Reverted ones count too: nothing here reverts unless sent twice.
            result = await client.task_status(task.task_id)
            body = result.body or {}
            room = body.get("roomId") or result.room_id or task.task_id
            ids = tuple(sorted(body.get("plyrIds", ())))
            counts[(room, kind, ids)] += 1

    return counts


def check_resumed(
    report: ResumeReport, everything: list[JournaledRoom], ledger: LedgerSnapshot
) -> None:
    outcomes = {r.key: r for r in report.rooms}
    for entry in everything:
        key = entry.room.key
        if entry.room.finished:
            continue

        assert key in outcomes, f"room {key} neither ended nor resumed"
        resumed = outcomes[key]
        assert resumed.outcome in ("closed", "unsettled"), resumed
        if resumed.outcome == "unsettled":
            assert resumed.reason, resumed

    known = {e.room.room_id for e in everything if e.room.room_id is not None}
    unsettled_ids = {r.room_id for r in report.unsettled}
    orphans = [
        room_id
        for room_id, room in ledger.rooms.items()
        if not room.ended and room_id not in unsettled_ids
    ]
    # A room open on the simulator is unsettled in the journal, or it was made
    # by a create whose task id was never journaled (its room is unsettled too).
    unknown_creates = [r for r in report.unsettled if r.room_id is None]
    assert all(room_id not in known for room_id in orphans), orphans
    assert len(orphans) <= len(unknown_creates)
    for room_id, room in ledger.rooms.items():
        if room.ended:
            assert not any(room.funds.values()), (room_id, room)


@pytest.mark.parametrize(("kind", "when", "nth"), SCENARIOS)
async def test_killed_server_resumes_without_paying_twice(
    sim: Simulator, tmp_path: Path, kind: str, when: str, nth: int
) -> None:
    """SIGKILL at a seeded point, then resume: no double payment, nothing lost."""
    players = await sim.add_players(PLAYERS, balance=1000, allowance=1000)
    before = sim.ledger().total("plyr")
    journal = tmp_path / "journal.sqlite3"
    code = await run_child(
        sim, players, journal, {"kind": kind, "when": when, "n": nth}
    )
    assert code == -signal.SIGKILL, f"the child was not killed (exit {code})"

    report, everything = await resume_from(sim, players, journal)
    ledger = await settled_ledger(sim)
    twice = {k: n for k, n in (await money_tasks(sim, ledger)).items() if n > 1}
    assert not twice, f"submitted more than once: {twice}"
    check_resumed(report, everything, ledger)
    assert ledger.total("plyr") == before
    assert report.rooms, "the kill point left nothing to resume"
    data = await anyio.Path(journal).read_bytes()
    for player in players:
        assert player.session_jwt.encode() not in data


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("submitted", "after", 45), ("settled", "after", 5)),
        (("hook", "before", 70), ("room_updated", "before", 3)),
    ],
)
async def test_killed_again_while_resuming(
    sim: Simulator,
    tmp_path: Path,
    first: tuple[str, str, int],
    second: tuple[str, str, int],
) -> None:
    """A server that dies while resuming is resumed again: still nothing twice."""
    players = await sim.add_players(PLAYERS, balance=1000, allowance=1000)
    before = sim.ledger().total("plyr")
    journal = tmp_path / "journal.sqlite3"
    kill = dict(zip(("kind", "when", "n"), first, strict=True))
    assert await run_child(sim, players, journal, kill) == -signal.SIGKILL
    kill = dict(zip(("kind", "when", "n"), second, strict=True))
    code = await run_child(sim, players, journal, kill, resume=True)
    assert code == -signal.SIGKILL, f"the resuming child was not killed ({code})"

    report, everything = await resume_from(sim, players, journal)
    ledger = await settled_ledger(sim)
    twice = {k: n for k, n in (await money_tasks(sim, ledger)).items() if n > 1}
    assert not twice, f"submitted more than once: {twice}"
    check_resumed(report, everything, ledger)
    assert ledger.total("plyr") == before


async def test_failed_but_executed_is_left_unsettled_not_paid_again(
    tmp_path: Path,
) -> None:
    """A FAILED pay or earn that executed anyway is reported, never re-sent."""
    path = tmp_path / "journal.sqlite3"
    faults = Faults(failed_but_executed_rate=0.25)
    async with fast_sim(seed=3, faults=faults) as sim:
        players = await sim.add_players(PLAYERS, balance=1000, allowance=1000)
        before = sim.ledger().total("plyr")
        rng = random.Random(5)
        async with (
            PlyrClient(
                sim.url, sim.api_key, sim.api_secret, retry_backoff=0.01
            ) as client,
            SQLiteJournal(path) as journal,
            manager_on(sim, client, journal) as manager,
            anyio.create_task_group() as tg,
        ):
            for i in range(24):
                tg.start_soon(
                    _walk_ignoring_errors, manager, rng.sample(players, 2), i % 2 == 0
                )

        async with SQLiteJournal(path) as journal:
            failed = {
                e.room.key: e
                for e in await journal.unfinished()
                if any(s.step in MONEY_STEPS and s.outcome == "FAILED" for s in e.steps)
            }

        assert failed, "the seed gave no failed-but-executed money step"
        tasks_before = len(sim.ledger().tasks)
        report, everything = await resume_from(sim, players, path)
        ledger = await settled_ledger(sim)

    outcomes = {r.key: r for r in report.rooms}
    for key in failed:
        assert outcomes[key].outcome == "unsettled", outcomes[key]
        assert "FAILED" in (outcomes[key].reason or "") or "may have" in (
            outcomes[key].reason or ""
        )

    # Resume sent nothing that moves money into or out of those rooms, and
    # created no room at all.
    failed_rooms = {e.room.room_id for e in failed.values()} - {None}
    resumed_tasks = ledger.tasks[tasks_before:]
    creates = {TaskMethod.CREATE, TaskMethod.CREATE_JOIN_PAY}
    assert not [t for t in resumed_tasks if t.method in creates]
    new_money = [t for t in resumed_tasks if t.method in PAY_METHODS | EARN_METHODS]
    async with PlyrClient(sim.url, sim.api_key, sim.api_secret) as client:
        for task in new_money:
            body = (await client.task_status(task.task_id)).body or {}
            assert body.get("roomId") not in failed_rooms, task

    check_resumed(report, everything, ledger)
    assert ledger.total("plyr") == before


async def _walk_ignoring_errors(
    manager: RoomManager, players: list[SimPlayer], atomic: bool
) -> None:
    # The room keeps its state (unsettled or not) in the journal.
    with contextlib.suppress(PlyrError):
        await manager.run(CrashDuel, players, atomic=atomic)


class TestCommands:
    async def test_rooms_lists_unsettled_rooms_with_reasons(
        self, sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """After a kill, ``plyr-rooms rooms`` shows state, pending ids and why."""
        players = await sim.add_players(PLAYERS, balance=1000, allowance=1000)
        journal = tmp_path / "journal.sqlite3"
        await run_child(
            sim, players, journal, {"kind": "submitted", "when": "before", "n": 20}
        )
        async with SQLiteJournal(journal) as store:
            entries = await store.unfinished()

        code = await command(["rooms", "--journal", str(journal)])
        out = capsys.readouterr().out
        assert code == 0
        assert f"{len(entries)} rooms" in out
        reasons = [unsettled_reason(e) for e in entries]
        assert any(r and "no task id" in r for r in reasons)
        assert "unsettled:" in out

        code = await command(["rooms", "--journal", str(journal), "--all", "--json"])
        lines = capsys.readouterr().out.splitlines()
        assert code == 0
        assert len(lines) >= len(entries)
        assert all(json.loads(line)["key"] for line in lines)

    async def test_resume_command_reports_and_exits_by_outcome(
        self,
        sim: Simulator,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """``plyr-rooms resume --no-walk`` settles from the service and reports."""
        players = await sim.add_players(PLAYERS, balance=1000, allowance=1000)
        journal = tmp_path / "journal.sqlite3"
        await run_child(
            sim, players, journal, {"kind": "intend", "when": "after", "n": 25}
        )
        monkeypatch.setenv("PLYR_API_ENDPOINT", sim.url)
        monkeypatch.setenv("PLYR_API_KEY", sim.api_key)
        monkeypatch.setenv("PLYR_API_SECRET", sim.api_secret)
        args = ["resume", "--journal", str(journal), "--no-walk", "--json"]
        code = await command([*args, "--task-wait", "5"])
        report = json.loads(capsys.readouterr().out)
        assert code == (0 if not _open(report) else 1)
        assert report["rooms"]
        assert all(r["reason"] for r in _open(report))

    async def test_missing_journal_is_an_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = await command(["rooms", "--journal", str(tmp_path / "none.sqlite3")])
        assert code == 2
        assert "no journal" in capsys.readouterr().err

    @pytest.mark.parametrize("name", ["rooms", "resume"])
    async def test_a_newer_journal_is_refused_with_a_clear_message(
        self, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Both commands refuse a journal from a newer plyr-rooms and leave it."""
        path = tmp_path / "journal.sqlite3"
        async with SQLiteJournal(path) as journal:
            await journal.room_opened(RoomRecord("k1", "tests.Gone"))

        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
            conn.commit()

        before = path.read_bytes()
        code = await command([name, "--journal", str(path)])
        err = capsys.readouterr().err
        assert code == 2
        assert f"plyr-rooms {name}: journal" in err
        assert f"schema version {SCHEMA_VERSION + 1}" in err
        assert "upgrade plyr-rooms" in err
        assert "Traceback" not in err
        assert path.read_bytes() == before


def _open(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["rooms"] if r["outcome"] in ("unsettled", "stopped")]


async def command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="plyr-rooms")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    code: int = await args.handler(args)
    return code


class FakePoller:
    """Answers every wait with one fixed outcome (a result or an error)."""

    def __init__(self, outcome: TaskResult | Exception) -> None:
        self.outcome = outcome
        self.waited: list[str] = []

    async def wait(self, ref: TaskRef, *, timeout: float | None = None) -> TaskResult:  # noqa: ASYNC109 - the protocol's deadline
        self.waited.append(ref.id)
        if isinstance(self.outcome, Exception):
            raise self.outcome

        return self.outcome


class FakeChain:
    """isJoined over a fixed set of joined players."""

    def __init__(self, joined: set[str]) -> None:
        self.joined = joined

    async def is_joined(self, room_id: str, plyr_id: str) -> bool:
        return plyr_id in self.joined


def failed(message: str | None) -> TaskFailed:
    return TaskFailed(TaskResult(TaskState.FAILED, "9-0", error_message=message))


def reverted_after(seconds: float) -> TaskFailed:
    # A revert the service reports *seconds* after enqueueing task "9-0"
    # (enqueued 9 ms after the epoch).
    done = datetime.fromtimestamp(0.009 + seconds, UTC).isoformat()
    result = TaskResult(TaskState.FAILED, "9-0", error_message=REVERT)
    return TaskFailed(attrs.evolve(result, completed_at=done))


SUCCESS = TaskResult(
    TaskState.SUCCESS, "9-0", result={"roomId": "4", "roomAddress": "0xA"}
)


class TestSettleStep:
    @pytest.mark.parametrize(
        ("step", "task_id", "outcome", "joined", "expected", "unsettled"),
        [
            ("create", "9-0", SUCCESS, set(), "SUCCESS", False),
            ("pay", "9-0", reverted_after(2.5), set(), "REVERTED", False),
            # After a lost receipt's 40 s: an earlier attempt may have paid.
            ("pay", "9-0", reverted_after(45.0), set(), "FAILED", True),
            ("pay", "9-0", failed(REVERT), set(), "FAILED", True),
            ("earn_leave", "9-0", reverted_after(45.0), set(), "FAILED", True),
            ("join", "9-0", reverted_after(45.0), set(), "REVERTED", False),
            ("end", "9-0", failed(REVERT), set(), "REVERTED", False),
            ("pay", "9-0", failed(None), set(), "FAILED", True),
            ("earn_leave", "9-0", failed(None), set(), "FAILED", True),
            ("create", "9-0", failed(None), set(), "FAILED", True),
            ("pay", "9-0", TaskTimeout("9-0", "late"), set(), "UNKNOWN", True),
            ("end", "9-0", TaskLost("9-0", "gone"), set(), "UNKNOWN", True),
            ("pay", None, SUCCESS, set(), "UNKNOWN", True),
            ("create_join_pay", None, SUCCESS, {"a", "b"}, "UNKNOWN", True),
            ("join", None, SUCCESS, {"a", "b"}, "SUCCESS", False),
            ("join", None, SUCCESS, {"a"}, "CHECKED", False),
            ("join", None, SUCCESS, set(), "NOT_APPLIED", False),
            ("join", "9-0", failed(None), {"a", "b"}, "SUCCESS", False),
            ("leave", "9-0", TaskTimeout("9-0", "late"), set(), "SUCCESS", False),
            ("leave", None, SUCCESS, {"b"}, "CHECKED", False),
        ],
    )
    async def test_verdicts(
        self,
        step: str,
        task_id: str | None,
        outcome: TaskResult | Exception,
        joined: set[str],
        expected: str,
        unsettled: bool,
    ) -> None:
        """Money steps are never guessed; join and leave ask isJoined."""
        record = StepRecord(3, step, {"plyr_ids": ["a", "b"]}, task_id)
        poller = FakePoller(outcome)
        verdict = await settle_step(record, "4", FakeChain(joined), poller)
        assert verdict.outcome == expected
        assert (verdict.unsettled is not None) is unsettled
        assert poller.waited == ([task_id] if task_id else [])
        if unsettled:
            assert verdict.detail["reason"] == verdict.unsettled

    async def test_reconcile_stops_at_the_first_unsettled_step(self) -> None:
        journal = MemoryJournal()
        await journal.room_opened(RoomRecord("k", "tests.CrashDuel", players=["a"]))
        first = await journal.intend("k", "pay", {"plyr_ids": ["a"]})
        second = await journal.intend("k", "earn", {"plyr_ids": ["a"]})
        [entry] = await journal.unfinished()
        verdicts = await reconcile_rooms(
            [entry], journal, FakeChain(set()), FakePoller(SUCCESS)
        )
        assert [v.seq for v in verdicts["k"]] == [first]
        [entry] = await journal.unfinished()
        assert [s.seq for s in entry.pending] == [second]
        assert entry.steps[0].outcome == "UNKNOWN"
        assert "never sent again" in entry.steps[0].detail["reason"]  # type: ignore[index]
