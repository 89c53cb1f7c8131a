"""The shared poller against the simulator over loopback HTTP."""

from __future__ import annotations

import logging
import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import attrs
import pytest

from plyr_rooms.client import PlyrClient
from plyr_rooms.errors import (
    PlyrError,
    PollerClosed,
    RateLimited,
    ServerError,
    TaskFailed,
    TaskLost,
    TaskTimeout,
    TransportError,
)
from plyr_rooms.poller import PollSchedule, TaskPoller
from plyr_rooms.simulator import Faults, Latency, SimConfig, Simulator
from plyr_rooms.tasks import TaskRef, TaskResult, TaskState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# Everything scaled down: tasks take milliseconds, checks follow quickly.
FAST = PollSchedule(
    first_delay=0.02,
    min_first_delay=0.005,
    interval=0.02,
    max_interval=0.05,
    error_interval=0.01,
    max_error_interval=0.05,
    rate_limit_pause=0.02,
    max_rate_limit_pause=0.5,
    sweep_spacing=0.005,
)
QUICK = Latency.uniform(0.005, 0.03)


class Spy:
    """A status source that records which ids were read, around a real client."""

    def __init__(self, client: PlyrClient) -> None:
        self.client = client
        self.calls: list[str] = []
        self._want: set[str] = set()
        self._seen = anyio.Event()

    async def task_status(self, task_id: str, *, retry: bool = True) -> TaskResult:
        self.calls.append(task_id)
        if self._want and self._want <= set(self.calls):
            self._seen.set()

        return await self.client.task_status(task_id, retry=retry)

    async def checked(self, *task_ids: str) -> None:
        """Return once every one of *task_ids* has been read at least once."""
        self._want = set(task_ids)
        if not self._want <= set(self.calls):
            await self._seen.wait()


@asynccontextmanager
async def stack(
    config: SimConfig,
    *,
    schedule: PollSchedule = FAST,
    not_found_grace: float = 10.0,
    max_concurrency: int = 64,
) -> AsyncIterator[tuple[Simulator, PlyrClient, TaskPoller, Spy]]:
    async with (
        Simulator(config) as sim,
        PlyrClient(sim.url, sim.api_key, sim.api_secret) as client,
    ):
        spy = Spy(client)
        poller = TaskPoller(
            spy,
            schedule=schedule,
            requests_per_second=5000.0,
            max_concurrency=max_concurrency,
            not_found_grace=not_found_grace,
        )
        async with poller:
            yield sim, client, poller, spy


async def submit(client: PlyrClient, count: int) -> list[TaskRef]:
    """Create *count* rooms; request faults strike before the simulator acts."""
    refs: list[TaskRef] = []
    while len(refs) < count:
        try:
            refs.append(await client.create())
        except (RateLimited, ServerError, TransportError):
            await anyio.sleep(0.001)  # back off, not a synchronisation

    return refs


async def wait_all(
    poller: TaskPoller, refs: list[TaskRef], deadline: float = 30.0
) -> dict[str, TaskResult | PlyrError]:
    outcomes: dict[str, TaskResult | PlyrError] = {}

    async def one(ref: TaskRef) -> None:
        try:
            outcomes[ref.id] = await poller.wait(ref, timeout=deadline)
        except PlyrError as error:
            outcomes[ref.id] = error

    async with anyio.create_task_group() as group:
        for ref in refs:
            group.start_soon(one, ref)

    return outcomes


def config(**faults: object) -> SimConfig:
    return SimConfig(
        seed=7,
        latency=QUICK,
        workers=None,
        faults=Faults(**faults),  # type: ignore[arg-type]
        retry_sleep_scale=0.001,
    )


