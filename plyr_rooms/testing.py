"""Pytest fixtures for testing room subclasses against the embedded simulator.

The plugin is registered through the ``pytest11`` entry point, so installing
plyr-rooms is enough::

    async def test_my_room(plyr_sim, plyr_client):
        players = await plyr_sim.add_players(4)
        ...

Both fixtures are async and run under anyio's pytest plugin (mark the test
with ``@pytest.mark.anyio``; the ``asyncio`` backend is required). Override
``plyr_sim_config`` in a ``conftest.py`` to change latency or inject faults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from plyr_rooms.simulator import Latency, SimConfig, Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from plyr_rooms.client import PlyrClient

__all__ = ["plyr_client", "plyr_sim", "plyr_sim_config"]


@pytest.fixture
def plyr_sim_config() -> SimConfig:
    """Return the configuration of :func:`plyr_sim`: fast and fault-free.

    Tasks take 5 ms, run without a queue, and ``sync`` calls and worker retries
    are scaled down so that failures surface in milliseconds.
    """
    return SimConfig(
        latency=Latency.fixed(0.005),
        workers=None,
        sync_interval=0.01,
        retry_sleep_scale=0.001,
    )


@pytest.fixture
async def plyr_sim(
    plyr_sim_config: SimConfig, anyio_backend: object
) -> AsyncIterator[Simulator]:
    """Yield a running :class:`~plyr_rooms.simulator.Simulator` on loopback."""
    async with Simulator(plyr_sim_config) as sim:
        yield sim


@pytest.fixture
async def plyr_client(plyr_sim: Simulator) -> AsyncIterator[PlyrClient]:
    """Yield a :class:`~plyr_rooms.client.PlyrClient` talking to :func:`plyr_sim`."""
    from plyr_rooms.client import PlyrClient

    async with PlyrClient(
        plyr_sim.url, plyr_sim.api_key, plyr_sim.api_secret
    ) as client:
        yield client
