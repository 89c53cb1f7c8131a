"""How many journal records per second, with and without group commit.

Every room runs the journal calls of a whole step-by-step walk concurrently with
all the others (opened, then six steps of intend / submitted / settled /
room_updated: 25 durable writes per room). The same workload runs against the
memory journal, the SQLite journal with group commit, and the SQLite journal
with one transaction per write (``max_batch=1``).

    python benchmarks/bench_journal.py --rooms 10000
    python benchmarks/bench_journal.py --rooms 1000 --modes group,single --json
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
        await journal.settled(key, seq, "SUCCESS", {"hash": "0x" + "ab" * 32})
        record = RoomRecord(key, "DiceDuel", state, room_id=str(index), players=players)
        await journal.room_updated(record)


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
        "seconds": round(elapsed, 3),
        "writes_per_second": round(stats.writes / elapsed),
        "rooms_per_second": round(rooms / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--modes", default="memory,group,single")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--dir", default=None, help="where the journal files go")
    parser.add_argument("--json", action="store_true", help="one JSON line per mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        for mode in args.modes.split(","):
            result = asyncio.run(_run(mode, args.rooms, directory, args.synchronous))
            if args.json:
                print(json.dumps(result))
            else:
                print(
                    f"{mode:>7}: {result['writes']} writes in {result['seconds']} s"
                    f" = {result['writes_per_second']} writes/s,"
                    f" {result['transactions']} transactions"
                    f" (largest batch {result['largest_batch']}),"
                    f" {result['rooms_per_second']} room walks/s"
                )


if __name__ == "__main__":
    main()