class TestSharing:
    async def test_many_waiters_cost_one_check_per_sweep(self) -> None:
        """Fifty waiters on one task: each sweep reads its status once."""
        slow = SimConfig(latency=Latency.fixed(0.3), workers=None)
        async with stack(slow) as (sim, client, poller, spy):
            (ref,) = await submit(client, 1)

            outcomes = await wait_all(poller, [ref] * 50)

            stats = poller.stats
            assert {id(o) for o in outcomes.values()} == {id(outcomes[ref.id])}
            assert isinstance(outcomes[ref.id], TaskResult)
            assert stats.status_requests == stats.sweeps == len(spy.calls)
            assert stats.max_sweep_size == 1
            assert sim.ledger().status_polls == stats.status_requests
            assert stats.resolved == {"success": 1}
            assert stats.watched == stats.waiters == 0

    async def test_sequential_queue_learns_the_order(self) -> None:
        """One consumer: checks follow the queue, about one per task."""
        queue = SimConfig(latency=Latency.fixed(0.01), workers=1)
        async with stack(queue) as (_, client, poller, _spy):
            refs = await submit(client, 300)

            outcomes = await wait_all(poller, refs)

            assert all(isinstance(o, TaskResult) for o in outcomes.values())
            stats = poller.stats
            assert stats.ordered
            assert stats.status_requests / len(refs) < 2.0
            assert set(stats.learned_delays) == {"createGameRoom"}

    async def test_concurrency_cap_holds_across_sweeps(self) -> None:
        """However many tasks are due, at most max_concurrency checks are out."""

        class Gauge(Spy):
            # Each check outlasts several sweep spacings, as on a slow link.
            def __init__(self, client: PlyrClient) -> None:
                super().__init__(client)
                self.out = self.most = 0

            async def task_status(
                self, task_id: str, *, retry: bool = True
            ) -> TaskResult:
                self.out += 1
                self.most = max(self.most, self.out)
                try:
                    await anyio.sleep(0.02)
                    return await super().task_status(task_id, retry=retry)
                finally:
                    self.out -= 1

        async with (
            Simulator(config()) as sim,
            PlyrClient(sim.url, sim.api_key, sim.api_secret) as client,
        ):
            gauge = Gauge(client)
            async with TaskPoller(
                gauge, schedule=FAST, requests_per_second=5000.0, max_concurrency=3
            ) as poller:
                refs = await submit(client, 60)

                outcomes = await wait_all(poller, refs)

                assert all(isinstance(o, TaskResult) for o in outcomes.values())
                assert gauge.most == 3
                assert gauge.out == 0
                assert poller.stats.max_sweep_size <= 3
                assert poller.stats.status_requests == len(gauge.calls)

    async def test_tasks_left_due_by_the_cap_do_not_wait_a_sweep_spacing(
        self,
    ) -> None:
        """A full sweep's leftovers go as slots free up, not a spacing later."""
        # One check at a time and a spacing that would make 20 checks take at
        # least 19 x 5 s: only the backlog rule lets them finish in time.
        lazy = attrs.evolve(FAST, sweep_spacing=5.0)
        async with stack(config(), schedule=lazy, max_concurrency=1) as (
            _,
            client,
            poller,
            _spy,
        ):
            refs = await submit(client, 20)
            with anyio.fail_after(20):
                outcomes = await wait_all(poller, refs)

        assert all(isinstance(o, TaskResult) for o in outcomes.values())
        assert poller.stats.max_sweep_size == 1


class TestSequentialQueue:
    @pytest.mark.parametrize(
        "faults",
        [
            pytest.param({"not_found_window": 0.2}, id="not-found-window"),
            pytest.param({"stuck_rate": 0.05}, id="stuck"),
            pytest.param({"server_error_rate": 0.2}, id="5xx"),
            pytest.param({"revert_rate": 0.2}, id="reverted"),
        ],
    )
    async def test_outcomes_hold_under_faults(self, faults: dict[str, object]) -> None:
        """With one consumer, each task still ends as the simulator says."""
        queue = attrs.evolve(config(**faults), latency=Latency.fixed(0.01), workers=1)
        async with stack(queue) as (sim, client, poller, spy):
            refs = await submit(client, 100)

            # Stuck tasks are checked until this deadline. It leaves room: the
            # test times nothing, but the tasks held back behind stuck ones
            # (until those count as stragglers) must settle on a busy machine
            # too (with 3 s and 150 tasks, 1 run in 4 failed under CPU load).
            outcomes = await wait_all(poller, refs, deadline=6.0)

            expected = {
                TaskState.SUCCESS: TaskResult,
                TaskState.FAILED: TaskFailed,
                TaskState.PENDING: TaskTimeout,
            }
            tasks = sim.ledger().tasks
            for task in tasks:
                assert isinstance(outcomes[task.task_id], expected[task.state])

            # Stuck tasks are checked until their deadline; the others are not
            # held back behind them (above: none timed out) nor hammered (a
            # check every 50 ms of their wait would be about 15 each).
            settled = {t.task_id for t in tasks if t.state.settled}
            calls = sum(1 for task_id in spy.calls if task_id in settled)
            assert calls / len(settled) < 8.0


