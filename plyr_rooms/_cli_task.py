"""``plyr-rooms task ID``: look up one task's status on the API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .client import PlyrClient
from .errors import PlyrError
from .tasks import TaskResult, TaskState

if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["add_parser"]

_EPILOG = """\
Credentials come from PLYR_API_ENDPOINT, PLYR_API_KEY and PLYR_API_SECRET.
Exit status: 0 SUCCESS, 1 FAILED, 3 PENDING or NOT_FOUND, 2 the lookup failed.
"""

# Exit codes by task state; a lookup that fails altogether exits with 2.
_EXIT = {TaskState.SUCCESS: 0, TaskState.FAILED: 1}
_UNSETTLED = 3
_LOOKUP_FAILED = 2


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register the ``task`` subcommand."""
    parser = subparsers.add_parser(
        "task",
        help="show the status of a task",
        description="Show the status of one task (GET /api/task/status/ID).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task_id", metavar="ID", help="the task id, e.g. 1717-0")
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="API host URL (default: $PLYR_API_ENDPOINT)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the server's answer as JSON instead",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Look the task up and print it; return the exit code."""
    try:
        async with PlyrClient(args.endpoint) as client:
            if args.json:
                path = "/task/status/" + quote(args.task_id, safe="")
                data = await client._get_json(path)
                sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
                result = TaskResult.from_json(data, args.task_id)
            else:
                result = await client.task_status(args.task_id)
                _show(result, sys.stdout)
    except (PlyrError, ValueError) as exc:
        sys.stderr.write(f"plyr-rooms task: {exc}\n")
        return _LOOKUP_FAILED

    return _EXIT.get(result.state, _UNSETTLED)


def _show(result: TaskResult, out: TextIO) -> None:
    rows = [
        ("method", result.method),
        ("room", _room(result)),
        ("hash", result.hash),
        ("completed at", result.completed_at),
        ("error", result.error_message),
        ("params", None if result.body is None else json.dumps(result.body)),
    ]
    out.write(f"task {result.task_id or '?'}: {result.state.value}\n")
    for name, value in rows:
        if value is not None:
            out.write(f"  {name + ':':<14}{value}\n")


def _room(result: TaskResult) -> str | None:
    if result.room_id is None:
        return None

    address = f" ({result.room_address})" if result.room_address else ""
    return result.room_id + address
