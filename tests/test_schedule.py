"""Properties of the poller's pure scheduling logic, driven without I/O."""

from __future__ import annotations

import math
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plyr_rooms._estimate import quantile as _quantile
from plyr_rooms._ratelimit import TokenBucket
from plyr_rooms._schedule import Outcome, PollSchedule, Scheduler

schedules = st.builds(
    PollSchedule,
    first_delay=st.floats(0.05, 5.0),
    interval=st.floats(0.05, 2.0),
    backoff=st.floats(1.0, 2.0),
    max_interval=st.floats(0.1, 5.0),
    jitter=st.floats(0.0, 0.4),
    max_defer=st.floats(0.1, 60.0),
    sweep_spacing=st.floats(0.0, 0.2),
)
outcomes = st.sampled_from(list(Outcome))


class TestPollSchedule:
    @given(schedules, st.integers(1, 200))
    def test_backoff_grows_to_the_cap(
        self, schedule: PollSchedule, checks: int
    ) -> None:
        """Intervals never shrink and never pass max_interval."""
        before = schedule.interval_after(checks)
        after = schedule.interval_after(checks + 1)

        assert before <= after <= schedule.max_interval
        assert schedule.interval_after(1) == min(
            schedule.interval, schedule.max_interval
        )

    @given(schedules, st.integers(1, 100))
    def test_error_delay_doubles_to_its_cap(
        self, schedule: PollSchedule, errors: int
    ) -> None:
        """Retry delays after failed checks grow and stay capped."""
        delay = schedule.error_delay(errors)

        assert delay <= schedule.error_delay(errors + 1) <= schedule.max_error_interval

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"jitter": 0.5},
            {"backoff": 0.9},
            {"first_quantile": 1.0},
            {"interval": 0.0},
            {"first_delay": 100.0},
            {"sweep_spacing": -1.0},
        ],
    )
    def test_nonsense_is_refused(self, kwargs: dict[str, float]) -> None:
        """Impossible schedules fail at construction."""
        with pytest.raises(ValueError, match=r"must|need"):
            PollSchedule(**kwargs)  # type: ignore[arg-type]


class TestDueTimes:
    @given(schedules, st.floats(0.0, 1e5), st.integers(0, 2**32))
    def test_first_check_follows_the_default_delay(
        self, schedule: PollSchedule, submitted: float, seed: int
    ) -> None:
        """Before anything is learned, the first check comes near first_delay."""
        scheduler = Scheduler(schedule, random.Random(seed))
        scheduler.add("t", "m", submitted)
        delay = scheduler.due_at("t") - submitted

        low = schedule.first_delay * (1 - schedule.jitter)
        high = schedule.first_delay * (1 + schedule.jitter)
        assert max(low, schedule.min_first_delay) - 1e-9 <= delay <= high + 1e-9

    @given(
        schedules,
        st.integers(0, 2**32),
        st.lists(st.tuples(st.floats(0.0, 3.0), outcomes), min_size=1, max_size=40),
    )
    def test_recheck_is_in_the_future_within_its_jitter(
        self,
        schedule: PollSchedule,
        seed: int,
        steps: list[tuple[float, Outcome]],
    ) -> None:
        """After each check, the next one is ahead, and jittered within bounds."""
        scheduler = Scheduler(
            attrs.evolve(schedule, ordered=False), random.Random(seed)
        )
        scheduler.add("t", "m", 0.0)
        now, checks, errors = 0.0, 0, 0
        for wait, outcome in steps:
            now = max(now + wait, scheduler.due_at("t"))
            assert scheduler.pick(now, 1) == ["t"]
            scheduler.record(now, {"t": outcome})
            if outcome is Outcome.SETTLED:
                assert "t" not in scheduler
                return

            if outcome is Outcome.SKIPPED:
                continue

            gap = scheduler.due_at("t") - now
            if outcome is Outcome.ERROR:
                errors += 1
                nominal = schedule.error_delay(errors)
            else:
                checks, errors = checks + 1, 0
                nominal = schedule.interval_after(checks)

            assert gap > 0
            assert nominal * (1 - schedule.jitter) - 1e-9 <= gap
            assert gap <= nominal * (1 + schedule.jitter) + 1e-9


