"""The journal's values and rules, shared by both stores.

Record types (frozen), the journal's errors, and the checks every record passes
before a store accepts it: plain JSON only, and no secret anywhere (a session
JWT, or a key named like a secret).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from ._journal_writer import submit_refusal
from .errors import InvalidInput, PlyrError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "FINISHED_STATES",
    "JournalClosed",
    "JournalError",
    "JournalStats",
    "JournalVersionError",
    "JournaledRoom",
    "RoomRecord",
    "StepRecord",
    "check_no_secrets",
    "data_text",
    "json_text",
    "scan_json",
]

#: Room states after which a room needs nothing more (unless it is unsettled).
FINISHED_STATES = frozenset({"ENDED"})

# A compact JWS (three base64url parts, the header starting with '{"') anywhere
# in a string. Session JWTs are the only such strings the library handles.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", re.I)
# A key named like a secret, in JSON text: a string directly followed by ":".
_SECRET_KEY = re.compile(r'"[^"]*(?:jwt|password|api_?secret|api_?key)[^"]*"\s*:', re.I)
# A match of either pattern holds one of these, once lower-cased. Each is made of
# letters that only match, ignoring case, characters lower-casing to themselves
# ("s" also matches U+017F and "i" U+0131, which do not: hence "word", "cret").
_HINTS = ("eyj", "jwt", "word", "cret", "key")


class JournalError(PlyrError):
    """The journal refused a record or could not be read or written."""


class JournalVersionError(JournalError):
    """The journal file was written by a newer plyr-rooms than this one.

    Attributes:
        path: the file.
        found: the schema version the file carries.
        supported: the newest schema version this plyr-rooms reads.
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"journal {path!r} has schema version {found}, but this plyr-rooms "
            f"reads versions up to {supported}: it was written by a newer "
            "plyr-rooms; upgrade plyr-rooms to resume from it (the file was "
            "left untouched)"
        )
        self.path = path
        self.found = found
        self.supported = supported


class JournalClosed(JournalError, RuntimeError):
    """The journal was used after :meth:`Journal.aclose`."""


def _pot(value: Mapping[str, Decimal | int | str]) -> dict[str, str]:
    # Pots leave the library as plain decimal strings with no exponent.
    out: dict[str, str] = {}
    for token, amount in sorted(value.items()):
        number = Decimal(str(amount))
        if not number.is_finite():
            raise InvalidInput(f"pot amount for {token!r} is not finite: {amount!r}")

        text = format(number.normalize(), "f")
        out[str(token)] = "0" if number.is_zero() else text

    return out


def _frozen_json(value: Mapping[str, Any] | None) -> dict[str, Any]:
    # A private deep copy that survives a JSON round trip unchanged, so that a
    # record read back from SQLite equals the record that was written.
    return _frozen_text(value)[1]


def _frozen_text(value: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    # The compact JSON text of *value* and the copy read back from it.
    text = json_text(dict(value or {}))
    result: dict[str, Any] = json.loads(text)
    return text, result


def _ids(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(item).lower() for item in value)


def _plain(value: object) -> str:
    # Decimals (amounts) are kept as plain decimal strings; nothing else converts.
    if isinstance(value, Decimal):
        return format(value, "f")

    raise TypeError(f"{type(value).__name__} is not JSON")


@attrs.frozen
class RoomRecord:
    """What the journal knows of one room.

    Attributes:
        key: the client-side id given to the room when it was opened (uuid4 hex);
            the server room id is known only after create.
        class_name: the registry name of the room's class (resume rebuilds it).
        room_id: the server's room id (a decimal string) once created.
        room_address: the room contract's address once created.
        state: the room's state name (``RoomState`` member name, e.g. ``"PAID"``).
        players: plyr ids only, lower-case; never session JWTs.
        pot: tokens held by the room per token symbol, as decimal strings.
        unsettled: why the room needs an operator (None when it does not).
        data: the room's own extra state (per-player states, walk, game data),
            plain JSON and free of secrets.
    """

    key: str
    class_name: str
    state: str = "NEW"
    room_id: str | None = None
    room_address: str | None = None
    players: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    pot: Mapping[str, str] = attrs.field(factory=dict, converter=_pot)
    unsettled: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict)
    # The compact JSON text *data* was read back from: the SQLite store writes it
    # as it is, and the secret scan reads it, instead of serialising data again.
    _data_text: str = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        text, data = _frozen_text(self.data)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_data_text", text)

    @property
    def finished(self) -> bool:
        """True when the room reached a final state and needs nothing more."""
        return self.state in FINISHED_STATES and self.unsettled is None


