"""The strategies a benchmark compares, each walking rooms through their lifecycle.

Every strategy runs the same rooms (same players, same stakes, winner takes the
pot) and writes the same records into a :class:`Recorder`: for each step, the
task id, when the step started, and when it returned to the room. The driver
matches task ids with the simulator's completion stamps to get added latency.

- ``naive``: submit, then check that one task every ``naive_interval`` seconds
  until it settles (the official example client's loop).
- ``sync``: submit with ``sync=True``; the server waits and answers the outcome.
- ``shared-tasks``: submit with :class:`PlyrClient`, wait on one shared
  :class:`TaskPoller` (no room objects).
- ``shared`` and ``atomic``: see :mod:`plyr_rooms._bench._rooms`.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ..errors import TaskFailed
from ..tasks import AlreadyJoined, TaskRef, TaskResult, TaskState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..client import PlyrClient
    from ..journal import JournalStats
    from ..poller import PollerStats
    from ._config import BenchConfig, Player

__all__ = ["CountingSource", "Recorder", "TaskWalk", "naive_waiter"]


@attrs.define(eq=False)
class Recorder:
    """What one strategy's rooms did, in plain lists the driver can ship as JSON.

    ``steps`` rows are ``[room, step, task_id, started, returned]`` with
    ``time.monotonic()`` stamps; ``status_times`` holds the time of every status
    request the client sent.
    """

    steps: list[list[Any]] = attrs.Factory(list)
    status_times: list[float] = attrs.Factory(list)
    rooms_ended: int = 0
    rooms_failed: int = 0
    errors: dict[str, int] = attrs.Factory(dict)
    first_error: str | None = None
    # The shared poller's stats as it closed (None for strategies without one).
    poller: dict[str, Any] | None = None
    # The journal's stats as it closed (None without a journal).
    journal: dict[str, Any] | None = None

    def poller_closing(self, stats: PollerStats) -> None:
        """Keep the shared poller's final stats for the report."""
        self.poller = attrs.asdict(stats)

    def journal_closing(self, stats: JournalStats) -> None:
        """Keep the journal's final stats for the report."""
        self.journal = attrs.asdict(stats)

    def step(self, room: int, step: str, task_id: str | None, started: float) -> None:
        """Record a step that just returned successfully."""
        self.steps.append([room, step, task_id, started, time.monotonic()])

    def failed(self, error: Exception) -> None:
        """Record a room that stopped on *error*."""
        name = type(error).__name__
        self.rooms_failed += 1
        self.errors[name] = self.errors.get(name, 0) + 1
        if self.first_error is None:
            self.first_error = f"{name}: {error}"[:300]


class CountingSource:
    """A status source that stamps every status request it forwards."""

    def __init__(self, client: PlyrClient, recorder: Recorder) -> None:
        self._client = client
        self._times = recorder.status_times

    async def task_status(self, task_id: str, *, retry: bool = True) -> TaskResult:
        """Read a task's status through the client, stamping the request."""
        self._times.append(time.monotonic())
        return await self._client.task_status(task_id, retry=retry)


def naive_waiter(
    source: CountingSource, interval: float
) -> Callable[[TaskRef], Awaitable[TaskResult]]:
    """Return a wait that checks one task every *interval* seconds until settled."""

    async def wait(ref: TaskRef) -> TaskResult:
        while True:
            await anyio.sleep(interval)
            result = await source.task_status(ref.id)
            if result.state.settled:
                return result

    return wait


class TaskWalk:
    """The six-step walk over :class:`PlyrClient`, one step at a time.

    Args:
        client: the client every request goes through.
        config: stakes, token and the per-step deadline.
        recorder: where steps and errors go.
        wait: settles a submitted task (None: submit with ``sync=True``).
    """

    def __init__(
        self,
        client: PlyrClient,
        config: BenchConfig,
        recorder: Recorder,
        wait: Callable[[TaskRef], Awaitable[TaskResult]] | None,
    ) -> None:
        self._client = client
        self._config = config
        self._recorder = recorder
        self._wait = wait

    async def run_room(self, index: int, players: tuple[Player, ...]) -> None:
        """Walk room *index* from create to end; errors are recorded, not raised."""
        try:
            with anyio.fail_after(self._config.step_timeout * 6):
                await self._walk(index, players)
        except Exception as error:  # one room's failure is a figure, not a crash
            self._recorder.failed(error)
        else:
            self._recorder.rooms_ended += 1

    async def _walk(self, index: int, players: tuple[Player, ...]) -> None:
        client, config = self._client, self._config
        jwts = [p.session_jwt for p in players]
        ids = [p.plyr_id for p in players]
        tokens = [config.token] * len(players)
        stakes = [config.stake] * len(players)
        pot = format(Decimal(config.stake) * len(players), "f")
        winner = ids[index % len(ids)]

        created = await self._step(index, "create", lambda s: client.create(sync=s))
        room = created.room_id if created is not None else None
        if room is None:
            raise RuntimeError("create returned no room id")

        await self._step(index, "join", lambda s: client.join(room, jwts, sync=s))
        await self._step(
            index, "pay", lambda s: client.pay(room, jwts, tokens, stakes, sync=s)
        )
        await self._step(
            index,
            "earn",
            lambda s: client.earn(room, [winner], [config.token], [pot], sync=s),
        )
        await self._step(index, "leave", lambda s: client.leave(room, jwts, sync=s))
        await self._step(index, "end", lambda s: client.end(room, sync=s))

    async def _step(
        self,
        index: int,
        name: str,
        submit: Callable[[bool], Awaitable[TaskRef | TaskResult | AlreadyJoined]],
    ) -> TaskResult | None:
        started = time.monotonic()
        with anyio.fail_after(self._config.step_timeout):
            answer = await submit(self._wait is None)
            if isinstance(answer, AlreadyJoined):
                self._recorder.step(index, name, None, started)
                return None

            if isinstance(answer, TaskRef):
                assert self._wait is not None
                result = await self._wait(answer)
                task_id: str | None = answer.id
            else:
                result, task_id = answer, answer.task_id

        if result.state is TaskState.FAILED:
            raise TaskFailed(result)

        self._recorder.step(index, name, task_id, started)
        return result
