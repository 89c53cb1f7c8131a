"""Dice duel: two players pay an entry fee, the highest roll takes the pot.

Run it as ``python examples/dice_duel.py``: it starts the embedded simulator,
gives two players some tokens, walks one room through create, join, pay, play,
earn, leave and end, and prints who won. The winner receives the pot less the
platform's 2 % fee.
"""

from __future__ import annotations

import argparse
import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio

from plyr_rooms.lifecycle import split_earn
from plyr_rooms.manager import RoomManager
from plyr_rooms.room import GameRoom
from plyr_rooms.simulator import Latency, Simulator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from plyr_rooms.room import Transition


class DiceDuel(GameRoom):
    """Each player rolls a die (ties roll again); the highest roll wins the pot."""

    room_name = "examples.DiceDuel"
    stake = Decimal(10)

    def __init__(self, *args: Any, seed: int | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.dice = random.Random(seed)
        self.rolls: dict[str, int] = {}

    async def on_paid(self, transition: Transition) -> None:
        print(f"room {self.room_id}: {len(transition.payments)} players paid in")

    async def play(self) -> Mapping[str, Decimal]:
        players = sorted(self.book.members())
        while True:
            self.rolls = {p: self.dice.randint(1, 6) for p in players}
            best = max(self.rolls.values())
            winners = [p for p, roll in self.rolls.items() if roll == best]
            rolled = ", ".join(f"{p} rolled {r}" for p, r in self.rolls.items())
            print(f"room {self.room_id}: {rolled}")
            if len(winners) == 1:
                return {winners[0]: self.book.pot[self.token]}

    async def on_ended(self, transition: Transition) -> None:
        print(f"room {self.room_id}: ended")


async def main(seed: int = 1) -> int:
    """Play one duel against the embedded simulator; return the exit status."""
    async with Simulator(latency=Latency.fixed(0.02), seed=seed) as sim:
        alice, bob = await sim.add_players(2, balance=100)
        async with RoomManager(
            endpoint=sim.url, api_key=sim.api_key, api_secret=sim.api_secret
        ) as manager:
            room = await manager.run(DiceDuel, [alice, bob], seed=seed)

        ledger = sim.ledger()

    [payout] = room.payouts
    net, fee = split_earn(payout.amount)
    print(f"{payout.plyr_id} wins {net} plyr ({payout.amount} less {fee} fee)")
    for player in (alice, bob):
        print(f"  {player.plyr_id}: {ledger.balances[player.plyr_id]['plyr']} plyr")

    print(f"{room.tasks} tasks, fee account {ledger.fee_account['plyr']} plyr")
    ok = room.state.name == "ENDED" and ledger.total("plyr") == 200
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="dice and simulator seed")
    args = parser.parse_args()
    raise SystemExit(anyio.run(main, args.seed, backend="asyncio"))
