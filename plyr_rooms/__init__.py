"""plyr-rooms: safe, fast game rooms on the PLYR Gaming Universe API.

The names here are the public surface. The embedded simulator lives in
:mod:`plyr_rooms.simulator` and is imported from there.
"""

from __future__ import annotations

import logging

from .client import ClientStats as ClientStats
from .client import PlyrClient as PlyrClient
from .client import format_amount as format_amount
from .errors import ApiError as ApiError
from .errors import InvalidInput as InvalidInput
from .errors import InvalidRequest as InvalidRequest
from .errors import InvalidTransition as InvalidTransition
from .errors import NotFound as NotFound
from .errors import PermissionDenied as PermissionDenied
from .errors import PlyrError as PlyrError
from .errors import PollerClosed as PollerClosed
from .errors import RateLimited as RateLimited
from .errors import ServerError as ServerError
from .errors import TaskError as TaskError
from .errors import TaskFailed as TaskFailed
from .errors import TaskLost as TaskLost
from .errors import TaskTimeout as TaskTimeout
from .errors import TransportError as TransportError
from .errors import Unauthenticated as Unauthenticated
from .journal import Journal as Journal
from .journal import JournalError as JournalError
from .journal import JournalVersionError as JournalVersionError
from .journal import MemoryJournal as MemoryJournal
from .journal import SQLiteJournal as SQLiteJournal
from .lifecycle import TRANSITIONS as TRANSITIONS
from .lifecycle import Payment as Payment
from .lifecycle import Player as Player
from .lifecycle import PlayerState as PlayerState
from .lifecycle import RoomBook as RoomBook
from .lifecycle import RoomState as RoomState
from .lifecycle import Step as Step
from .manager import ManagerClosed as ManagerClosed
from .manager import ManagerStats as ManagerStats
from .manager import RoomManager as RoomManager
from .poller import PollerStats as PollerStats
from .poller import PollSchedule as PollSchedule
from .poller import TaskPoller as TaskPoller
from .room import GameRoom as GameRoom
from .room import RoomServices as RoomServices
from .room import Transition as Transition
from .room import Unsettled as Unsettled
from .tasks import AlreadyJoined as AlreadyJoined
from .tasks import TaskMethod as TaskMethod
from .tasks import TaskRef as TaskRef
from .tasks import TaskResult as TaskResult
from .tasks import TaskState as TaskState

__all__ = [
    "TRANSITIONS",
    "AlreadyJoined",
    "ApiError",
    "ClientStats",
    "GameRoom",
    "InvalidInput",
    "InvalidRequest",
    "InvalidTransition",
    "Journal",
    "JournalError",
    "JournalVersionError",
    "ManagerClosed",
    "ManagerStats",
    "MemoryJournal",
    "NotFound",
    "Payment",
    "PermissionDenied",
    "Player",
    "PlayerState",
    "PlyrClient",
    "PlyrError",
    "PollSchedule",
    "PollerClosed",
    "PollerStats",
    "RateLimited",
    "RoomBook",
    "RoomManager",
    "RoomServices",
    "RoomState",
    "SQLiteJournal",
    "ServerError",
    "Step",
    "TaskError",
    "TaskFailed",
    "TaskLost",
    "TaskMethod",
    "TaskPoller",
    "TaskRef",
    "TaskResult",
    "TaskState",
    "TaskTimeout",
    "Transition",
    "TransportError",
    "Unauthenticated",
    "Unsettled",
    "format_amount",
]

# A library stays silent unless the application configures logging.
logging.getLogger("plyr_rooms").addHandler(logging.NullHandler())
