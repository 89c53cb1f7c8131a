"""Client CPU per HTTP request: a bare aiohttp GET against PlyrClient.task_status.

Both sides read the status of the same finished task from the same simulator,
with the same number of requests in flight. The bare side sends headers signed
once in advance and only reads the body; the client signs every request, maps
errors and parses the body into a :class:`~plyr_rooms.tasks.TaskResult`. Rounds
alternate between the two sides so that drift in the machine's load hits both.
"""

from __future__ import annotations

import resource
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio

from ..client import PlyrClient
from ..signing import sign_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._config import Target

__all__ = ["compare_request_cpu"]

_IN_FLIGHT = 8
_ROUNDS = 10
_WARMUP = 200


async def compare_request_cpu(target: Target, requests: int) -> dict[str, Any]:
    """Measure client CPU per status request, bare aiohttp vs PlyrClient.

    Args:
        target: a simulator (or endpoint) to read task status from.
        requests: requests per side, spread over alternating rounds.
    """
    async with (
        PlyrClient(target.url, target.api_key, target.api_secret) as client,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=_IN_FLIGHT)
        ) as session,
    ):
        task_id = await _finished_task(client)
        url = f"{target.url}/task/status/{task_id}"
        stamp = str(time.time_ns() // 1_000_000)
        headers = {
            "apikey": target.api_key,
            "timestamp": stamp,
            "signature": sign_text(target.api_secret, stamp, "{}"),
        }

        async def bare() -> None:
            async with session.get(url, headers=headers) as response:
                await response.read()

            if response.status != 200:
                raise RuntimeError(f"bare GET answered {response.status}")

        async def plyr() -> None:
            await client.task_status(task_id, retry=False)

        await _spend(bare, _WARMUP)
        await _spend(plyr, _WARMUP)
        per_round = max(1, requests // _ROUNDS)
        rounds = [
            (await _spend(bare, per_round), await _spend(plyr, per_round))
            for _ in range(_ROUNDS)
        ]

    total = per_round * _ROUNDS
    bare_user = sum(b[0] for b, _ in rounds)
    bare_sys = sum(b[1] for b, _ in rounds)
    client_user = sum(c[0] for _, c in rounds)
    client_sys = sum(c[1] for _, c in rounds)
    bare_cpu, client_cpu = bare_user + bare_sys, client_user + client_sys
    ratios = sorted(sum(c) / sum(b) for b, c in rounds if sum(b) > 0)
    return {
        "requests_per_side": total,
        "bare_cpu_us": bare_cpu / total * 1e6,
        "client_cpu_us": client_cpu / total * 1e6,
        "bare_user_sys_us": [bare_user / total * 1e6, bare_sys / total * 1e6],
        "client_user_sys_us": [client_user / total * 1e6, client_sys / total * 1e6],
        "ratio": client_cpu / bare_cpu if bare_cpu else None,
        # Rounds are short; the spread of their ratios says how noisy this was.
        "round_ratios": [ratios[0], ratios[len(ratios) // 2], ratios[-1]]
        if ratios
        else None,
    }


async def _finished_task(client: PlyrClient) -> str:
    # A created room: its SUCCESS body is the largest status shape there is.
    ref = await client.create()
    with anyio.fail_after(60):
        # A few quick checks of one task; no event can tell us it finished.
        result = await client.task_status(ref.id)
        for _ in range(3000):
            if result.state.settled:
                return ref.id

            await anyio.sleep(0.02)
            result = await client.task_status(ref.id)

    raise RuntimeError(f"task {ref.id!r} did not settle")


async def _spend(
    request: Callable[[], Awaitable[None]], count: int
) -> tuple[float, float]:
    # Send *count* requests, _IN_FLIGHT at a time; return the user and system
    # CPU seconds spent.
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await request()

    before = resource.getrusage(resource.RUSAGE_SELF)
    async with anyio.create_task_group() as group:
        for _ in range(_IN_FLIGHT):
            group.start_soon(worker)

    after = resource.getrusage(resource.RUSAGE_SELF)
    return after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