class TestFaults:
    @pytest.mark.parametrize(
        "faults",
        [
            pytest.param({}, id="clean"),
            pytest.param(
                {"rate_limit_rps": 150.0, "rate_limit_retry_after": 0.05},
                id="429-retry-after",
            ),
            pytest.param(
                {"rate_limit_rps": 150.0, "rate_limit_retry_after": None},
                id="429-bare",
            ),
            pytest.param(
                {"rate_limit_rps": 150.0, "rate_limit_html": True},
                id="429-html",
            ),
            pytest.param({"not_found_window": 0.1}, id="not-found-window"),
            pytest.param({"server_error_rate": 0.3}, id="5xx"),
            pytest.param({"drop_rate": 0.2}, id="dropped"),
        ],
    )
    async def test_hundreds_of_tasks_all_succeed(
        self, faults: dict[str, object]
    ) -> None:
        """Whatever the request-level trouble, every task reports SUCCESS."""
        async with stack(config(**faults)) as (sim, client, poller, _):
            refs = await submit(client, 200)

            outcomes = await wait_all(poller, refs)

            results = [o for o in outcomes.values() if isinstance(o, TaskResult)]
            assert len(results) == len(refs)
            assert all(r.state is TaskState.SUCCESS and r.room_id for r in results)
            stats = poller.stats
            assert stats.resolved == {"success": len(refs)}
            if "rate_limit_rps" in faults:
                assert stats.rate_limited > 0

            if "server_error_rate" in faults or "drop_rate" in faults:
                assert stats.retries > 0

            assert sim.ledger().status_polls <= stats.status_requests

    async def test_rate_limits_and_retries_are_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """429s and retried checks are WARNINGs; every sweep is a DEBUG line."""
        trouble = config(rate_limit_rps=100.0, rate_limit_retry_after=0.02)
        caplog.set_level(logging.DEBUG, logger="plyr_rooms.poller")
        async with stack(trouble) as (_, client, poller, _spy):
            refs = await submit(client, 100)

            await wait_all(poller, refs)

        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        sweeps = [r for r in caplog.records if r.getMessage().startswith("sweep ")]
        paused = [text for text in warnings if "rate limited" in text]
        assert paused
        # Every 429 pauses the sweeps, but a pause is logged once: the other
        # 429s of the same sweep add nothing to it.
        assert len(paused) < poller.stats.rate_limited
        assert len(sweeps) == poller.stats.sweeps

    async def test_reverted_tasks_fail_with_their_result(self) -> None:
        """A reverted task raises TaskFailed carrying the server's message."""
        async with stack(config(revert_rate=0.3)) as (sim, client, poller, _):
            refs = await submit(client, 200)

            outcomes = await wait_all(poller, refs)

            states = {t.task_id: t.state for t in sim.ledger().tasks}
            for task_id, outcome in outcomes.items():
                if states[task_id] is TaskState.FAILED:
                    assert isinstance(outcome, TaskFailed)
                    assert outcome.result.error_message == "Transaction Receipt Failed"
                else:
                    assert isinstance(outcome, TaskResult)

            assert 0 < poller.stats.resolved["failed"] < len(refs)

    async def test_stuck_tasks_time_out_and_nothing_else(self) -> None:
        """Stuck tasks end in TaskTimeout (never TaskFailed); the rest succeed."""
        async with stack(config(stuck_rate=0.2)) as (sim, client, poller, _):
            refs = await submit(client, 100)

            outcomes = await wait_all(poller, refs, deadline=1.0)

            states = {t.task_id: t.state for t in sim.ledger().tasks}
            stuck = {t for t, s in states.items() if s is TaskState.PENDING}
            assert stuck
            assert {
                t for t, o in outcomes.items() if isinstance(o, TaskTimeout)
            } == stuck
            assert all(
                isinstance(o, TaskResult) for t, o in outcomes.items() if t not in stuck
            )
            assert poller.stats.resolved["timeout"] == len(stuck)
            assert poller.stats.watched == 0

    async def test_unknown_task_is_lost_after_the_grace(self) -> None:
        """NOT_FOUND past the grace period raises TaskLost."""
        async with stack(config(), not_found_grace=0.1) as (_, _c, poller, _s):
            ref = TaskRef("1-0", "createGameRoom")

            with pytest.raises(TaskLost) as caught:
                await poller.wait(ref)

            assert caught.value.task_id == "1-0"
            assert poller.stats.resolved == {"lost": 1}

    async def test_malformed_id_fails_only_its_waiters(self) -> None:
        """A malformed id's 500 reaches its waiters; other tasks carry on."""
        async with stack(config()) as (_, client, poller, _):
            refs = [TaskRef("not-an-id", "createGameRoom"), *await submit(client, 5)]

            outcomes = await wait_all(poller, refs)

            bad = outcomes.pop("not-an-id")
            assert isinstance(bad, ServerError)
            assert bad.status == 500
            assert "Invalid stream ID" in bad.message
            assert all(isinstance(o, TaskResult) for o in outcomes.values())


