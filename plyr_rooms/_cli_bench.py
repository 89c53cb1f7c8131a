"""``plyr-rooms bench``: the load-test harness with a progress display.

By default every strategy runs against its own embedded simulator, started in a
separate process. With ``--endpoint`` it runs against a real PLYR API instead:
credentials come from the environment, player session JWTs from a file, the
number of rooms is capped and the run must be confirmed, since real tokens move.
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio

from . import _wire
from ._bench import BenchConfig, Player, Target, run_bench, table
from ._bench._args import add_arguments, command_line, config_from_args, write_outputs
from .errors import InvalidInput

if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["add_parser"]

#: The most rooms per strategy a run against a real endpoint may open.
REAL_ROOMS_CAP = 5

_EPILOG = f"""\
Against a real endpoint (--endpoint), PLYR_API_KEY and PLYR_API_SECRET give the
credentials and --players-file the players, one "PLYR_ID SESSION_JWT" per line.
Real tokens move: at most {REAL_ROOMS_CAP} rooms per strategy, and the run asks
for confirmation unless --yes is given. Exit status: 0 if every room ended.
"""


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="load-test the strategies side by side",
        description="Run rooms through their lifecycle with each strategy (naive "
        "polling, sync mode, plyr-rooms step by step and atomic) and compare "
        "status requests, added latency, client CPU and memory.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser, rooms=50)
    real = parser.add_argument_group("real endpoint")
    real.add_argument(
        "--endpoint",
        metavar="URL",
        nargs="?",
        const=os.environ.get("PLYR_API_ENDPOINT", ""),
        help="run against this API host instead of the simulator "
        "(without URL: $PLYR_API_ENDPOINT)",
    )
    real.add_argument(
        "--players-file", metavar="FILE", help="PLYR_ID SESSION_JWT lines"
    )
    real.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table and return the exit code."""
    try:
        config = config_from_args(args)
        endpoint = None if args.endpoint is None else _real_target(args, config)
    except (InvalidInput, ValueError, OSError) as error:
        sys.stderr.write(f"plyr-rooms bench: {error}\n")
        return 2

    if endpoint is not None and not await _confirmed(args, config):
        sys.stderr.write("plyr-rooms bench: not confirmed, nothing sent\n")
        return 2

    bar = _ProgressBar(sys.stderr)
    report = await run_bench(config, endpoint=endpoint, progress=bar)
    report["command"] = command_line(None)
    write_outputs(report, args)
    if args.json != "-":
        sys.stdout.write(table(report) + "\n")

    failed = sum(s["rooms_failed"] for s in report["strategies"].values())
    return 0 if failed == 0 else 1


def _real_target(args: argparse.Namespace, config: BenchConfig) -> Target:
    if not args.endpoint:
        raise InvalidInput("--endpoint needs a URL or $PLYR_API_ENDPOINT")

    if config.rooms > REAL_ROOMS_CAP:
        raise InvalidInput(
            f"at most {REAL_ROOMS_CAP} rooms per strategy against a real endpoint,"
            f" got {config.rooms}"
        )

    key = os.environ.get("PLYR_API_KEY")
    secret = os.environ.get("PLYR_API_SECRET")
    if not key or not secret:
        raise InvalidInput("set PLYR_API_KEY and PLYR_API_SECRET for a real endpoint")

    if not args.players_file:
        raise InvalidInput("--players-file is required for a real endpoint")

    players = read_players(args.players_file)
    if len(players) < config.players:
        raise InvalidInput(
            f"{args.players_file} has {len(players)} players; rooms need"
            f" {config.players}"
        )

    return Target(
        url=_wire.base_url(args.endpoint),
        api_key=key,
        api_secret=secret,
        players=players,
        simulated=False,
    )


def read_players(path: str) -> tuple[Player, ...]:
    """Read ``PLYR_ID SESSION_JWT`` lines (blank lines and ``#`` comments skipped).

    Raises:
        InvalidInput: for a line that is not two fields (named by number only,
            since it may hold a JWT).
    """
    players = []
    with open(path) as file:
        for number, line in enumerate(file, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue

            fields = text.split()
            if len(fields) != 2:
                raise InvalidInput(f"{path}:{number}: expected PLYR_ID SESSION_JWT")

            players.append(Player(fields[0].lower(), fields[1]))

    return tuple(players)


async def _confirmed(args: argparse.Namespace, config: BenchConfig) -> bool:
    runs = len(config.strategies) * config.rooms
    paid = Decimal(config.stake) * config.players * runs
    sys.stderr.write(
        f"This opens {runs} rooms on {args.endpoint} ({config.rooms} per strategy:"
        f" {', '.join(config.strategies)}); players pay {format(paid, 'f')}"
        f" {config.token} in total and get it back less the platform fee.\n"
    )
    if args.yes:
        return True

    if not sys.stdin.isatty():
        sys.stderr.write("not a terminal: pass --yes to confirm\n")
        return False

    answer = await anyio.to_thread.run_sync(input, "Type 'yes' to go on: ")
    return answer.strip().lower() == "yes"


class _ProgressBar:
    # One line per strategy, redrawn in place on a terminal; on anything else,
    # just the final count of each strategy.

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._live = stream.isatty()
        self._finished: set[str] = set()

    def __call__(self, strategy: str, ended: int, failed: int, total: int) -> None:
        done = ended + failed
        finished = done >= total
        if strategy in self._finished or (not self._live and not finished):
            return

        if finished:
            self._finished.add(strategy)

        filled = self._width * done // max(total, 1)
        bar = "#" * filled + "." * (self._width - filled)
        line = f"{strategy:>12} [{bar}] {done}/{total} rooms, {failed} failed"
        self._stream.write(("\r" if self._live else "") + line)
        if finished:
            self._stream.write("\n")

        self._stream.flush()
