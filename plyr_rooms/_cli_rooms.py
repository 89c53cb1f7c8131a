"""``plyr-rooms rooms`` and ``plyr-rooms resume``: look at a journal, take it back.

``rooms`` reads a journal file and lists its rooms with their state, the task ids
still pending and, for unsettled rooms, why. ``resume`` opens a manager on the
journal and the API, settles what the service can tell, finishes the walks that
can be finished, and prints what is left for an operator.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from .errors import PlyrError
from .journal import SQLiteJournal

if TYPE_CHECKING:
    from typing import TextIO

    from ._resume import ResumeReport
    from .journal import JournaledRoom
    from .lifecycle import Player

__all__ = ["DEFAULT_JOURNAL", "add_parser", "unsettled_reason"]

#: The journal file used when neither --journal nor $PLYR_ROOMS_JOURNAL is given.
DEFAULT_JOURNAL = "plyr-rooms-journal.sqlite3"
_ENV_JOURNAL = "PLYR_ROOMS_JOURNAL"
_FAILED_EXIT = 2
_UNSETTLED_EXIT = 1
# Step outcomes that leave the room for an operator (REVERTED, REFUSED and
# NOT_APPLIED prove nothing happened; SUCCESS and CHECKED were applied).
_OPEN_OUTCOMES = frozenset({"FAILED", "UNKNOWN", "TIMEOUT", "LOST"})

_ROOMS_EPILOG = """\
The journal is --journal, else $PLYR_ROOMS_JOURNAL, else ./plyr-rooms-journal.sqlite3.
Exit status: 0 listed, 2 the journal could not be read.
"""

_RESUME_EPILOG = """\
Credentials come from PLYR_API_ENDPOINT, PLYR_API_KEY and PLYR_API_SECRET.
Session JWTs are never journaled: give those of players still online with
--sessions FILE (JSON: {"<plyr id>": "<session JWT>", ...}); without them, rooms
still pay out and let players go through earn-leave, which needs no JWT.
Exit status: 0 every room ended, 1 some rooms need an operator, 2 resume failed.
"""


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register the ``rooms`` and ``resume`` subcommands."""
    rooms = subparsers.add_parser(
        "rooms",
        help="list the rooms of a journal",
        description="List journaled rooms: state, pending task ids, unsettled reasons.",
        epilog=_ROOMS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _journal_option(rooms)
    rooms.add_argument(
        "--all", action="store_true", help="include rooms that ended or were closed"
    )
    rooms.add_argument("--json", action="store_true", help="one JSON object per room")
    rooms.set_defaults(handler=list_rooms)

    resume = subparsers.add_parser(
        "resume",
        help="resume the unfinished rooms of a journal",
        description="Settle and finish the unfinished rooms of a journal.",
        epilog=_RESUME_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _journal_option(resume)
    resume.add_argument(
        "--endpoint", metavar="URL", help="API host URL (default: $PLYR_API_ENDPOINT)"
    )
    resume.add_argument(
        "--sessions", metavar="FILE", help="JSON file of plyr id -> session JWT"
    )
    resume.add_argument(
        "--import",
        dest="imports",
        metavar="MODULE",
        action="append",
        default=[],
        help="import MODULE first, so that its room classes are registered",
    )
    resume.add_argument(
        "--task-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait for each task still pending",
    )
    resume.add_argument(
        "--no-walk",
        dest="walk",
        action="store_false",
        help="only settle what the service can tell; finish no walk",
    )
    resume.add_argument("--json", action="store_true", help="print the report as JSON")
    resume.set_defaults(handler=resume_rooms)


def _journal_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal",
        metavar="PATH",
        default=None,
        help=f"the journal file (default: ${_ENV_JOURNAL} or {DEFAULT_JOURNAL})",
    )


def _journal_path(args: argparse.Namespace) -> str:
    path: str = args.journal or os.environ.get(_ENV_JOURNAL) or DEFAULT_JOURNAL
    return path


def _fail(command: str, message: str) -> int:
    sys.stderr.write(f"plyr-rooms {command}: {message}\n")
    return _FAILED_EXIT


async def list_rooms(args: argparse.Namespace) -> int:
    """List the journal's rooms; return the exit code."""
    path = _journal_path(args)
    if not os.path.exists(path):  # noqa: ASYNC240 - one stat before any I/O
        return _fail("rooms", f"no journal at {path!r}")

    try:
        async with SQLiteJournal(path) as journal:
            entries = await journal.rooms(include_finished=args.all)
    except PlyrError as exc:
        return _fail("rooms", str(exc))

    if args.json:
        for entry in entries:
            sys.stdout.write(json.dumps(_room_json(entry), ensure_ascii=False) + "\n")
    else:
        _table(entries, sys.stdout)

    return 0


def unsettled_reason(entry: JournaledRoom) -> str | None:
    """Return why a journaled room needs an operator, or None if it does not.

    The room's own reason when it recorded one; else what its steps say: a
    step with no outcome (pending, or intended with no task id) or one whose
    outcome is not known or may have moved tokens.
    """
    if entry.room.unsettled:
        return entry.room.unsettled

    for step in reversed(entry.steps):
        if step.outcome is None:
            if step.task_id is None:
                return f"{step.step}: intended, no task id recorded"

            return f"{step.step}: task {step.task_id} pending"

        if step.outcome in _OPEN_OUTCOMES:
            detail = step.detail or {}
            why = detail.get("reason") or detail.get("errorMessage") or step.outcome
            return f"{step.step}: {why}"

        if step.outcome in ("SUCCESS", "CHECKED"):
            return None

    return None


def _room_json(entry: JournaledRoom) -> dict[str, Any]:
    room = entry.room
    return {
        "key": room.key,
        "class": room.class_name,
        "room_id": room.room_id,
        "state": room.state,
        "players": list(room.players),
        "pot": dict(room.pot),
        "pending_task_ids": list(entry.pending_task_ids),
        "unsettled": unsettled_reason(entry),
        "steps": len(entry.steps),
    }


def _table(entries: list[JournaledRoom], out: TextIO) -> None:
    if not entries:
        out.write("no rooms\n")
        return

    out.write(f"{'KEY':<12} {'CLASS':<24} {'ROOM':>6} {'STATE':<8} PENDING / WHY\n")
    for entry in entries:
        room = entry.room
        name = room.class_name.rsplit(".", 1)[-1][:24]
        pending = ",".join(entry.pending_task_ids) or "-"
        out.write(
            f"{room.key[:12]:<12} {name:<24} {room.room_id or '-':>6} "
            f"{room.state:<8} {pending}\n"
        )
        reason = unsettled_reason(entry)
        if reason:
            out.write(f"{'':<12} unsettled: {reason}\n")

    unsettled = sum(1 for e in entries if unsettled_reason(e))
    out.write(f"{len(entries)} rooms, {unsettled} unsettled\n")


async def resume_rooms(args: argparse.Namespace) -> int:
    """Resume the journal's unfinished rooms; return the exit code."""
    from ._resume import resume
    from .manager import RoomManager

    path = _journal_path(args)
    if not os.path.exists(path):  # noqa: ASYNC240 - one stat before any I/O
        return _fail("resume", f"no journal at {path!r}")

    try:
        for module in args.imports:
            importlib.import_module(module)

        players = _sessions(args.sessions) if args.sessions else []
        async with (
            SQLiteJournal(path) as journal,
            RoomManager(endpoint=args.endpoint, journal=journal) as manager,
        ):
            report = await resume(
                manager, players=players, task_wait=args.task_wait, walk=args.walk
            )
    except (PlyrError, ImportError, OSError, ValueError) as exc:
        return _fail("resume", str(exc))

    _show_report(report, sys.stdout, as_json=args.json)
    return 0 if report.ok else _UNSETTLED_EXIT


def _sessions(path: str) -> list[Player]:
    from .lifecycle import Player

    with open(path, encoding="utf-8") as file:
        data = json.load(file)

    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of plyr id -> session JWT")

    return [Player(str(plyr_id), str(jwt)) for plyr_id, jwt in data.items()]


def _show_report(report: ResumeReport, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        rooms = [
            {
                "key": r.key,
                "class": r.class_name,
                "room_id": r.room_id,
                "state": r.state,
                "outcome": r.outcome,
                "reason": r.reason,
                "pending_task_ids": list(r.pending_task_ids),
            }
            for r in report.rooms
        ]
        out.write(json.dumps({"rooms": rooms, "counts": report.counts()}) + "\n")
        return

    for room in report.unsettled:
        pending = ",".join(room.pending_task_ids) or "-"
        out.write(
            f"{room.key[:12]} room {room.room_id or '-'} {room.state} "
            f"{room.outcome}: {room.reason} (pending: {pending})\n"
        )

    counts = ", ".join(f"{n} {what}" for what, n in sorted(report.counts().items()))
    out.write(f"resumed {len(report.rooms)} rooms: {counts or 'nothing to do'}\n")
