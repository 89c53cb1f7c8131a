"""The measured side: one strategy's rooms, run by one client process.

Run as ``python -m plyr_rooms._bench._client_child``: the first stdin line is the job
(``{"kind": "rooms" | "cpu", "strategy", "config", "target", ...}``); the process
writes ``{"progress": [ended, failed]}`` lines while it runs and one
``{"result": {...}}`` line at the end. Running each strategy in a fresh process
keeps its CPU time and peak RSS its own.
"""

from __future__ import annotations

import resource
import time
from typing import TYPE_CHECKING, Any

import anyio

from ..client import PlyrClient
from ..poller import TaskPoller
from ._config import BenchConfig, Target, room_players
from ._gc import collector
from ._pipe import StdinLines, configure_child_logging, emit
from ._profile import profiling
from ._walks import CountingSource, Recorder, TaskWalk, naive_waiter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from ..tasks import TaskRef, TaskResult
    from ._config import Player

__all__ = ["connection_limit", "run_strategy"]

# How often the running rooms' progress is reported, in seconds.
_PROGRESS_EVERY = 0.5


def connection_limit(config: BenchConfig, strategy: str) -> int:
    """Return the client's pool size: sync holds one connection per waiting room."""
    if config.connection_limit is not None:
        return config.connection_limit

    return config.rooms + 16 if strategy == "sync" else 100


async def run_strategy(
    config: BenchConfig,
    target: Target,
    strategy: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Walk ``config.rooms`` rooms with *strategy* against *target*; return records.

    The result holds the step records, status-request stamps, errors, and the
    client's CPU seconds and wall time over the run (and the process's peak RSS,
    which covers everything this process did before, too). The client's CPU
    includes the journal's writer process, which the run starts and reaps; its
    RSS does not (a child's peak as the kernel counts it includes this process's
    pages from before the child's exec).
    """
    recorder = Recorder()
    limit = connection_limit(config, strategy)
    cpu_before = time.process_time()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with collector(config.gc_threshold) as gc_cost:
        async with (
            PlyrClient(
                target.url, target.api_key, target.api_secret, connection_limit=limit
            ) as client,
            anyio.create_task_group() as progress_group,
        ):
            if on_progress is not None:
                progress_group.start_soon(_report, recorder, on_progress)

            await _run_rooms(strategy, client, config, target, recorder)
            progress_group.cancel_scope.cancel()
            client_stats = client.stats

    finished = time.monotonic()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_user = children.ru_utime - children_before.ru_utime
    child_sys = children.ru_stime - children_before.ru_stime
    cpu = time.process_time() - cpu_before + child_user + child_sys
    if on_progress is not None:
        on_progress(recorder.rooms_ended, recorder.rooms_failed)

    return {
        "strategy": strategy,
        "steps": recorder.steps,
        "status_times": recorder.status_times,
        "rooms_ended": recorder.rooms_ended,
        "rooms_failed": recorder.rooms_failed,
        "errors": recorder.errors,
        "first_error": recorder.first_error,
        "started": started,
        "finished": finished,
        "cpu": cpu,
        # The kernel's share is mostly loopback TCP: sending wakes the receiver.
        "cpu_user": usage.ru_utime - usage_before.ru_utime + child_user,
        "cpu_sys": usage.ru_stime - usage_before.ru_stime + child_sys,
        "max_rss_kb": usage.ru_maxrss,
        "client_requests": dict(client_stats.requests_by_route),
        "client_retries": client_stats.retries,
        "client_errors": dict(client_stats.errors),
        "poller": recorder.poller,
        "journal": recorder.journal,
        "gc": gc_cost,
    }


async def _report(recorder: Recorder, on_progress: Callable[[int, int], None]) -> None:
    while True:
        on_progress(recorder.rooms_ended, recorder.rooms_failed)
        await anyio.sleep(_PROGRESS_EVERY)


async def _run_rooms(
    strategy: str,
    client: PlyrClient,
    config: BenchConfig,
    target: Target,
    recorder: Recorder,
) -> None:
    source = CountingSource(client, recorder)
    if strategy == "naive":
        walk = TaskWalk(
            client, config, recorder, naive_waiter(source, config.naive_interval)
        )
        await _all_rooms(walk.run_room, config, target)
    elif strategy == "sync":
        await _all_rooms(
            TaskWalk(client, config, recorder, None).run_room, config, target
        )
    elif strategy == "shared-tasks":
        async with TaskPoller(source, **config.poller_options()) as poller:

            def wait(ref: TaskRef) -> Awaitable[TaskResult]:
                return poller.wait(ref, timeout=config.step_timeout)

            walk = TaskWalk(client, config, recorder, wait)
            await _all_rooms(walk.run_room, config, target)
            recorder.poller_closing(poller.stats)
    else:
        from ._rooms import run_room_strategy

        await run_room_strategy(strategy, client, source, config, target, recorder)


async def _all_rooms(
    run_room: Callable[[int, tuple[Player, ...]], Coroutine[Any, Any, None]],
    config: BenchConfig,
    target: Target,
) -> None:
    # Every room starts at once: this is the "all in flight" load.
    async with anyio.create_task_group() as group:
        for index in range(config.rooms):
            group.start_soon(
                run_room, index, room_players(target.players, index, config.players)
            )


async def _serve() -> None:
    job = await StdinLines().receive()
    if job is None or "cmd" in job:
        return  # the driver gave up before sending a job

    config = BenchConfig.from_json(job["config"])
    target = Target.from_json(job["target"])
    name = job.get("strategy") or job["kind"]
    with profiling(config.profile_dir, name, config.profiler) as profile:
        if job["kind"] == "cpu":
            from ._cpu import compare_request_cpu

            result = await compare_request_cpu(target, config.cpu_requests)
        else:
            result = await run_strategy(
                config,
                target,
                job["strategy"],
                lambda ended, failed: emit({"progress": [ended, failed]}),
            )

    result.update(profile)
    emit({"result": result})


def main() -> None:
    """Run one job read from stdin."""
    configure_child_logging()
    anyio.run(_serve, backend="asyncio")
