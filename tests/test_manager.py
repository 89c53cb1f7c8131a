"""RoomManager: many rooms at once, faults, drain, journal and resume."""

from __future__ import annotations

import contextlib
import json
import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from plyr_rooms._schedule import PollSchedule
from plyr_rooms.client import PlyrClient
from plyr_rooms.errors import PlyrError, PollerClosed, TaskTimeout
from plyr_rooms.journal import MemoryJournal
from plyr_rooms.lifecycle import Player, RoomState, split_earn
from plyr_rooms.manager import ManagerClosed, RoomManager
from plyr_rooms.room import REVERTED, GameRoom
from plyr_rooms.simulator import Faults, Latency, SimConfig, Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from plyr_rooms.journal import Journal
    from plyr_rooms.room import Transition

SCHEDULE = PollSchedule(
    first_delay=0.005,
    min_first_delay=0.002,
    interval=0.01,
    max_interval=0.05,
    error_interval=0.01,
    rate_limit_pause=0.02,
)


@contextlib.asynccontextmanager
async def simulator(**config: Any) -> AsyncIterator[Simulator]:
    settings: dict[str, Any] = {
        "latency": Latency.fixed(0.005),
        "workers": None,
        "sync_interval": 0.01,
        "retry_sleep_scale": 0.001,
        **config,
    }
    async with Simulator(SimConfig(**settings)) as sim:
        yield sim


@contextlib.asynccontextmanager
async def managing(
    sim: Simulator, *, journal: Journal | None = None, task_timeout: float = 10.0
) -> AsyncIterator[RoomManager]:
    async with (
        PlyrClient(
            sim.url, sim.api_key, sim.api_secret, retry_backoff=0.01, max_retries=6
        ) as client,
        RoomManager(
            client,
            journal=journal,
            task_timeout=task_timeout,
            poller_options={"schedule": SCHEDULE, "requests_per_second": 5000.0},
        ) as manager,
    ):
        yield manager


class Coin(GameRoom):
    """Two or more players, stake 5; the player named first by a seeded coin wins."""

    room_name = "tests.Coin"
    stake = Decimal(5)

    async def play(self) -> Mapping[str, Decimal]:
        members = sorted(self.book.members())
        winner = random.Random(self.key).choice(members)
        return {winner: self.book.pot[self.token]}


async def drive(room: GameRoom, *, atomic: bool) -> str:
    """Walk *room* to the end, reconciling unknown outcomes; say how it ended."""
    for _ in range(6):
        try:
            await room.run(atomic=atomic)
            return "ended"
        except PlyrError as exc:
            if room.unsettled is None:
                return f"stopped: {exc!r}"

            reason = room.unsettled.reason
            try:
                if not await room.reconcile(task_wait=2.0):
                    return f"unsettled: {reason}"
            except PollerClosed:
                return f"unsettled: {reason} (manager closed)"

    return "gave up"  # pragma: no cover - six unknown outcomes in one room


class TestManyRooms:
    async def test_rooms_under_faults_end_or_say_why(self) -> None:
        """Hundreds of rooms through 429s, 5xx, reverts, drops and late tasks."""
        faults = Faults(
            revert_rate=0.03,
            not_found_window=0.01,
            rate_limit_rps=400.0,
            rate_limit_retry_after=0.02,
            server_error_rate=0.02,
            drop_rate=0.005,
        )
        async with simulator(seed=7, faults=faults) as sim:
            players = await sim.add_players(400, balance=100)
            before = sim.ledger().total("plyr")
            async with managing(sim) as manager:
                outcomes: dict[str, str] = {}

                async def one(i: int) -> None:
                    pair = players[2 * i : 2 * i + 2]
                    room = manager.open(Coin, pair)
                    outcomes[room.key] = await drive(room, atomic=i % 2 == 0)

                async with anyio.create_task_group() as tg:
                    for i in range(200):
                        tg.start_soon(one, i)

                ledger = sim.ledger()
                stats = manager.stats

        ended = [k for k, v in outcomes.items() if v == "ended"]
        others = {v for v in outcomes.values() if v != "ended"}
        # Only a money step whose request may have been taken can stay open, and
        # a step that reverted on every attempt (nothing moved) stops its room.
        assert all(
            v.startswith("unsettled: the request may")
            or (v.startswith("stopped: TaskFailed") and REVERTED in v)
            for v in others
        ), others
        assert len(ended) >= 190
        assert stats.ended == len(ended)
        assert ledger.total("plyr") == before
        assert ledger.rate_limited > 0
        fees = sum((split_earn(Decimal(10))[1] for _ in ended), Decimal(0))
        assert ledger.fee_account.get("plyr", Decimal(0)) >= fees

    async def test_manager_observer_sees_every_room(self) -> None:
        """A manager-level observer follows all rooms; the feed ends on drain."""
        async with simulator() as sim:
            players = await sim.add_players(6)
            async with managing(sim) as manager:
                feed = manager.transitions()
                async with anyio.create_task_group() as tg:
                    for i in range(3):
                        tg.start_soon(manager.run, Coin, players[2 * i : 2 * i + 2])

            seen = [t async for t in feed]

        assert len(seen) == 3 * 6
        assert {t.room_key for t in seen if t.new is RoomState.ENDED} == {
            t.room_key for t in seen
        }


