"""``plyr-rooms demo``: dice duels on the embedded simulator, or one on a real API.

With no arguments it starts the simulator, creates players, runs a few dozen
dice duels at once (half step by step, half through the API's atomic helpers)
with a live progress line, and prints a summary. The exit code is 0 only if
every room ended and the ledger still holds every token it started with.

With ``--endpoint`` (credentials from ``PLYR_API_KEY`` / ``PLYR_API_SECRET``)
and ``--jwt`` session tokens, it runs one duel against that PLYR API instead.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from .errors import PlyrError, PollerClosed
from .lifecycle import Payment, Player, RoomState, split_earn, to_amount
from .manager import RoomManager
from .room import GameRoom
from .simulator import Faults, Latency, SimConfig, Simulator

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["add_parser"]

#: ``--faults chaos``: a bit of everything a real deployment may throw.
CHAOS = "revert=0.05,not_found_window=0.1,rate_limit_rps=40,server_error=0.02"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run dice duels on the embedded simulator (or one on a real API)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rooms", type=int, default=32, help="duels (default: 32)")
    parser.add_argument(
        "--players", type=int, default=2, help="players per room (default: 2)"
    )
    parser.add_argument(
        "--latency",
        type=_parsed(Latency.parse),
        default=Latency.fixed(0.05),
        metavar="MODEL",
        help="task latency: fixed:S, uniform:LO,HI or lognormal:MEDIAN,SIGMA"
        " (default: fixed:0.05)",
    )
    parser.add_argument(
        "--faults",
        type=_parsed(lambda text: Faults.parse(CHAOS if text == "chaos" else text)),
        default=Faults(),
        metavar="SPEC",
        help=f"simulator faults, e.g. 'chaos' ({CHAOS}); default: none",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--walk",
        choices=("mixed", "steps", "atomic"),
        default="mixed",
        help="step by step (6 tasks), atomic (2 tasks) or half each (default)",
    )
    parser.add_argument(
        "--stake",
        type=_parsed(to_amount),
        default=None,
        help="entry fee per player (default: 10 on the simulator, 0 on a real API)",
    )
    parser.add_argument("--token", default="plyr", help="token symbol (default: plyr)")
    parser.add_argument(
        "--task-timeout",
        type=float,
        default=60.0,
        help="seconds a step waits for its task (default: 60)",
    )
    parser.add_argument(
        "--endpoint",
        help="a real PLYR API host: run one duel there (PLYR_API_KEY and"
        " PLYR_API_SECRET from the environment)",
    )
    parser.add_argument(
        "--jwt",
        action="append",
        default=[],
        metavar="SESSION_JWT",
        help="a player's session JWT for --endpoint (repeat, at least two)",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Run the demo; return the exit code."""
    if args.endpoint:
        return await _real(args, sys.stdout)

    if args.jwt:
        sys.stderr.write("--jwt needs --endpoint\n")
        return 2

    return await _simulated(args, sys.stdout)


