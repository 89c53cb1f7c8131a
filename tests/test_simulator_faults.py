"""Each injected fault happens, at about its configured rate, with a fixed seed.

The bounds are statistical (a binomial count within +/-3 standard deviations
or wider), not exact, so the tests do not depend on how draws are ordered.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import attrs
import pytest

from plyr_rooms.simulator import Faults, Latency, SimConfig, Simulator
from plyr_rooms.simulator._probe import Probe
from plyr_rooms.tasks import TaskState

if TYPE_CHECKING:
    from plyr_rooms.simulator._probe import Answer

pytestmark = pytest.mark.anyio

N = 200


def config(faults: Faults, **changes: Any) -> SimConfig:
    base = SimConfig(
        seed=7,
        latency=Latency.fixed(0.001),
        workers=None,
        sync_interval=0.002,
        retry_sleep_scale=0.0005,
        faults=faults,
    )
    return attrs.evolve(base, **changes)


def assert_rate(count: int, n: int, rate: float) -> None:
    spread = 3.5 * math.sqrt(n * rate * (1 - rate)) + 1
    assert abs(count - n * rate) <= spread, (count, n, rate)


async def create_many(api: Probe, n: int = N) -> list[Answer]:
    submitted = [await api.post("/game/create", {}) for _ in range(n)]
    return [await api.settle(answer.task_id) for answer in submitted]


async def test_revert_rate() -> None:
    async with Simulator(config(Faults(revert_rate=0.3))) as sim, Probe(sim) as api:
        answers = await create_many(api)
        failed = [a for a in answers if a.data["status"] == "FAILED"]
        assert_rate(len(failed), N, 0.3)
        assert {a.data["errorMessage"] for a in failed} == {
            "Transaction Receipt Failed"
        }
        # Nothing executed for a reverted task: the rooms are the successes only.
        assert len(sim.ledger().rooms) == N - len(failed)


async def test_failed_but_executed_rate() -> None:
    faults = Faults(failed_but_executed_rate=0.25)
    async with Simulator(config(faults)) as sim, Probe(sim) as api:
        answers = await create_many(api)
        failed = [a for a in answers if a.data["status"] == "FAILED"]
        assert_rate(len(failed), N, 0.25)
        assert {a.data["errorMessage"] for a in failed} == {None}
        assert isinstance(failed[0].data["taskData"], list)
        # Every task, reported FAILED or not, made its room.
        assert len(sim.ledger().rooms) == N


async def test_revert_is_not_retried() -> None:
    """A reverted task settles at once: no 1 s / 2 s / 3 s retry sleeps."""
    faults = Faults(revert_rate=1.0)
    # Scaled so that a single retry sleep would outlast the deadline below.
    slow_retries = config(faults, retry_sleep_scale=30.0)
    async with Simulator(slow_retries) as sim, Probe(sim) as api:
        with anyio.fail_after(10):
            submitted = await api.post("/game/create", {})
            answer = await api.settle(submitted.task_id)

        assert answer.data["status"] == "FAILED"
        assert answer.data["errorMessage"] == "Transaction Receipt Failed"


@pytest.mark.parametrize(
    ("faults", "status", "paid"),
    [
        (Faults(failed_but_executed_rate=1.0), "FAILED", 4),
        (Faults(double_execution_rate=1.0), "SUCCESS", 8),
        (Faults(late_revert_rate=1.0), "FAILED", 4),
    ],
    ids=["failed-but-executed", "double-execution", "late-revert"],
)
async def test_allowance_is_spent_only_by_a_success(
    faults: Faults, status: str, paid: int
) -> None:
    """A pay reported FAILED spends no allowance, even though it executed; a pay
    executed twice by a retry spends it once (the worker's success side effect)."""
    async with Simulator(config(faults)) as sim, Probe(sim) as api:
        (player,) = await sim.add_players(1, balance=100, allowance=10)
        created = await api.post("/game/create", {"sync": True})
        room_id = str(len(sim.ledger().rooms))
        assert created.status == 200
        jwts = [player.session_jwt]
        joined = await api.post(
            "/game/join", {"roomId": room_id, "sessionJwts": jwts, "sync": 1}
        )
        assert joined.status == 200
        body = {
            "roomId": room_id,
            "sessionJwts": jwts,
            "tokens": ["plyr"],
            "amounts": ["4"],
            "sync": True,
        }
        answer = await api.post("/game/pay", body)
        assert answer.data["status"] == status
        ledger = sim.ledger()
        assert ledger.balances[player.plyr_id]["plyr"] == 100 - paid
        spent = 4 if status == "SUCCESS" else 0
        assert ledger.allowances[player.plyr_id]["plyr"] == 10 - spent


async def test_double_execution_rate() -> None:
    faults = Faults(double_execution_rate=0.3)
    async with Simulator(config(faults)) as sim, Probe(sim) as api:
        answers = await create_many(api)
        assert {a.data["status"] for a in answers} == {"SUCCESS"}
        doubled = len(sim.ledger().rooms) - N
        assert_rate(doubled, N, 0.3)
        # The answer names the second room; the first exists all the same.
        room_ids = sorted(int(a.data["taskData"]["result"]["roomId"]) for a in answers)
        assert room_ids[-1] == N + doubled


async def test_late_revert_rate() -> None:
    """The first attempt executes and loses its receipt; the retry reverts."""
    faults = Faults(late_revert_rate=0.3)
    async with Simulator(config(faults)) as sim, Probe(sim) as api:
        answers = await create_many(api)
        failed = [a for a in answers if a.data["status"] == "FAILED"]
        assert_rate(len(failed), N, 0.3)
        assert {a.data["errorMessage"] for a in failed} == {
            "Transaction Receipt Failed"
        }
        # Every task executed exactly once, the reverted ones included.
        assert len(sim.ledger().rooms) == N
        # A reverted one answers only after the lost receipt's budget (40 s,
        # scaled like the retry sleeps) and the first retry sleep.
        ids = {a.data["taskId"] for a in failed}
        scale = config(faults).retry_sleep_scale
        for record in sim.ledger().tasks:
            if record.task_id in ids:
                assert record.completed_at is not None
                took = record.completed_at - record.submitted_at
                assert took >= 41 * scale


async def test_stuck_rate() -> None:
    async with Simulator(config(Faults(stuck_rate=0.2))) as sim, Probe(sim) as api:
        ids = [(await api.post("/game/create", {})).task_id for _ in range(N)]
        worker = sim.state.worker
        stuck = [i for i in ids if worker.tasks[i].fault == "stuck"]
        assert_rate(len(stuck), N, 0.2)
        for task_id in set(ids) - set(stuck):
            await api.settle(task_id)

        for task_id in stuck:
            answer = await api.get(f"/task/status/{task_id}")
            assert answer.data == {"status": "PENDING"}

        states = {r.state for r in sim.ledger().tasks if r.task_id in stuck}
        assert states == {TaskState.PENDING}


async def test_stuck_sync_call_times_out() -> None:
    faults = Faults(stuck_rate=1.0)
    async with Simulator(config(faults, sync_checks=3)) as sim, Probe(sim) as api:
        answer = await api.post("/game/create", {"sync": True})
        assert (answer.status, answer.data["status"]) == (504, "TIMEOUT")


async def test_not_found_window() -> None:
    faults = Faults(not_found_window=0.5)
    async with Simulator(config(faults)) as sim, Probe(sim) as api:
        submitted = await api.post("/game/create", {})
        early = await api.get(f"/task/status/{submitted.task_id}")
        assert early.data == {"status": "NOT_FOUND"}
        late = await api.settle(submitted.task_id)
        assert late.data["status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("retry_after", "html", "header", "kind"),
    [
        (1.0, False, "1", "application/json"),
        (0.25, True, "0.25", "text/html"),
        (None, False, None, "application/json"),
    ],
)
async def test_rate_limit(
    retry_after: float | None, html: bool, header: str | None, kind: str
) -> None:
    faults = Faults(
        rate_limit_rps=20, rate_limit_retry_after=retry_after, rate_limit_html=html
    )
    async with Simulator(config(faults)) as sim, Probe(sim) as api:
        loop = asyncio.get_running_loop()
        start = loop.time()
        answers = [await api.get("/now") for _ in range(100)]
        elapsed = loop.time() - start
        limited = [a for a in answers if a.status == 429]
        # A bucket of one second's budget, refilled at the rate while we ran.
        assert len(answers) - len(limited) <= 20 + 20 * elapsed + 1
        assert len(limited) == sim.ledger().rate_limited > 0
        assert limited[0].headers.get("Retry-After") == header
        assert limited[0].headers["Content-Type"].startswith(kind)
        assert sim.ledger().requests_by_route["GET /api/now"] == 100


async def test_server_error_rate() -> None:
    faults = Faults(server_error_rate=0.3)
    async with Simulator(config(faults)) as sim, Probe(sim) as api:
        answers = [await api.get("/now") for _ in range(N)]
        errors = [a for a in answers if a.status >= 500]
        assert_rate(len(errors), N, 0.3)
        assert len(errors) == sim.ledger().counters.server_errors


async def test_drop_rate() -> None:
    faults = Faults(drop_rate=0.3)
    async with Simulator(config(faults)) as sim, Probe(sim) as api:
        dropped = 0
        for _ in range(N):
            try:
                await api.post("/game/create", {})
            except aiohttp.ClientError:
                dropped += 1

        assert_rate(dropped, N, 0.3)
        assert dropped == sim.ledger().counters.dropped
        # A dropped request was never handled: no task behind it.
        assert sum(sim.ledger().tasks_by_method.values()) == N - dropped


async def test_faults_parse_from_text() -> None:
    faults = Faults.parse("revert=0.05,stuck=0.01,rate_limit_rps=20,rate_limit_html")
    assert faults == Faults(
        revert_rate=0.05, stuck_rate=0.01, rate_limit_rps=20, rate_limit_html=True
    )
    assert Latency.parse("uniform:0.1,0.5") == Latency.uniform(0.1, 0.5)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse("meteor=1")