def _drive(
    scheduler: Scheduler,
    rng: random.Random,
    finish: dict[str, float],
    *,
    settle: bool = True,
    rounds: int = 400,
) -> tuple[int, dict[str, float]]:
    """Run sweeps at each next due time; answer from *finish* (completion times).

    Asserts after every sweep that no task waits longer than the schedule's
    bound since its submission or last check. Returns the number of checks and,
    per settled task, the time from its completion to the check that saw it.
    """
    schedule = scheduler.schedule
    bound = schedule.longest_wait() + 1e-6
    last: dict[str, float] = {}
    now, checks, last_sweep = 0.0, 0, -math.inf
    late: dict[str, float] = {}
    for task_id in sorted(finish):
        scheduler.add(task_id, "m", 0.0)
        last[task_id] = 0.0

    for _ in range(rounds):
        due = scheduler.next_due()
        if due is None:
            break

        # As the poller does: sweeps at least sweep_spacing apart.
        now = max(now, due, last_sweep + schedule.sweep_spacing)
        last_sweep = now
        picked = scheduler.pick(now, 64)
        answers: dict[str, Outcome] = {}
        for task_id in picked:
            done = settle and finish[task_id] <= now
            answers[task_id] = Outcome.SETTLED if done else Outcome.PENDING
            last[task_id] = now
            if done:
                late[task_id] = now - finish[task_id]

        checks += len(picked)
        now += rng.uniform(0.0, 0.01)
        scheduler.record(now, answers)
        for task_id, when in last.items():
            if task_id in scheduler:
                assert scheduler.due_at(task_id) <= when + bound

    return checks, late


answers = st.lists(
    st.tuples(st.floats(0.01, 100.0), st.booleans()), min_size=1, max_size=300
)


class TestLearning:
    @given(answers, st.floats(0.05, 0.95))
    def test_estimate_stays_near_the_data(
        self, points: list[tuple[float, bool]], share: float
    ) -> None:
        """The learned delay never reaches far beyond the first checks seen."""
        estimate, _ = _quantile(points, share)
        times = [when for when, _ in points]

        assert (
            min(times) / 1.5 * (1 - 1e-9) <= estimate <= max(times) * 1.5 * (1 + 1e-9)
        )

    @given(answers, st.floats(0.05, 0.9), st.floats(0.0, 0.09))
    def test_estimate_grows_with_the_share(
        self, points: list[tuple[float, bool]], share: float, more: float
    ) -> None:
        """Asking for a larger share of tasks settled never gives an earlier time."""
        low, _ = _quantile(points, share)
        high, _ = _quantile(points, share + more)

        assert low <= high * (1 + 1e-9)

    @settings(deadline=None, max_examples=40)
    @given(st.floats(0.05, 20.0), st.integers(0, 2**32))
    def test_learned_delay_converges_to_the_duration(
        self, duration: float, seed: int
    ) -> None:
        """With every task taking the same time, the first check learns it."""
        rng = random.Random(seed)
        scheduler = Scheduler(PollSchedule(ordered=False), rng)
        now = 0.0
        for index in range(300):
            task_id = str(index)
            scheduler.add(task_id, "m", now)
            check = scheduler.due_at(task_id)
            assert scheduler.pick(check, 1) == [task_id]
            settled = check - now >= duration
            outcome = Outcome.SETTLED if settled else Outcome.PENDING
            scheduler.record(check, {task_id: outcome})
            scheduler.remove(task_id)
            now = check + rng.uniform(0.0, 0.1)

        learned = scheduler.first_delay("m")
        assert duration / 1.6 <= learned <= duration * 1.6
        assert scheduler.learned_delays() == {"m": learned}

    @settings(deadline=None, max_examples=30)
    @given(st.integers(0, 2**32), st.booleans())
    def test_no_task_is_starved(self, seed: int, ordered: bool) -> None:
        """Whatever the queue model believes, every task keeps being checked."""
        rng = random.Random(seed)
        # A sequential queue with a few tasks stuck for good: the queue model
        # takes over, yet the stuck ones are checked at bounded intervals.
        finish = {f"{i:04d}": 0.05 * (i + 1) for i in range(200)}
        for task_id in rng.sample(sorted(finish), 5):
            finish[task_id] = math.inf

        scheduler = Scheduler(PollSchedule(ordered=ordered), rng)
        _drive(scheduler, rng, finish, rounds=3000)

        left = {t for t in finish if t in scheduler}
        assert left == {t for t, f in finish.items() if f == math.inf}

    @settings(deadline=None, max_examples=20)
    @given(st.integers(0, 2**32))
    def test_pending_forever_is_still_checked(self, seed: int) -> None:
        """Tasks that never settle are rechecked within the bound, forever."""
        rng = random.Random(seed)
        finish = {f"{i:03d}": math.inf for i in range(50)}
        scheduler = Scheduler(PollSchedule(), rng)

        checks, _ = _drive(scheduler, rng, finish, settle=False, rounds=500)

        assert len(scheduler) == 50
        assert checks >= 500


