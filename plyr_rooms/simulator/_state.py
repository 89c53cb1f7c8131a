"""Everything one running simulator holds, shared by its handlers."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from plyr_rooms.simulator._amounts import to_decimal
from plyr_rooms.simulator._faults import RequestFaults
from plyr_rooms.simulator._ledger import Chain
from plyr_rooms.simulator._sessions import Sessions
from plyr_rooms.simulator._snapshot import (
    LedgerSnapshot,
    RoomSnapshot,
    SimCounters,
)
from plyr_rooms.simulator._worker import Worker

if TYPE_CHECKING:
    from decimal import Decimal

    from plyr_rooms.simulator._config import SimConfig
    from plyr_rooms.simulator._http import ApiKey

__all__ = ["SimState"]


class SimState:
    """The chain, the sessions, the task worker, the faults and the counters."""

    def __init__(self, config: SimConfig, api_key: ApiKey) -> None:
        self.config = config
        self.api_key = api_key
        self.keys = {api_key.key: api_key}
        self.chain = Chain(config.tokens, config.platform_fee_percent)
        self.sessions = Sessions()
        self.worker = Worker(config, self.chain)
        self.faults = RequestFaults(config.faults, config.seed)
        self.requests: collections.Counter[str] = collections.Counter()
        self.status_polls = 0

    def decimal(self, token: str, units: int) -> Decimal:
        """Return *units* of *token* in whole tokens."""
        return to_decimal(units, self.config.tokens[token])

    def snapshot(self) -> LedgerSnapshot:
        """Return a frozen view of the caller's game and the counters."""
        chain, game = self.chain, self.api_key.plyr_id.lower()
        balances = {
            plyr_id: {t: self.decimal(t, units) for t, units in wallet.items()}
            for plyr_id, wallet in chain.balances.items()
        }
        allowances: dict[str, dict[str, Decimal]] = {}
        for (plyr_id, game_id, token), approval in chain.allowances.items():
            if game_id == game:
                allowances.setdefault(plyr_id, {})[token] = approval.amount

        rooms = {
            room_id: RoomSnapshot(
                frozenset(room.joined),
                {t: self.decimal(t, units) for t, units in room.funds.items()},
                room.ended,
                room.address,
            )
            for (game_id, room_id), room in chain.rooms.items()
            if game_id == game
        }
        fees = {t: self.decimal(t, units) for t, units in chain.fee_account.items()}
        return LedgerSnapshot(balances, allowances, rooms, fees, self.counters())

    def counters(self) -> SimCounters:
        """Return the request and task counters."""
        return SimCounters(
            requests_by_route=dict(self.requests),
            status_polls=self.status_polls,
            tasks_by_method=dict(self.worker.by_method),
            rate_limited=self.faults.rate_limited,
            server_errors=self.faults.server_errors,
            dropped=self.faults.dropped,
            tasks=self.worker.records(),
        )
