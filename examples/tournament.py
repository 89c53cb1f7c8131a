"""Tournament: many tables at once, with the things that go wrong at tables.

Run it as ``python examples/tournament.py [--tables N]``. Against the embedded
simulator (which reverts a few transactions on purpose), every table:

- opens with create-join-pay, where the admission hook refuses a banned player;
- takes a late joiner through join-pay;
- loses a player who leaves mid-game (their stake stays in the pot);
- plays, and pays out with earn-leave-end: the best card takes 70 %, the
  runner-up the rest.

A reverted task proves nothing happened, so it is simply sent again
(``room.retry_reverted``). The summary checks that every token is accounted for.
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
from plyr_rooms.simulator import Faults, Latency, Simulator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from plyr_rooms.lifecycle import Player
    from plyr_rooms.simulator import SimPlayer

BANNED = "player-00001"


class Table(GameRoom):
    """Highest card wins 70 % of the pot, the second highest 30 %."""

    room_name = "examples.Table"
    stake = Decimal(5)

    def __init__(self, *args: Any, seed: int = 0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.deck = random.Random(seed)

    async def on_join_request(self, players: tuple[Player, ...]) -> Mapping[str, str]:
        return {p.plyr_id: "banned" for p in players if p.plyr_id == BANNED}

    async def play(self) -> Mapping[str, Decimal]:
        cards = {p: self.deck.random() for p in self.book.members()}
        first, second = sorted(cards, key=cards.__getitem__, reverse=True)[:2]
        pot = self.book.pot[self.token]
        prize = (pot * 7 / 10).quantize(Decimal("0.01"))
        return {first: prize, second: pot - prize}


async def play_table(
    manager: RoomManager, number: int, seats: list[SimPlayer], late: SimPlayer
) -> Table:
    """Walk one table through the tournament's custom flow."""
    room = manager.open(Table, seats, seed=number)
    await room.retry_reverted(room.create_join_pay)
    await room.retry_reverted(lambda: room.join_pay([late]))
    quitter = seats[-1].plyr_id
    await room.retry_reverted(lambda: room.leave([quitter]))
    payouts = await room.play_game()
    await room.retry_reverted(lambda: room.earn_leave_end(payouts))
    return room


async def main(tables: int = 8, seed: int = 3) -> int:
    """Run *tables* tables at once; return the exit status."""
    faults = Faults(revert_rate=0.1)
    async with Simulator(latency=Latency.fixed(0.02), seed=seed, faults=faults) as sim:
        banned, *others = await sim.add_players(1 + 4 * tables, balance=50)
        start = sim.ledger().total("plyr")
        rooms: list[Table] = []
        async with RoomManager(
            endpoint=sim.url, api_key=sim.api_key, api_secret=sim.api_secret
        ) as manager:

            async def one(i: int) -> None:
                seats = others[4 * i : 4 * i + 3]
                if i == 0:
                    seats = [banned, *seats]

                rooms.append(await play_table(manager, i, seats, others[4 * i + 3]))

            async with anyio.create_task_group() as tg:
                for i in range(tables):
                    tg.start_soon(one, i)

        ledger = sim.ledger()

    ended = sum(room.state.name == "ENDED" for room in rooms)
    refused = sum(len(room.refused) for room in rooms)
    reverted = sum(room.reverted for room in rooms)
    paid_out = sum((p.amount for room in rooms for p in room.payouts), Decimal(0))
    fees = sum((split_earn(p.amount)[1] for r in rooms for p in r.payouts), Decimal(0))
    conserved = ledger.total("plyr") == start
    print(
        f"{ended}/{tables} tables ended; {refused} player refused; "
        f"{tables} late joiners; {tables} players left mid-game"
    )
    print(f"{reverted} reverted tasks sent again")
    print(
        f"paid out {paid_out.normalize():f} plyr (fees {fees.normalize():f} plyr); "
        f"ledger conserved: {conserved}"
    )
    return 0 if ended == tables and conserved and refused == 1 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=8, help="tables to run at once")
    parser.add_argument("--seed", type=int, default=3, help="simulator seed")
    args = parser.parse_args()
    raise SystemExit(anyio.run(main, args.tables, args.seed, backend="asyncio"))