class DiceDuel(GameRoom):
    """Every player rolls a die (ties roll again); the highest roll takes the pot."""

    room_name = "plyr_rooms.demo.DiceDuel"

    def __init__(self, *args: Any, seed: int = 0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.dice = random.Random(seed)

    async def play(self) -> Mapping[str, Decimal]:
        players = sorted(self.book.members())
        while True:
            rolls = {p: self.dice.randint(1, 6) for p in players}
            top = [p for p, roll in rolls.items() if roll == max(rolls.values())]
            if len(top) == 1:
                return {top[0]: self.book.pot.get(self.token, Decimal(0))}


async def drive(room: GameRoom, *, atomic: bool, task_wait: float) -> str | None:
    """Walk *room* to the end, reconciling unknown outcomes; None if it ended."""
    for _ in range(5):
        try:
            await room.run(atomic=atomic)
            return None
        except PlyrError as exc:
            if room.unsettled is None:
                return f"{type(exc).__name__}: {exc}"

            reason = room.unsettled.reason
            try:
                if not await room.reconcile(task_wait=task_wait):
                    return f"unsettled: {reason}"
            except PollerClosed:
                return f"unsettled: {reason}"

    return "gave up after five unknown outcomes"


class _Progress:
    # One updating line on a terminal; plain lines (one per finished room)
    # otherwise. It only reads counters: the rooms never wait for it.
    def __init__(self, manager: RoomManager, rooms: dict[str, GameRoom], out: TextIO):
        self.manager = manager
        self.rooms = rooms
        self.out = out
        self.tty = out.isatty()

    async def follow(self) -> None:
        if self.tty:
            while True:
                self._line()
                await anyio.sleep(0.1)

        async for t in self.manager.transitions():
            if t.new is RoomState.ENDED:
                room = self.rooms[t.room_key]
                won = ", ".join(f"{p.plyr_id} {_won(p)}" for p in room.payouts)
                self.out.write(f"room {t.room_id} ended: {won or 'no payout'}\n")

    def _line(self) -> None:
        stats = self.manager.stats
        states = " ".join(f"{s.lower()}:{n}" for s, n in sorted(stats.active.items()))
        polls = self.manager.poller.stats.status_requests
        text = (
            f"\r{stats.ended}/{len(self.rooms)} rooms ended  {states}  "
            f"tasks {sum(r.tasks for r in self.rooms.values())}  polls {polls}"
        )
        self.out.write(text.ljust(79))
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self._line()
            self.out.write("\n")


def _won(payment: Payment) -> str:
    net, _ = split_earn(payment.amount)
    return f"won {net:f} {payment.token}"


async def _simulated(args: argparse.Namespace, out: TextIO) -> int:
    config = SimConfig(seed=args.seed, latency=args.latency, faults=args.faults)
    stake = Decimal(10) if args.stake is None else args.stake
    token = args.token.lower()
    started = time.monotonic()
    async with Simulator(config) as sim:
        people = await sim.add_players(
            args.rooms * args.players, balance=stake * 100, tokens=(token,)
        )
        before = sim.ledger().total(token)
        rooms: dict[str, GameRoom] = {}
        failures: dict[str, str] = {}
        out.write(
            f"simulator at {sim.url}: {args.rooms} rooms of {args.players} players, "
            f"stake {stake:f} {token}\n"
        )
        async with RoomManager(
            endpoint=sim.url,
            api_key=sim.api_key,
            api_secret=sim.api_secret,
            task_timeout=args.task_timeout,
        ) as manager:
            progress = _Progress(manager, rooms, out)

            async def one(i: int) -> None:
                seats = people[i * args.players : (i + 1) * args.players]
                room = manager.open(
                    DiceDuel,
                    seats,
                    seed=args.seed * 100_003 + i,
                    stake=stake,
                    token=token,
                )
                rooms[room.key] = room
                atomic = args.walk == "atomic" or (args.walk == "mixed" and i % 2 == 1)
                why = await drive(room, atomic=atomic, task_wait=args.task_timeout)
                if why is not None:
                    failures[room.key] = why

            async with anyio.create_task_group() as tg:
                tg.start_soon(progress.follow)
                async with anyio.create_task_group() as duels:
                    for i in range(args.rooms):
                        duels.start_soon(one, i)

                tg.cancel_scope.cancel()

            progress.done()
            polls = manager.poller.stats

        ledger = sim.ledger()

    elapsed = time.monotonic() - started
    ended = [r for r in rooms.values() if r.state is RoomState.ENDED]
    tasks = sum(r.tasks for r in rooms.values())
    paid = sum(
        (sum(r.book.paid.values(), Decimal(0)) for r in rooms.values()), Decimal(0)
    )
    earned = [
        Payment(p, t, a) for r in rooms.values() for (p, t), a in r.book.earned.items()
    ]
    gross = sum((e.amount for e in earned), Decimal(0))
    fees = sum((split_earn(e.amount)[1] for e in earned), Decimal(0))
    empty = all(
        r.room_id is not None
        and ledger.rooms[r.room_id].ended
        and not any(ledger.rooms[r.room_id].funds.values())
        for r in ended
    )
    taken = ledger.fee_account.get(token, Decimal(0))
    conserved = ledger.total(token) == before and taken == fees
    per_task = polls.status_requests / tasks if tasks else 0.0
    lines = [
        f"{len(ended)}/{args.rooms} rooms ended in {elapsed:.1f} s",
        f"tasks: {tasks}; status requests: {polls.status_requests} "
        f"({per_task:.2f} per task); 429s seen: {polls.rate_limited}",
        f"tokens: paid {_plain(paid)} {token}, earned {_plain(gross)} {token}, "
        f"taken as fees {_plain(fees)} {token}",
        f"ledger conserved: {'yes' if conserved and empty else 'NO'} "
        f"({_plain(before)} {token} before, {_plain(ledger.total(token))} after; "
        f"ended rooms empty: {'yes' if empty else 'NO'})",
    ]
    if taken != fees:
        # The chain took fees on earns the rooms' books do not know of.
        lines.append(
            f"fee account: {_plain(taken)} {token}, the rooms' earns account"
            f" for {_plain(fees)} {token}"
        )
    lines += [f"room {key[:8]}: {why}" for key, why in sorted(failures.items())]
    out.write("\n".join(lines) + "\n")
    return 0 if len(ended) == args.rooms and conserved and empty else 1


async def _real(args: argparse.Namespace, out: TextIO) -> int:
    if len(args.jwt) < 2:
        sys.stderr.write("a duel needs at least two --jwt session tokens\n")
        return 2

    try:
        players = [Player(_plyr_id(jwt), jwt) for jwt in args.jwt]
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2

    stake = Decimal(0) if args.stake is None else args.stake
    async with RoomManager(endpoint=args.endpoint, task_timeout=args.task_timeout) as m:
        room = m.open(DiceDuel, players, seed=args.seed, stake=stake, token=args.token)
        out.write(f"one duel on {m.client.base_url}: {len(players)} players\n")

        async def watch() -> None:
            async for t in room.transitions():
                task = t.result.task_id if t.result else "-"
                out.write(f"{t.step.value}: {t.old.value} -> {t.new.value} ({task})\n")
                out.flush()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            why = await drive(room, atomic=args.walk == "atomic", task_wait=30.0)
            tg.cancel_scope.cancel()

    if why is not None:
        out.write(f"room {room.room_id}: {why}\n")
        return 1

    won = ", ".join(f"{p.plyr_id} {_won(p)}" for p in room.payouts)
    out.write(f"room {room.room_id} ended after {room.tasks} tasks: {won}\n")
    return 0


def _plyr_id(jwt: str) -> str:
    # The plyrId claim of a session JWT (read, not verified: the API verifies).
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
        return str(claims["plyrId"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise ValueError("a --jwt is not a session JWT with a plyrId claim") from None


def _plain(amount: Decimal) -> str:
    return format(amount.normalize(), "f") if amount else "0"


def _parsed(parse: Any) -> Any:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, TypeError, PlyrError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert
