"""How many journal records per second, with and without group commit.

Every room runs the journal calls of a whole step-by-step walk concurrently with
all the others, as a room does (opened, then six steps of intend, submitted,
and settled with the room's new record: 19 durable writes per room). The same
workload runs against the memory journal, the SQLite journal with group
commit, and the SQLite journal with one transaction per write (``max_batch=1``).

With ``--walk N`` it also runs N whole rooms (step by step, six tasks each)
through a RoomManager against the embedded simulator, once without a journal and
once with a SQLite journal, in the same run: the difference is what journaling
costs a game server end to end.

    python benchmarks/bench_journal.py --rooms 10000
    python benchmarks/bench_journal.py --rooms 1000 --modes group,single --json
    python benchmarks/bench_journal.py --modes group --rooms 1000 --walk 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from typing import Any

from plyr_rooms.journal import Journal, MemoryJournal, RoomRecord, SQLiteJournal

_STEPS = ("create", "join", "pay", "earn", "leave", "end")
_STATES = ("CREATED", "JOINED", "PAID", "EARNED", "LEFT", "ENDED")


async def _walk(journal: Journal, index: int) -> None:
    key = uuid.uuid4().hex
    players = (f"player{index}a", f"player{index}b")
    record = RoomRecord(key, "DiceDuel", players=players)
    await journal.room_opened(record)
    for number, (step, state) in enumerate(zip(_STEPS, _STATES, strict=True)):
        request = {"plyrIds": list(players), "tokens": ["plyr"], "amounts": ["10"]}
        seq = await journal.intend(key, step, request)
        await journal.submitted(key, seq, f"{index}-{number}")
        record = RoomRecord(key, "DiceDuel", state, room_id=str(index), players=players)
        detail = {"hash": "0x" + "ab" * 32}
        await journal.settled(key, seq, "SUCCESS", detail, room=record)


async def _run(
    mode: str, rooms: int, directory: str, synchronous: str
) -> dict[str, Any]:
    journal: MemoryJournal | SQLiteJournal
    if mode == "memory":
        journal = MemoryJournal()
    else:
        path = os.path.join(directory, f"{mode}-{uuid.uuid4().hex}.db")
        batch = 4096 if mode == "group" else 1
        journal = SQLiteJournal(path, synchronous=synchronous, max_batch=batch)

    started = time.perf_counter()
    async with journal:
        await asyncio.gather(*(_walk(journal, i) for i in range(rooms)))
        stats = journal.stats

    elapsed = time.perf_counter() - started
    return {
        "mode": mode,
        "synchronous": synchronous if mode != "memory" else None,
        "rooms": rooms,
        "writes": stats.writes,
        "transactions": stats.transactions,
        "largest_batch": stats.largest_batch,
        "writer_cpu_s": round(stats.writer_cpu_seconds, 3),
        "seconds": round(elapsed, 3),
        "writes_per_second": round(stats.writes / elapsed),
        "rooms_per_second": round(rooms / elapsed, 1),
    }


async def _walks(rooms: int, directory: str, journaled: bool) -> dict[str, Any]:
    # Imported here: the store-only modes need neither aiohttp nor the simulator.
    from decimal import Decimal

    from plyr_rooms._schedule import PollSchedule
    from plyr_rooms.client import PlyrClient
    from plyr_rooms.manager import RoomManager
    from plyr_rooms.room import GameRoom
    from plyr_rooms.simulator import Latency, SimConfig, Simulator

    class Duel(GameRoom):
        room_name = "bench.Duel"
        stake = Decimal(1)

    schedule = PollSchedule(
        first_delay=0.01, min_first_delay=0.005, interval=0.02, max_interval=0.1
    )
    config = SimConfig(latency=Latency.fixed(0.02), workers=None, seed=1)
    path = os.path.join(directory, f"walk-{uuid.uuid4().hex}.db")
    journal = SQLiteJournal(path) if journaled else None
    async with Simulator(config) as sim:
        players = await sim.add_players(2 * rooms, balance=10, allowance=10)
        client = PlyrClient(sim.url, sim.api_key, sim.api_secret)
        options = {"schedule": schedule, "requests_per_second": 1e6}
        options["max_concurrency"] = 256
        started = time.perf_counter()
        async with (
            client,
            RoomManager(client, journal=journal, poller_options=options) as manager,
        ):
            pairs = [players[i : i + 2] for i in range(0, 2 * rooms, 2)]
            await asyncio.gather(*(manager.run(Duel, pair) for pair in pairs))

        elapsed = time.perf_counter() - started
        stats = journal.stats if journal is not None else None
        if journal is not None:
            await journal.aclose()

    return {
        "mode": "walk+journal" if journaled else "walk",
        "rooms": rooms,
        "seconds": round(elapsed, 3),
        "rooms_per_second": round(rooms / elapsed, 1),
        "writes": stats.writes if stats else 0,
        "transactions": stats.transactions if stats else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--modes", default="memory,group,single")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--dir", default=None, help="where the journal files go")
    parser.add_argument("--json", action="store_true", help="one JSON line per mode")
    parser.add_argument(
        "--walk", type=int, default=0, metavar="N", help="also walk N rooms"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        for journaled in (False, True) if args.walk else ():
            walked = asyncio.run(_walks(args.walk, directory, journaled))
            if args.json:
                print(json.dumps(walked))
            else:
                print(
                    f"{walked['mode']:>12}: {walked['rooms']} rooms in"
                    f" {walked['seconds']} s = {walked['rooms_per_second']} rooms/s"
                    f" ({walked['writes']} journal writes in"
                    f" {walked['transactions']} transactions)"
                )

        for mode in filter(None, args.modes.split(",")):
            result = asyncio.run(_run(mode, args.rooms, directory, args.synchronous))
            if args.json:
                print(json.dumps(result))
            else:
                print(
                    f"{mode:>7}: {result['writes']} writes in {result['seconds']} s"
                    f" = {result['writes_per_second']} writes/s,"
                    f" {result['transactions']} transactions"
                    f" (largest batch {result['largest_batch']}),"
                    f" writer CPU {result['writer_cpu_s']} s,"
                    f" {result['rooms_per_second']} room walks/s"
                )


if __name__ == "__main__":
    main()