class TestDrain:
    async def test_drain_waits_for_walks_then_closes(self) -> None:
        """Drain lets rooms in flight finish, then refuses new ones."""
        started = anyio.Event()

        class Slow(Coin):
            room_name = "tests.Slow"

            async def on_created(self, transition: Transition) -> None:
                started.set()

        async with simulator(latency=Latency.fixed(0.02)) as sim:
            players = await sim.add_players(8)
            async with managing(sim) as manager, anyio.create_task_group() as tg:
                rooms = [
                    manager.open(Slow, players[2 * i : 2 * i + 2]) for i in range(4)
                ]
                for room in rooms:
                    tg.start_soon(room.run)

                await started.wait()
                await manager.drain(10.0)
                with pytest.raises(ManagerClosed):
                    manager.open(Coin, players[:2])

        assert all(room.state is RoomState.ENDED for room in rooms)
        assert manager.stats.ended == 4

    async def test_drain_waits_for_a_step_in_its_admission_hook(self) -> None:
        """A step of a custom flow counts from its call: drain lets it finish."""
        entered, release = anyio.Event(), anyio.Event()

        class Gatekeeper(Coin):
            room_name = "tests.Gatekeeper"

            async def on_join_request(
                self, players: tuple[Player, ...]
            ) -> Mapping[str, str]:
                entered.set()
                await release.wait()
                return {}

        async with simulator() as sim:
            players = await sim.add_players(2)
            async with managing(sim) as manager, anyio.create_task_group() as tg:
                room = manager.open(Gatekeeper, players)
                await room.create()
                tg.start_soon(room.join)
                await entered.wait()
                tg.start_soon(manager.drain, 10.0)
                await anyio.wait_all_tasks_blocked()
                assert manager.services.busy == 1
                release.set()

        assert room.state is RoomState.JOINED
        assert sim.ledger().tasks_by_method.get("joinGameRoom") == 1

    async def test_drain_deadline_leaves_rooms_unsettled_with_task_ids(self) -> None:
        """Past the deadline, waiting steps keep their task ids for later."""
        started = anyio.Event()
        outcome: list[str] = []

        class Stuck(Coin):
            room_name = "tests.Stuck"

            async def on_created(self, transition: Transition) -> None:
                started.set()

        async with simulator(latency=Latency.fixed(0.5)) as sim:
            players = await sim.add_players(2)
            async with managing(sim) as manager, anyio.create_task_group() as tg:
                room = manager.open(Stuck, players)

                async def walk() -> None:
                    outcome.append(await drive(room, atomic=False))

                tg.start_soon(walk)
                await started.wait()
                await manager.drain(0.01)

        assert room.unsettled is not None
        assert room.unsettled.task_id is not None
        assert room.state is RoomState.CREATED
        assert outcome
        assert outcome[0].startswith(("stopped", "unsettled"))


class TestJournal:
    async def test_steps_are_journaled_without_secrets(self) -> None:
        """Every step is in the journal with its task id and outcome; no JWT."""
        journal = MemoryJournal()
        async with simulator() as sim:
            players = await sim.add_players(2)
            async with managing(sim, journal=journal) as manager:
                room = await manager.run(Coin, players)

        [entry] = await journal.rooms(include_finished=True)
        assert entry.room.state == "ENDED"
        assert entry.room.room_id == room.room_id
        assert [s.step for s in entry.steps] == [
            "create",
            "join",
            "pay",
            "earn",
            "leave",
            "end",
        ]
        assert all(s.outcome == "SUCCESS" and s.task_id for s in entry.steps)
        text = json.dumps([entry.room.data, [dict(s.request) for s in entry.steps]])
        for p in players:
            assert p.session_jwt not in text

        assert await journal.unfinished() == []

    async def test_resume_finishes_rooms_without_sending_twice(self) -> None:
        """A new manager takes the journal back: paid rooms play and end."""
        journal = MemoryJournal()
        async with simulator(latency=Latency.fixed(0.05)) as sim:
            players = await sim.add_players(4, balance=100)
            async with managing(sim, journal=journal) as first:
                paid = first.open(Coin, players[:2])
                await paid.create()
                await paid.join()
                await paid.pay()
                waiting = first.open(Coin, players[2:])
                await waiting.create_join_pay()
                first.services.task_timeout = 0.001
                with pytest.raises(TaskTimeout):
                    await waiting.earn_leave_end(await waiting.play())

                assert waiting.unsettled is not None

            pays = sim.ledger().tasks_by_method.get("batchPayGameRoom", 0)
            async with managing(sim, journal=journal) as second:
                rooms = await second.resume(task_wait=5.0)

            ledger = sim.ledger()

        assert sorted(r.key for r in rooms) == sorted([paid.key, waiting.key])
        assert all(r.state is RoomState.ENDED for r in rooms)
        assert ledger.tasks_by_method.get("batchPayGameRoom", 0) == pays
        assert ledger.tasks_by_method.get("earnLeaveEndGameRoom") == 1
        assert ledger.total("plyr") == 400
        assert await journal.unfinished() == []

    async def test_resume_on_entry_with_a_registry(self) -> None:
        """``RoomManager(..., resume=True)`` takes the journal back on entry."""
        journal = MemoryJournal()
        async with simulator() as sim:
            players = await sim.add_players(2, balance=100)
            async with managing(sim, journal=journal) as first:
                paid = first.open(Coin, players)
                await paid.create_join_pay()
                assert paid.room_id is not None
                assert first.find(paid.room_id) is paid
                assert first.by_state(RoomState.PAID) == [paid]

            pays = sim.ledger().tasks_by_method.get("createJoinPayGameRoom")
            async with (
                PlyrClient(sim.url, sim.api_key, sim.api_secret) as client,
                RoomManager(
                    client,
                    journal=journal,
                    registry={"tests.Coin": Coin},
                    resume=True,
                    poller_options={"schedule": SCHEDULE},
                ) as second,
            ):
                stats = second.stats

            ledger = sim.ledger()

        assert stats.opened == 1
        assert stats.ended == 1
        assert ledger.tasks_by_method.get("createJoinPayGameRoom") == pays == 1
        assert ledger.rooms[paid.room_id].ended
        assert ledger.total("plyr") == 200
        assert await journal.unfinished() == []


class Broken(Coin):
    """Its game raises once the players paid."""

    room_name = "tests.Broken"

    async def play(self) -> Mapping[str, Decimal]:
        raise RuntimeError("the table caught fire")


class TestResumeStates:
    async def test_resume_winds_up_rooms_wherever_they_stopped(self) -> None:
        """Created, joined and failed rooms are closed out; unknown classes stay."""
        journal = MemoryJournal()
        async with simulator() as sim:
            players = await sim.add_players(8, balance=100)
            async with managing(sim, journal=journal) as first:
                created = first.open(Coin, players[:2])
                await created.create()
                joined = first.open(Coin, players[2:4])
                await joined.create()
                await joined.join()
                failed = first.open(Broken, players[4:6])
                with pytest.raises(RuntimeError):
                    await failed.run()

                unknown = first.open(Coin, players[6:], key="unknown-class-room")
                await unknown.create()

            registry = {"tests.Coin": Coin, "tests.Broken": Broken}
            journal_rooms = await journal.unfinished()
            for entry in journal_rooms:
                if entry.room.key == unknown.key:
                    await journal.room_updated(
                        attrs.evolve(entry.room, class_name="tests.Gone")
                    )

            async with managing(sim, journal=journal) as second:
                second.registry = registry
                rooms = await second.resume()
                left = second.stats

            ledger = sim.ledger()

        by_key = {room.key: room for room in rooms}
        assert set(by_key) == {created.key, joined.key, failed.key}
        assert all(room.state is RoomState.ENDED for room in rooms)
        assert left.ended == 3
        net, _ = split_earn(Decimal(5))
        for p in players[4:6]:
            assert ledger.balances[p.plyr_id]["plyr"] == 95 + net

        [rest] = await journal.unfinished()
        assert rest.room.key == unknown.key
