"""The ``plyr-rooms`` command: demo, simulator, load tests, task lookup, rooms.

Each subcommand lives in its own private module exposing ``add_parser``, which
registers its options and an async ``handler(args) -> int``. This module owns the
terminal: it sets up logging for the command line and turns the handler's result
into the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

# In the order `plyr-rooms --help` lists them.
_SUBCOMMANDS = (
    "_cli_demo",
    "_cli_simulate",
    "_cli_bench",
    "_cli_task",
    "_cli_rooms",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="plyr-rooms",
        description="Safe, fast game rooms on the PLYR API, with a local simulator.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-v: INFO, -vv: DEBUG)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"plyr_rooms.{name}")
        module.add_parser(subparsers)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2

    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = anyio.run(handler, args, backend="asyncio")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

    return code


if __name__ == "__main__":  # pragma: no cover - exercised through the entry point
    sys.exit(main())
