"""The room strategies: plyr-rooms itself, step by step and atomic."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client import PlyrClient
    from ._config import BenchConfig, Target
    from ._walks import CountingSource, Recorder

__all__ = ["run_room_strategy"]


async def run_room_strategy(
    strategy: str,
    client: PlyrClient,
    source: CountingSource,
    config: BenchConfig,
    target: Target,
    recorder: Recorder,
) -> None:
    """Walk every room of *config* with GameRoom through a RoomManager."""
    # TODO: GameRoom and RoomManager are being written; until they land the
    # shared and atomic strategies cannot run.
    raise NotImplementedError(f"strategy {strategy!r} needs plyr_rooms.room")