@attrs.frozen
class StepRecord:
    """One step of a room as journaled.

    Attributes:
        seq: the journal's sequence number for the step (increasing in the order
            steps were intended, across all rooms).
        step: the step's name (``"join"``, ``"pay"``, ``"earn_leave_end"``...).
        request: what was about to be sent, with plyr ids in place of JWTs.
        task_id: the service's task id, once known.
        outcome: how the step ended (``"SUCCESS"``, ``"FAILED"``...), or None
            while it is not settled.
        detail: what the outcome carried (room id, error message...).
    """

    seq: int
    step: str
    request: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_json)
    task_id: str | None = None
    outcome: str | None = None
    detail: Mapping[str, Any] | None = None

    @property
    def settled(self) -> bool:
        """True once an outcome was recorded."""
        return self.outcome is not None


@attrs.frozen
class JournaledRoom:
    """A room with all its steps, oldest first (what resume works from).

    Attributes:
        room: the room's record as last written.
        steps: every step of the room, oldest first.
        after_record: the seqs of the steps whose outcome was recorded after
            the room's record was last written: the record does not show them
            yet (the process stopped between the two writes).
    """

    room: RoomRecord
    steps: tuple[StepRecord, ...] = ()
    after_record: tuple[int, ...] = ()

    @property
    def unapplied(self) -> tuple[StepRecord, ...]:
        """The settled steps the room's record does not show yet."""
        later = set(self.after_record)
        return tuple(s for s in self.steps if s.seq in later)

    @property
    def pending(self) -> tuple[StepRecord, ...]:
        """The steps with no recorded outcome."""
        return tuple(step for step in self.steps if not step.settled)

    @property
    def pending_task_ids(self) -> tuple[str, ...]:
        """The task ids of the pending steps that have one."""
        return tuple(s.task_id for s in self.pending if s.task_id is not None)


@attrs.frozen
class JournalStats:
    """Counters of a journal store.

    Attributes:
        writes: records accepted (room and step writes; reads not counted).
        transactions: commits made (a memory journal counts one per write).
        largest_batch: the most records one transaction carried.
        writer_cpu_seconds: CPU time the store's own writer thread used (0 for
            a store without one).
    """

    writes: int = 0
    transactions: int = 0
    largest_batch: int = 0
    writer_cpu_seconds: float = 0.0


# One encoder for every record: json.dumps with these options builds a new one
# per call, which costs about as much as encoding a step's request.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain)


def json_text(value: object) -> str:
    """Return *value* as compact JSON text (Decimals as plain decimal strings).

    Raises:
        InvalidInput: if *value* is not plain JSON.
    """
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"journal records must be plain JSON: {exc}") from None


def scan_json(text: str, *, where: str) -> str:
    """Return JSON *text* unchanged if it holds no JWT and no secret-named key.

    Raises:
        InvalidInput: naming *where* (never the secret itself).
    """
    # Both patterns are slow on long text, and almost every record holds none
    # of the words they need: look for those first, on the lower-cased text.
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return text

    if _JWT.search(text):
        raise InvalidInput(f"{where} holds what looks like a session JWT")

    found = _SECRET_KEY.search(text)
    if found:
        raise InvalidInput(f"{where} has a secret-named key {found.group(0)[:-1]}")

    return text


def check_no_secrets(value: object, *, where: str) -> None:
    """Refuse *value* if it holds a JWT or a secret-named key, anywhere in it.

    Scans the value's JSON text once (cheaper than walking it in Python).

    Raises:
        InvalidInput: naming *where* (never the secret itself).
    """
    if value is None:
        return

    if isinstance(value, str):
        if _JWT.search(value):
            raise InvalidInput(f"{where} holds what looks like a session JWT")

        return

    scan_json(json_text(value), where=where)


def _check_room(room: RoomRecord) -> None:
    fields = [room.key, room.class_name, room.state, room.room_id, room.room_address]
    check_no_secrets([fields, room.players, room.unsettled], where="room")
    scan_json(data_text(room), where="room")


def _check_same_room(room: RoomRecord, room_key: str) -> None:
    # A step's outcome may carry its room's record: the same room, checked.
    if room.key != room_key:
        raise InvalidInput(f"the record of room {room.key!r} is not room {room_key!r}")

    _check_room(room)


def data_text(room: RoomRecord) -> str:
    """Return the room's data as the compact JSON text it was read back from."""
    return room._data_text


def _check_submit(step: StepRecord, room_key: str, task_id: str) -> None:
    # The memory store's side of submit_refusal, the rule both stores share.
    why = submit_refusal(room_key, step.seq, step.task_id, step.outcome, task_id)
    if why is not None:
        raise JournalError(why)
