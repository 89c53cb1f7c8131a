"""Client CPU per HTTP request: a bare aiohttp GET against PlyrClient.task_status.

Both sides read the status of the same finished task from the same simulator,
with the same number of requests in flight. The bare side sends headers signed
once in advance and only reads the body; the client signs every request, maps
errors and parses the body into a :class:`~plyr_rooms.tasks.TaskResult`. Rounds
alternate between the two sides so that drift in the machine's load hits both.
"""

from __future__ import annotations

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
_ROUNDS = 4
_WARMUP = 100


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
        bare_cpu = client_cpu = 0.0
        for _ in range(_ROUNDS):
            bare_cpu += await _spend(bare, per_round)
            client_cpu += await _spend(plyr, per_round)

    total = per_round * _ROUNDS
    return {
        "requests_per_side": total,
        "bare_cpu_us": bare_cpu / total * 1e6,
        "client_cpu_us": client_cpu / total * 1e6,
        "ratio": client_cpu / bare_cpu if bare_cpu else None,
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


async def _spend(request: Callable[[], Awaitable[None]], count: int) -> float:
    # Send *count* requests, _IN_FLIGHT at a time; return the CPU seconds spent.
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await request()

    before = time.process_time()
    async with anyio.create_task_group() as group:
        for _ in range(_IN_FLIGHT):
            group.start_soon(worker)

    return time.process_time() - before
