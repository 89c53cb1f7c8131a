from __future__ import annotations

import importlib

import pytest

import plyr_rooms
import plyr_rooms.simulator

PUBLIC_MODULES = [
    "plyr_rooms",
    "plyr_rooms.client",
    "plyr_rooms.errors",
    "plyr_rooms.journal",
    "plyr_rooms.lifecycle",
    "plyr_rooms.manager",
    "plyr_rooms.poller",
    "plyr_rooms.room",
    "plyr_rooms.signing",
    "plyr_rooms.simulator",
    "plyr_rooms.tasks",
]


def _isort_key(name: str) -> tuple[int, str]:
    # Constants, then classes, then functions, as ruff's RUF022 orders them.
    if name.isupper():
        return (0, name)

    return (1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    assert len(set(exported)) == len(exported)
    for attribute in exported:
        assert getattr(module, attribute) is not None, attribute


def test_package_reexports_keep_their_identity() -> None:
    from plyr_rooms.manager import RoomManager
    from plyr_rooms.poller import TaskPoller
    from plyr_rooms.room import GameRoom

    assert plyr_rooms.GameRoom is GameRoom
    assert plyr_rooms.RoomManager is RoomManager
    assert plyr_rooms.TaskPoller is TaskPoller
    assert plyr_rooms.simulator.Simulator.__module__.startswith("plyr_rooms.simulator")


def test_design_names_are_public() -> None:
    for name in (
        "GameRoom",
        "RoomManager",
        "TaskPoller",
        "PlyrClient",
        "TaskState",
        "TaskRef",
        "TaskResult",
        "RoomState",
        "TRANSITIONS",
        "InvalidTransition",
        "SQLiteJournal",
        "MemoryJournal",
    ):
        assert name in plyr_rooms.__all__