class TestDeadlinesAndCancellation:
    async def test_deadline_shorter_than_the_first_check_is_honoured(self) -> None:
        """The waiter wakes at its deadline, long before any check is due."""
        late = PollSchedule(first_delay=20.0, max_first_delay=20.0)
        async with stack(config(), schedule=late) as (_, client, poller, spy):
            (ref,) = await submit(client, 1)

            with anyio.fail_after(10), pytest.raises(TaskTimeout):
                await poller.wait(ref, timeout=0.05)

            assert spy.calls == []
            assert poller.stats.watched == 0

    async def test_cancelled_waiter_leaves_nothing_behind(self) -> None:
        """After cancellation the task is neither watched nor checked again."""
        stuck = config(stuck_rate=1.0)
        async with stack(stuck) as (_, client, poller, spy):
            abandoned, kept = await submit(client, 2)
            async with anyio.create_task_group() as group:
                group.start_soon(poller.wait, abandoned)
                group.start_soon(poller.wait, kept)
                await spy.checked(abandoned.id, kept.id)
                group.cancel_scope.cancel()

            assert poller.stats.watched == poller.stats.waiters == 0
            before = len(spy.calls)
            # A fresh task is checked several times; the abandoned ones never.
            with pytest.raises(TaskTimeout):
                await poller.wait(kept, timeout=0.3)

            assert abandoned.id not in spy.calls[before:]
            assert spy.calls[before:].count(kept.id) >= 2

    async def test_one_cancelled_waiter_keeps_the_others(self) -> None:
        """Cancelling one of two waiters on a task leaves the other waiting."""
        slow = SimConfig(latency=Latency.fixed(0.2), workers=None)
        async with stack(slow) as (_, client, poller, spy):
            (ref,) = await submit(client, 1)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await poller.wait(ref)

            result: list[TaskResult] = []

            async def keep() -> None:
                result.append(await poller.wait(ref))

            async with anyio.create_task_group() as group:
                group.start_soon(keep)
                with anyio.move_on_after(0.01):
                    await poller.wait(ref)

            assert result[0].state is TaskState.SUCCESS
            assert spy.calls.count(ref.id) == poller.stats.status_requests

    async def test_closing_releases_every_waiter(self) -> None:
        """Leaving the poller's context wakes all waiters with PollerClosed."""
        stuck = config(stuck_rate=1.0)
        async with (
            Simulator(stuck) as sim,
            PlyrClient(sim.url, sim.api_key, sim.api_secret) as client,
        ):
            refs = await submit(client, 5)
            spy = Spy(client)
            errors: list[BaseException] = []

            async def waiter(ref: TaskRef) -> None:
                try:
                    await poller.wait(ref)
                except PollerClosed as error:
                    errors.append(error)

            poller = TaskPoller(spy, schedule=FAST)
            async with anyio.create_task_group() as group, poller:
                for ref in refs * 2:
                    group.start_soon(waiter, ref)

                await spy.checked(*(r.id for r in refs))

            assert len(errors) == 10
            assert poller.stats.resolved == {"closed": 5}
            with pytest.raises(PollerClosed):
                await poller.wait(refs[0])

    async def test_wait_outside_the_context_is_refused(self) -> None:
        """A poller that was never entered cannot wait."""
        async with PlyrClient("http://127.0.0.1:9", "k", "s" * 64) as client:
            poller = TaskPoller(client)

            with pytest.raises(PollerClosed):
                await poller.wait(TaskRef("1-0", "createGameRoom"))

            assert math.isclose(poller.stats.mean_sweep_size, 0.0)