class TestQueueModel:
    def test_sequential_queue_costs_about_one_check_per_task(self) -> None:
        """Completions in submission order: the queue model places checks."""
        rng = random.Random(1)
        finish = {f"{i:04d}": 0.05 * (i + 1) for i in range(1000)}
        scheduler = Scheduler(PollSchedule(), rng)

        checks, late = _drive(scheduler, rng, finish, rounds=20_000)

        assert len(scheduler) == 0
        assert scheduler.ordered
        assert checks / len(finish) < 1.5
        # Once the first checks have taught the queue's pace, completions are
        # seen within a fraction of a second.
        assert max(late[t] for t in finish if finish[t] > 3.0) < 0.5

    def test_stuck_tasks_do_not_hold_back_the_queue(self) -> None:
        """A task stuck at the head of the queue stops being its anchor."""
        rng = random.Random(4)
        finish = {f"{i:04d}": 0.05 * (i + 1) for i in range(400)}
        for task_id in ("0100", "0101", "0250"):
            finish[task_id] = math.inf

        scheduler = Scheduler(PollSchedule(), rng)
        _, late = _drive(scheduler, rng, finish, rounds=4000)

        assert len(scheduler) == 3
        assert max(late[t] for t in late if finish[t] > 3.0) < 1.0

    def test_independent_latencies_keep_the_own_schedule(self) -> None:
        """Completions out of order: the queue model stays off."""
        rng = random.Random(2)
        finish = {
            f"{i:04d}": rng.lognormvariate(math.log(3.0), 0.5) for i in range(1000)
        }
        scheduler = Scheduler(PollSchedule(), rng)

        checks, _ = _drive(scheduler, rng, finish, rounds=20_000)

        assert len(scheduler) == 0
        assert not scheduler.ordered
        # A naive loop polling every second needs about E[T] + 0.5 ~ 3.9.
        assert checks / len(finish) < 3.2

    def test_rate_limit_pauses_every_check(self) -> None:
        """After a 429 nothing is due before the pause ends; backoff doubles."""
        scheduler = Scheduler(PollSchedule(rate_limit_pause=1.0), random.Random(3))
        scheduler.add("a", "m", 0.0)

        assert scheduler.rate_limited(10.0, None) == 11.0
        assert scheduler.pick(10.5, 10) == []
        assert scheduler.next_due() == 11.0
        assert scheduler.rate_limited(11.0, None) == 13.0
        assert scheduler.rate_limited(11.0, 0.5) == 13.0
        scheduler.checks_went_through()
        assert scheduler.rate_limited(20.0, None) == 21.0
        assert scheduler.rate_limited(20.0, 5.0) == 25.0


class TestTokenBucket:
    @given(
        st.floats(0.5, 1000.0),
        st.floats(1.0, 100.0),
        st.lists(st.floats(0.0, 2.0), max_size=50),
    )
    def test_never_grants_more_than_the_budget(
        self, rate: float, burst: float, gaps: list[float]
    ) -> None:
        """Tokens taken over any run stay within burst + rate * elapsed."""
        bucket = TokenBucket(rate, burst)
        now, taken = 0.0, 0
        for gap in gaps:
            now += gap
            grant = bucket.available(now)
            bucket.take(now, grant)
            taken += grant
            assert bucket.ready_at(now) >= now

        assert taken <= burst + rate * now + 1e-6


def _race(
    schedule: PollSchedule, seed: int, *, sequential: bool, late: bool = True
) -> bool:
    """Drive twin schedulers, one picking from its indices, one by a full scan.

    Asserts after every step that both agree on the next due time and pick the
    same tasks in the same order. With *late*, some tasks are added after tasks
    submitted later. Returns whether the queue model was ever on.
    """
    rng = random.Random(seed)
    fast = Scheduler(schedule, random.Random(seed))
    scan = Scheduler(schedule, random.Random(seed))
    finish: dict[str, float] = {}
    now, line, queue_used = 0.0, 0.0, False
    for step in range(600):
        for _ in range(rng.randrange(4) if step < 450 else 0):
            task_id = str(len(finish))
            early = late and rng.random() < 0.1
            submitted = now - rng.uniform(0.0, 0.5) if early else now
            line = max(line, submitted) + 0.03
            took = line if sequential else now + rng.lognormvariate(0.0, 0.5)
            finish[task_id] = math.inf if rng.random() < 0.02 else took
            method = rng.choice("ab") if step % 2 else "a"
            for scheduler in (fast, scan):
                scheduler.add(task_id, method, submitted)

        if rng.random() < 0.03 and finish:
            gone = rng.choice(sorted(finish))
            fast.remove(gone)
            scan.remove(gone)

        if rng.random() < 0.01:
            fast.rate_limited(now, None)
            scan.rate_limited(now, None)

        due = fast.next_due()
        assert due == scan._scan_next_due()
        jump = due is not None and rng.random() < 0.7
        now = max(now, due) if jump and due is not None else now
        now += rng.uniform(0.0, 0.05)
        limit = rng.choice([0, 1, 3, 64])
        picked = fast.pick(now, limit)
        assert picked == scan._scan_pick(now, limit)
        queue_used = queue_used or fast._queue_on()
        now += rng.uniform(0.0, 0.01)
        answers: dict[str, Outcome] = {}
        for task_id in picked:
            roll = rng.random()
            if roll < 0.05:
                answers[task_id] = rng.choice(
                    [Outcome.ERROR, Outcome.UNKNOWN, Outcome.SKIPPED]
                )
            elif finish[task_id] <= now:
                answers[task_id] = Outcome.SETTLED
            else:
                answers[task_id] = Outcome.PENDING

        fast.record(now, answers)
        scan.record(now, answers)
        assert len(fast) == len(scan)

    return queue_used


class TestIndices:
    @settings(deadline=None, max_examples=40)
    @given(schedules, st.integers(0, 2**32), st.booleans(), st.booleans())
    def test_picks_as_a_full_scan_would(
        self, schedule: PollSchedule, seed: int, sequential: bool, late: bool
    ) -> None:
        """The indices give the same due times and picks as scanning every task."""
        _race(schedule, seed, sequential=sequential, late=late)

    @pytest.mark.parametrize("seed", range(4))
    def test_picks_as_a_full_scan_would_under_the_queue_model(self, seed: int) -> None:
        """The same, on a sequential queue that switches the queue model on."""
        assert _race(PollSchedule(), seed, sequential=True, late=seed % 2 == 0)
