"""Frozen views of the simulator's state, for tests and benchmarks to assert on."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from plyr_rooms.tasks import TaskState

__all__ = ["LedgerSnapshot", "RoomSnapshot", "SimCounters", "TaskRecord"]


@attrs.frozen
class RoomSnapshot:
    """One room of the caller's game.

    Attributes:
        joined: plyr ids currently in the room.
        funds: token -> balance held by the room, for every token it ever held.
        ended: whether ``end`` succeeded (nothing on chain checks it afterwards).
        address: the room contract's (fake, checksummed) address.
    """

    joined: frozenset[str]
    funds: Mapping[str, Decimal]
    ended: bool
    address: str = ""


@attrs.frozen
class TaskRecord:
    """One submitted task, with ``time.monotonic()`` stamps.

    ``completed_at`` is None while the task is PENDING (or stuck for good).
    """

    task_id: str
    method: str
    submitted_at: float
    completed_at: float | None
    state: TaskState


@attrs.frozen
class SimCounters:
    """What the simulator has been asked and has answered.

    Attributes:
        requests_by_route: ``"<METHOD> <route>"`` -> requests (``"404"`` for
            unknown paths); counted before faults, so 429s are included.
        status_polls: task-status requests answered.
        tasks_by_method: task name -> tasks submitted.
        rate_limited: 429 answers sent.
        server_errors: injected 5xx answers sent.
        dropped: connections closed without an answer.
        tasks: every task in submission order.
    """

    requests_by_route: Mapping[str, int]
    status_polls: int
    tasks_by_method: Mapping[str, int]
    rate_limited: int
    server_errors: int
    dropped: int
    tasks: tuple[TaskRecord, ...]


@attrs.frozen
class LedgerSnapshot:
    """The chain and API-side ledgers of the caller's game at one instant.

    Attributes:
        balances: plyr id -> token -> balance of the player's mirror wallet.
        allowances: plyr id -> token -> amount approved for the game.
        rooms: room id -> room.
        fee_account: token -> platform fees collected.
        counters: request and task counters (also readable as attributes here).
    """

    balances: Mapping[str, Mapping[str, Decimal]]
    allowances: Mapping[str, Mapping[str, Decimal]]
    rooms: Mapping[str, RoomSnapshot]
    fee_account: Mapping[str, Decimal]
    counters: SimCounters

    def total(self, token: str) -> Decimal:
        """Return all of *token* held by players, rooms and the fee account."""
        token = token.lower()
        held = sum(
            (tokens.get(token, Decimal(0)) for tokens in self.balances.values()),
            Decimal(0),
        )
        held += sum(
            (room.funds.get(token, Decimal(0)) for room in self.rooms.values()),
            Decimal(0),
        )
        return held + self.fee_account.get(token, Decimal(0))

    @property
    def requests_by_route(self) -> Mapping[str, int]:
        """Requests per route (see :class:`SimCounters`)."""
        return self.counters.requests_by_route

    @property
    def status_polls(self) -> int:
        """Task-status requests answered."""
        return self.counters.status_polls

    @property
    def tasks_by_method(self) -> Mapping[str, int]:
        """Tasks submitted, per task name."""
        return self.counters.tasks_by_method

    @property
    def rate_limited(self) -> int:
        """429 answers sent."""
        return self.counters.rate_limited

    @property
    def tasks(self) -> tuple[TaskRecord, ...]:
        """Every task in submission order."""
        return self.counters.tasks
