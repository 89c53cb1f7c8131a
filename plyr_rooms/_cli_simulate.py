"""``plyr-rooms simulate``: run the embedded PLYR API as a standalone server.

It prints the URL, the credentials and ready players' plyr ids and session
JWTs, then serves until interrupted, so that any client (curl, the official
JavaScript example, another process's load test) can talk to it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import TYPE_CHECKING

import anyio

from plyr_rooms.simulator import Faults, Latency, SimConfig, Simulator

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from plyr_rooms.simulator import SimPlayer

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="run the PLYR API simulator as a local server",
        description="Serve the embedded PLYR API simulator until interrupted.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8787,
        help="TCP port, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--latency",
        type=_latency,
        default=Latency.fixed(0.05),
        metavar="MODEL",
        help="task latency: fixed:S, uniform:LO,HI or lognormal:MEDIAN,SIGMA (seconds;"
        " default fixed:0.05)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N|unbounded",
        help="tasks in service at once; 1 is the real service (default: 1)",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default=Faults(),
        metavar="SPEC",
        help="e.g. revert=0.05,stuck=0.01,not_found_window=2,rate_limit_rps=20,"
        "rate_limit_retry_after=1,rate_limit_html,server_error=0.01,drop=0.01,"
        "failed_but_executed=0.01,double_execution=0.01,late_revert=0.01",
    )
    parser.add_argument(
        "--players", type=int, default=4, help="ready players (default: 4)"
    )
    parser.add_argument(
        "--balance",
        default="1000",
        help="each player's balance and allowance (default: 1000)",
    )
    parser.add_argument(
        "--tokens",
        default="plyr,gamr",
        help="tokens the players hold (default: plyr,gamr)",
    )
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=0.5,
        metavar="S",
        help="seconds between a sync call's status checks (default: 0.5)",
    )
    parser.add_argument(
        "--retry-sleep-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="scales the worker's 1/2/3 s retry sleeps (default: 1.0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--game-id", default="sim-game", help="the API key's plyrId")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of text"
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; return the exit code."""
    await serve(args, _announce(args.json))
    return 0


async def serve(
    args: argparse.Namespace,
    ready: Callable[[Simulator, list[SimPlayer]], Awaitable[None]],
) -> None:
    """Start the simulator from *args*, call *ready*, then serve until SIGTERM."""
    config = SimConfig(
        seed=args.seed,
        latency=args.latency,
        workers=args.workers,
        faults=args.faults,
        sync_interval=args.sync_interval,
        retry_sleep_scale=args.retry_sleep_scale,
        game_id=args.game_id.lower(),
    )
    tokens = tuple(t.strip().lower() for t in args.tokens.split(",") if t.strip())
    async with Simulator(config, host=args.host, port=args.port) as sim:
        players = await sim.add_players(
            args.players, balance=args.balance, allowance=args.balance, tokens=tokens
        )
        if sys.platform == "win32":  # pragma: no cover - no signal handlers there
            await ready(sim, players)
            await anyio.sleep_forever()

        # Ctrl-C arrives as KeyboardInterrupt through anyio.run; SIGTERM (a parent
        # process or a container stopping us) ends the command cleanly. The
        # receiver is in place before anyone can read the announcement.
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            await ready(sim, players)
            async for _ in signals:
                break


def _announce(as_json: bool) -> Callable[[Simulator, list[SimPlayer]], Awaitable[None]]:
    async def announce(sim: Simulator, players: list[SimPlayer]) -> None:
        out = sys.stdout
        if as_json:
            out.write(json.dumps(_summary(sim, players)) + "\n")
        else:
            out.write(_text(sim, players))

        out.flush()

    return announce


def _summary(sim: Simulator, players: list[SimPlayer]) -> dict[str, object]:
    return {
        "url": sim.url,
        "api_key": sim.api_key,
        "api_secret": sim.api_secret,
        "game_id": sim.game_id,
        "players": [
            {"plyr_id": p.plyr_id, "session_jwt": p.session_jwt} for p in players
        ],
    }


def _text(sim: Simulator, players: list[SimPlayer]) -> str:
    host = sim.url.removesuffix("/api")
    lines = [
        f"PLYR API simulator serving {sim.url} (game {sim.game_id}; Ctrl-C stops it)",
        "",
        f"export PLYR_API_ENDPOINT={host}",
        f"export PLYR_API_KEY={sim.api_key}",
        f"export PLYR_API_SECRET={sim.api_secret}",
        "",
        f"{len(players)} ready player(s): plyr id, session JWT",
    ]
    lines += [f"{p.plyr_id} {p.session_jwt}" for p in players]
    return "\n".join(lines) + "\n"


def _latency(text: str) -> Latency:
    try:
        return Latency.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _faults(text: str) -> Faults:
    try:
        return Faults.parse(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workers(text: str) -> int | None:
    if text.strip().lower() in ("none", "unbounded", "inf", "0"):
        return None

    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad worker count {text!r}") from None

    if workers < 1:
        raise argparse.ArgumentTypeError("workers must be >= 1 (or 'unbounded')")

    return workers
