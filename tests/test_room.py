"""GameRoom against the embedded simulator: hooks, refusals, failures, reconcile."""

from __future__ import annotations

import asyncio
import contextlib
import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from plyr_rooms._roomvalues import FIRST_ATTEMPT_WINDOW
from plyr_rooms._schedule import PollSchedule
from plyr_rooms.client import PlyrClient
from plyr_rooms.errors import InvalidTransition, TaskFailed, TaskTimeout
from plyr_rooms.journal import JournalError, MemoryJournal
from plyr_rooms.lifecycle import Payment, Player, RoomState, Step, split_earn
from plyr_rooms.manager import RoomManager
from plyr_rooms.room import GameRoom, Transition
from plyr_rooms.simulator import Faults, Latency, SimConfig, Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Generator, Mapping

    from plyr_rooms.journal import Journal, RoomRecord


#: Polls as fast as the tiny simulated latencies call for.
SCHEDULE = PollSchedule(
    first_delay=0.005,
    min_first_delay=0.002,
    interval=0.01,
    max_interval=0.05,
    error_interval=0.01,
    rate_limit_pause=0.02,
)


# The simulator's retry sleeps and receipt budget, scaled down.
SCALE = 0.001


@contextlib.asynccontextmanager
async def running(
    *,
    task_timeout: float | None = 5.0,
    journal: Journal | None = None,
    revert_window: float = FIRST_ATTEMPT_WINDOW,
    **config: Any,
) -> AsyncIterator[tuple[Simulator, RoomManager]]:
    """Run a fast simulator and a manager on it."""
    settings: dict[str, Any] = {
        "latency": Latency.fixed(0.005),
        "workers": None,
        "sync_interval": 0.01,
        "retry_sleep_scale": SCALE,
        **config,
    }
    async with (
        Simulator(SimConfig(**settings)) as sim,
        PlyrClient(sim.url, sim.api_key, sim.api_secret, retry_backoff=0.01) as client,
        RoomManager(
            client,
            journal=journal,
            task_timeout=task_timeout,
            revert_window=revert_window,
            poller_options={"schedule": SCHEDULE, "requests_per_second": 2000.0},
        ) as manager,
    ):
        yield sim, manager


class Duel(GameRoom):
    """The lowest plyr id wins the pot; every hook is recorded in order."""

    room_name = "tests.Duel"
    stake = Decimal(10)

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.calls: list[str] = []

    async def on_created(self, transition: Transition) -> None:
        self.calls.append("created")

    async def on_joined(self, transition: Transition) -> None:
        self.calls.append("joined")

    async def on_paid(self, transition: Transition) -> None:
        self.calls.append("paid")

    async def on_earned(self, transition: Transition) -> None:
        self.calls.append("earned")

    async def on_left(self, transition: Transition) -> None:
        self.calls.append("left")

    async def on_ended(self, transition: Transition) -> None:
        self.calls.append("ended")

    async def on_failed(self, error: BaseException) -> None:
        self.calls.append(f"failed:{type(error).__name__}")

    async def play(self) -> Mapping[str, Decimal]:
        self.calls.append("play")
        winner = min(self.book.members())
        return {winner: self.book.pot[self.token]}


class GatedJournal(MemoryJournal):
    """A memory journal whose first write of one kind blocks until cancelled.

    *call* names the journal method (``"intend"``, ``"submitted"``, ``"settled"``);
    for ``"settled"``, *outcome* picks which outcome blocks. ``entered`` is set
    once the blocking write began; every later write goes through.
    """

    def __init__(self, call: str, outcome: str | None = None) -> None:
        super().__init__()
        self.call = call
        self.outcome = outcome
        self.entered = anyio.Event()

    async def _gate(self, call: str, outcome: str | None = None) -> None:
        if call == self.call and outcome == self.outcome and not self.entered.is_set():
            self.entered.set()
            await anyio.sleep_forever()

    async def intend(self, room_key: str, step: str, request: Mapping[str, Any]) -> int:
        await self._gate("intend")
        return await super().intend(room_key, step, request)

    async def submitted(self, room_key: str, step_seq: int, task_id: str) -> None:
        await self._gate("submitted")
        await super().submitted(room_key, step_seq, task_id)

    async def settled(
        self,
        room_key: str,
        step_seq: int,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
        *,
        room: RoomRecord | None = None,
    ) -> None:
        await self._gate("settled", outcome)
        await super().settled(room_key, step_seq, outcome, detail, room=room)


class HeldTaskIds(MemoryJournal):
    """A memory journal whose task id writes are durable only when released.

    ``submitted`` records the id at once (always valid in these tests) and
    returns a future that the test resolves (``release``) or fails (``fail``).
    ``asked`` is set by the call, ``awaited`` once the room awaits the future.
    """

    def __init__(self) -> None:
        super().__init__()
        self.asked = anyio.Event()
        self.awaited = anyio.Event()
        self.pending: list[asyncio.Future[None]] = []

    def submitted(self, room_key: str, step_seq: int, task_id: str) -> Awaitable[None]:
        super().submitted(room_key, step_seq, task_id)
        written = _Watched(self.awaited, loop=asyncio.get_running_loop())
        self.pending.append(written)
        self.asked.set()
        return written

    def release(self) -> None:
        self.pending[0].set_result(None)

    def fail(self) -> None:
        self.pending[0].set_exception(JournalError("the disk is full"))


class _Watched(asyncio.Future[None]):
    """A future that tells when it is first awaited."""

    def __init__(
        self, awaited: anyio.Event, *, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(loop=loop)
        self.awaited = awaited

    def __await__(self) -> Generator[Any, None, None]:
        self.awaited.set()
        return (yield from super().__await__())


def seed_with_faults(pattern: list[bool], rate: float) -> int:
    """Return a simulator seed whose first task faults follow *pattern*."""
    # The simulator draws one number per task from this seeded stream.
    for seed in range(10_000):
        draws = random.Random(f"{seed}:task-faults")
        if all((draws.random() < rate) is want for want in pattern):
            return seed

    raise AssertionError("no seed found")  # pragma: no cover - 1 in 2**n


def state_of(room: GameRoom) -> RoomState:
    # A call, so that the type checker does not narrow the state between steps.
    return room.state


def is_unsettled(room: GameRoom) -> bool:
    return room.unsettled is not None


def requests(sim: Simulator) -> int:
    return sum(sim.ledger().requests_by_route.values())


class TestWalks:
    @pytest.mark.parametrize("atomic", [False, True])
    async def test_walk_runs_hooks_in_order(self, atomic: bool) -> None:
        """Both walks call the same hooks in the order of the steps."""
        async with running() as (sim, manager):
            players = await sim.add_players(2)
            room = await manager.run(Duel, players, atomic=atomic)

        assert state_of(room) is RoomState.ENDED
        assert room.calls == [
            "created",
            "joined",
            "paid",
            "play",
            "earned",
            "left",
            "ended",
        ]
        assert room.tasks == (2 if atomic else 6)

    @pytest.mark.parametrize("atomic", [False, True])
    async def test_ledger_matches_payouts_and_fees(self, atomic: bool) -> None:
        """The winner gets the pot less 2 %, the fee account the 2 %, the room 0."""
        async with running() as (sim, manager):
            players = await sim.add_players(3, balance=100)
            before = sim.ledger().total("plyr")
            room = await manager.run(Duel, players, atomic=atomic)
            ledger = sim.ledger()

        winner = min(p.plyr_id for p in players)
        net, fee = split_earn(Decimal(30))
        assert room.payouts == (Payment(winner, "plyr", 30),)
        assert ledger.balances[winner]["plyr"] == 90 + net
        for p in players:
            if p.plyr_id != winner:
                assert ledger.balances[p.plyr_id]["plyr"] == 90

        assert ledger.fee_account["plyr"] == fee
        assert room.room_id is not None
        assert ledger.rooms[room.room_id].funds["plyr"] == 0
        assert ledger.rooms[room.room_id].ended
        assert ledger.total("plyr") == before

    async def test_lapsed_session_leaves_through_earn_leave(self) -> None:
        """A player whose session lapsed mid-game still leaves, with amount 0."""

        class Lapsing(Duel):
            room_name = "tests.Lapsing"

            async def on_paid(self, transition: Transition) -> None:
                sim.expire_session(max(self.book.members()))

        async with running() as (sim, manager):
            players = await sim.add_players(2)
            room = await manager.run(Lapsing, players)
            ledger = sim.ledger()

        assert state_of(room) is RoomState.ENDED
        assert ledger.tasks_by_method.get("earnLeaveGameRoom") == 1
        assert room.room_id is not None
        assert ledger.rooms[room.room_id].joined == frozenset()

    async def test_hooks_may_drive_the_next_step(self) -> None:
        """A hook calling a step of its own room runs it at once (no deadlock)."""

        class Chained(Duel):
            room_name = "tests.Chained"

            async def on_created(self, transition: Transition) -> None:
                await self.join_pay()

            async def on_paid(self, transition: Transition) -> None:
                await self.earn_leave_end(await self.play_game())

        async with running() as (sim, manager):
            room = manager.open(Chained, await sim.add_players(2))
            with anyio.fail_after(10):
                await room.create()

        assert state_of(room) is RoomState.ENDED
        assert room.tasks == 3

    async def test_refused_player_is_never_sent(self) -> None:
        """on_join_request refuses a player before anything is sent."""

        class Picky(Duel):
            room_name = "tests.Picky"

            async def on_join_request(
                self, players: tuple[Player, ...]
            ) -> Mapping[str, str]:
                return {max(p.plyr_id for p in players): "banned"}

        async with running() as (sim, manager):
            players = await sim.add_players(3)
            room = await manager.run(Picky, players)
            ledger = sim.ledger()

        banned = max(p.plyr_id for p in players)
        assert room.refused == {banned: "banned"}
        assert banned not in room.book.players
        assert ledger.balances[banned]["plyr"] == 1000


class TestRefusals:
    async def test_invalid_step_sends_nothing(self) -> None:
        """Steps the core refuses raise before any request reaches the service."""
        async with running() as (sim, manager):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            seen = requests(sim)
            with pytest.raises(InvalidTransition) as caught:
                await room.pay()

            assert caught.value.state is RoomState.NEW
            await room.create_join_pay()
            seen = requests(sim)
            with pytest.raises(InvalidTransition, match="pot is not empty"):
                await room.end()

            with pytest.raises(InvalidTransition, match="negative"):
                await room.earn({players[0].plyr_id: 21})

            with pytest.raises(InvalidTransition, match="not in the room"):
                await room.earn({"stranger": 1})

            assert requests(sim) == seen
            assert state_of(room) is RoomState.PAID

    async def test_reverted_task_leaves_the_state(self) -> None:
        """A FAILED task (a revert) raises TaskFailed and changes nothing."""
        async with running() as (sim, manager):
            rich = await sim.add_players(1)
            poor = await sim.add_players(1, balance=1)
            room = manager.open(Duel, [*rich, *poor])
            await room.create()
            await room.join()
            with pytest.raises(TaskFailed, match="Transaction Receipt Failed"):
                await room.pay()

            assert state_of(room) is RoomState.JOINED
            assert room.unsettled is None
            assert room.book.pot == {}
            await room.leave()
            await room.end()

        assert state_of(room) is RoomState.ENDED

    async def test_hook_failure_fails_the_room_and_refund_ends_it(self) -> None:
        """A raising hook moves the room to FAILED, calls on_failed, re-raises."""

        class Broken(Duel):
            room_name = "tests.Broken"

            async def play(self) -> Mapping[str, Decimal]:
                raise ZeroDivisionError("the dice fell off the table")

        async with running() as (sim, manager):
            players = await sim.add_players(2, balance=50)
            room = manager.open(Broken, players)
            with pytest.raises(ZeroDivisionError):
                await room.run()

            assert state_of(room) is RoomState.FAILED
            assert room.calls[-1] == "failed:ZeroDivisionError"
            with pytest.raises(InvalidTransition):
                await room.join_pay()

            await room.refund()
            ledger = sim.ledger()

        net, _ = split_earn(Decimal(10))
        assert state_of(room) is RoomState.ENDED
        for p in players:
            assert ledger.balances[p.plyr_id]["plyr"] == 40 + net

    @pytest.mark.parametrize("hook", ["on_join_request", "on_joined", "on_paid"])
    async def test_raising_hook_fails_its_room_only(self, hook: str) -> None:
        """Any hook that raises: FAILED, on_failed, re-raised; other rooms go on."""

        async def explode(*args: object) -> Any:
            raise LookupError(f"{hook} broke")

        class Faulty(Duel):
            room_name = f"tests.Faulty.{hook}"

        setattr(Faulty, hook, explode)
        async with running() as (sim, manager):
            players = await sim.add_players(4)
            faulty = manager.open(Faulty, players[:2])
            healthy = manager.open(Duel, players[2:])
            raised: list[BaseException] = []

            async def walk_faulty() -> None:
                with pytest.raises(LookupError) as caught:
                    await faulty.run()

                raised.append(caught.value)

            async with anyio.create_task_group() as tg:
                tg.start_soon(walk_faulty)
                tg.start_soon(healthy.run)

        assert state_of(faulty) is RoomState.FAILED
        assert faulty.calls[-1] == "failed:LookupError"
        assert faulty.error is raised[0]
        assert state_of(healthy) is RoomState.ENDED

    async def test_payouts_that_leave_tokens_fail_the_room(self) -> None:
        """play() must empty the pot: payouts the book refuses are a hook failure."""

        class Greedy(Duel):
            room_name = "tests.Greedy"

            async def play(self) -> Mapping[str, Decimal]:
                return {min(self.book.members()): Decimal(5)}

        async with running() as (sim, manager):
            players = await sim.add_players(2)
            room = manager.open(Greedy, players)
            with pytest.raises(InvalidTransition, match="pot is not empty"):
                await room.run(atomic=True)

        assert state_of(room) is RoomState.FAILED


class TestUnknownOutcome:
    async def test_timeout_marks_unsettled_then_reconcile_applies(self) -> None:
        """A deadline keeps the task id; reconcile applies the step and its hooks."""
        async with running(latency=Latency.fixed(0.3), task_timeout=0.02) as (
            sim,
            manager,
        ):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            with pytest.raises(TaskTimeout):
                await room.create()

            assert room.unsettled is not None
            assert room.unsettled.step is Step.CREATE
            assert room.unsettled.task_id is not None
            seen = requests(sim)
            with pytest.raises(InvalidTransition) as caught:
                await room.join()

            assert caught.value.reason == "unsettled"
            assert requests(sim) == seen
            assert await room.reconcile(task_wait=5.0)

        assert not is_unsettled(room)
        assert state_of(room) is RoomState.CREATED
        assert room.room_id is not None
        assert room.calls == ["created"]

    async def test_stuck_task_stays_unsettled_until_resolved(self) -> None:
        """Reconcile never guesses: a task still PENDING needs more time or a word."""
        async with running(task_timeout=0.02, faults=Faults(stuck_rate=1.0)) as (
            sim,
            manager,
        ):
            room = manager.open(Duel, await sim.add_players(2))
            with pytest.raises(TaskTimeout):
                await room.create()

            assert not await room.reconcile()
            assert room.unsettled is not None
            await room.resolve(applied=False)

        assert not is_unsettled(room)
        assert state_of(room) is RoomState.NEW

    async def test_failed_but_executed_pay_waits_for_the_operator(self) -> None:
        """A FAILED pay that was no revert may have moved money: nothing guesses."""
        seed = seed_with_faults([False, False, True], 0.5)
        faults = Faults(failed_but_executed_rate=0.5)
        async with running(seed=seed, faults=faults) as (sim, manager):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            await room.create()
            await room.join()
            with pytest.raises(TaskFailed):
                await room.pay()

            assert room.unsettled is not None
            assert state_of(room) is RoomState.JOINED
            assert not await room.reconcile()
            assert room.room_id is not None
            assert sim.ledger().rooms[room.room_id].funds["plyr"] == 20
            await room.resolve(applied=True)
            assert state_of(room) is RoomState.PAID
            assert room.book.pot == {"plyr": 20}

    async def test_late_revert_of_a_pay_is_not_sent_again(self) -> None:
        """A revert after a lost receipt proves nothing: the walk stops, unsettled."""
        faults = Faults(late_revert_rate=0.5)
        seed = seed_with_faults([False, False, True], 0.5)
        # The simulator's 40 s receipt budget, scaled like its retry sleeps.
        window = 41 * SCALE
        async with running(seed=seed, faults=faults, revert_window=window) as (
            sim,
            manager,
        ):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            with pytest.raises(TaskFailed, match="Transaction Receipt Failed"):
                await room.run()

            assert room.unsettled is not None
            assert room.unsettled.step is Step.PAY
            assert "receipt was lost" in room.unsettled.reason
            assert room.reverted == 0
            assert sim.ledger().tasks_by_method["batchPayGameRoom"] == 1
            # The tokens moved once; the book still says JOINED until told.
            assert room.room_id is not None
            assert sim.ledger().rooms[room.room_id].funds["plyr"] == 20
            assert not await room.reconcile()
            assert state_of(room) is RoomState.JOINED

    async def test_first_attempt_revert_is_sent_again(self) -> None:
        """A revert within the first attempt's window is proof: the walk re-sends."""
        faults = Faults(revert_rate=0.5)
        # create, join, pay (reverts), pay again, earn, leave, end
        seed = seed_with_faults([False, False, True, False, False, False, False], 0.5)
        async with running(seed=seed, faults=faults, revert_window=41 * SCALE) as (
            sim,
            manager,
        ):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            await room.run()

            assert state_of(room) is RoomState.ENDED
            assert room.reverted == 1
            assert sim.ledger().tasks_by_method["batchPayGameRoom"] == 2

    async def test_failed_but_executed_join_pay_settles_from_is_joined(self) -> None:
        """join-pay moves players in: isJoined proves the transaction happened."""
        seed = seed_with_faults([False, True], 0.5)
        faults = Faults(failed_but_executed_rate=0.5)
        async with running(seed=seed, faults=faults) as (sim, manager):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            await room.create()
            with pytest.raises(TaskFailed):
                await room.join_pay()

            assert await room.reconcile()
            assert state_of(room) is RoomState.PAID
            assert room.calls == ["created", "joined", "paid"]

    async def test_pending_join_pay_is_not_dropped_because_nobody_joined(
        self,
    ) -> None:
        """isJoined saying "not yet" settles no money step whose task may still run."""
        seed = seed_with_faults([False, True], 0.5)
        faults = Faults(stuck_rate=0.5)
        async with running(seed=seed, faults=faults, task_timeout=0.05) as (
            sim,
            manager,
        ):
            room = manager.open(Duel, await sim.add_players(2))
            await room.create()
            with pytest.raises(TaskTimeout):
                await room.join_pay()

            assert not await room.reconcile()
            assert room.unsettled is not None
            assert room.unsettled.step is Step.JOIN_PAY
            seen = requests(sim)
            with pytest.raises(InvalidTransition, match="unsettled"):
                await room.join_pay()

            assert requests(sim) == seen
            assert sim.ledger().tasks_by_method.get("joinPayGameRoom") == 1

    @pytest.mark.parametrize(
        ("call", "outcome", "latency"),
        [("submitted", None, 0.005), ("settled", "TIMEOUT", 0.3)],
    )
    async def test_cancelled_journal_write_keeps_the_room_unsettled(
        self, call: str, outcome: str | None, latency: float
    ) -> None:
        """Cancelled while journaling a sent step: unsettled, task id kept."""
        journal = GatedJournal(call, outcome)
        async with running(
            latency=Latency.fixed(latency), task_timeout=0.02, journal=journal
        ) as (sim, manager):
            room = manager.open(Duel, await sim.add_players(2))
            async with anyio.create_task_group() as tg:
                tg.start_soon(room.create)
                await journal.entered.wait()
                tg.cancel_scope.cancel()

            assert room.unsettled is not None
            assert room.unsettled.task_id is not None
            seen = requests(sim)
            with pytest.raises(InvalidTransition, match="unsettled"):
                await room.create()

            assert requests(sim) == seen
            assert await room.reconcile(task_wait=5.0)

        assert state_of(room) is RoomState.CREATED
        assert sim.ledger().tasks_by_method.get("createGameRoom") == 1

    async def test_intent_is_journaled_before_anything_is_sent(self) -> None:
        """While the intent is being written, the service has seen no request."""
        journal = GatedJournal("intend")
        async with running(journal=journal) as (sim, manager):
            room = manager.open(Duel, await sim.add_players(2))
            seen = requests(sim)
            async with anyio.create_task_group() as tg:
                tg.start_soon(room.create)
                await journal.entered.wait()
                assert requests(sim) == seen
                tg.cancel_scope.cancel()

            assert sim.ledger().tasks == ()
            assert room.unsettled is None
            await room.create()
            [entry] = await journal.rooms()

        assert [(s.step, s.outcome) for s in entry.steps] == [("create", "SUCCESS")]
        assert entry.steps[0].task_id == sim.ledger().tasks[0].task_id

    async def test_the_task_is_polled_while_its_id_is_written(self) -> None:
        """The task id's write goes on while the poller checks the task; the
        outcome is written only once that write is durable."""
        journal = HeldTaskIds()
        async with running(journal=journal) as (sim, manager):
            room = manager.open(Duel, await sim.add_players(2))
            async with anyio.create_task_group() as tg:
                tg.start_soon(room.create)
                with anyio.fail_after(5):
                    await journal.awaited.wait()  # after the poller's answer

                assert sim.counters().status_polls >= 1
                assert manager.poller.stats.resolved == {"success": 1}
                [entry] = await journal.rooms()
                assert [s.outcome for s in entry.steps] == [None]
                assert state_of(room) is RoomState.NEW
                journal.release()

            [entry] = await journal.rooms()

        assert state_of(room) is RoomState.CREATED
        [task] = sim.ledger().tasks
        assert [(s.task_id, s.outcome) for s in entry.steps] == [
            (task.task_id, "SUCCESS")
        ]

    @pytest.mark.parametrize("latency", [0.005, 0.3])
    async def test_a_failed_task_id_write_leaves_the_room_unsettled(
        self, latency: float
    ) -> None:
        """A refused task id write, found before or after the task settled:
        unsettled with the id kept, no outcome written, nothing sent again."""
        journal = HeldTaskIds()
        async with running(
            latency=Latency.fixed(latency), task_timeout=0.1, journal=journal
        ) as (sim, manager):
            room = manager.open(Duel, await sim.add_players(2))
            async with anyio.create_task_group() as tg:

                async def create() -> None:
                    with pytest.raises(JournalError, match="disk is full"):
                        await room.create()

                tg.start_soon(create)
                await journal.asked.wait()
                journal.fail()

            assert room.unsettled is not None
            assert room.unsettled.reason == "stopped before its task id was journaled"
            [task] = sim.ledger().tasks
            assert room.unsettled.task_id == task.task_id
            [entry] = await journal.rooms()
            assert [s.outcome for s in entry.steps] == [None]
            assert await room.reconcile(task_wait=5.0)

        assert state_of(room) is RoomState.CREATED
        assert sim.ledger().tasks_by_method == {"createGameRoom": 1}

    async def test_a_step_cancelled_while_its_id_is_written(self) -> None:
        """Cancelled while polling with the id's write pending: unsettled, the id
        kept, and the write let go (its future cancelled, not left to fail)."""
        journal = HeldTaskIds()
        async with running(latency=Latency.fixed(0.3), journal=journal) as (
            sim,
            manager,
        ):
            room = manager.open(Duel, await sim.add_players(2))
            async with anyio.create_task_group() as tg:
                tg.start_soon(room.create)
                with anyio.fail_after(5):
                    await journal.asked.wait()

                tg.cancel_scope.cancel()

            [written] = journal.pending
            assert written.cancelled()
            assert room.unsettled is not None
            assert room.unsettled.reason == "stopped while waiting for the task"
            assert await room.reconcile(task_wait=5.0)

        assert state_of(room) is RoomState.CREATED

    async def test_cancelled_step_does_not_wedge_the_room(self) -> None:
        """Cancelling a step while it waits keeps the task id; the lock is free."""
        async with running(latency=Latency.fixed(0.2)) as (sim, manager):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            with anyio.move_on_after(0.05):
                await room.create()

            assert room.unsettled is not None
            assert await room.reconcile(task_wait=5.0)
            await room.join()

        assert state_of(room) is RoomState.JOINED


class TestConcurrency:
    async def test_steps_of_one_room_run_in_call_order(self) -> None:
        """Steps called together run one at a time, first come first served."""
        async with running() as (sim, manager):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            await room.create()
            order: list[str] = []

            async def step(name: str, started: anyio.Event) -> None:
                started.set()
                await getattr(room, name)()
                order.append(name)

            async with anyio.create_task_group() as tg:
                for name in ("join", "pay", "leave"):
                    started = anyio.Event()
                    tg.start_soon(step, name, started)
                    await started.wait()

        assert order == ["join", "pay", "leave"]

    async def test_a_cancelled_waiting_step_does_not_wedge_the_queue(self) -> None:
        """A step cancelled while queued behind another never runs nor blocks."""
        async with running(latency=Latency.fixed(0.05)) as (sim, manager):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            await room.create()
            order: list[str] = []
            scopes: dict[str, anyio.CancelScope] = {}

            async def step(name: str, started: anyio.Event) -> None:
                with anyio.CancelScope() as scopes[name]:
                    started.set()
                    await getattr(room, name)()
                    order.append(name)

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for name in ("join", "pay", "leave"):
                        started = anyio.Event()
                        tg.start_soon(step, name, started)
                        await started.wait()

                    scopes["pay"].cancel()

        assert order == ["join", "leave"]
        assert "batchPayGameRoom" not in sim.ledger().tasks_by_method
        assert state_of(room) is RoomState.LEFT

    async def test_observers_see_transitions_and_slow_ones_drop(self) -> None:
        """Room observers get every step; a full buffer drops, never blocks."""
        async with running() as (sim, manager):
            players = await sim.add_players(2)
            room = manager.open(Duel, players)
            everything = room.transitions()
            tiny = room.transitions(buffer=1)
            await room.run(atomic=True)
            seen = [t async for t in everything]
            slow = [t async for t in tiny]

        assert [(t.step, t.new) for t in seen] == [
            (Step.CREATE_JOIN_PAY, RoomState.PAID),
            (Step.EARN_LEAVE_END, RoomState.ENDED),
        ]
        assert seen[0].result is not None
        assert len(slow) == 1
        assert tiny.dropped == 1
