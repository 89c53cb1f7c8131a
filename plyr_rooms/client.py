"""The signed HTTP client of the PLYR game API.

:class:`PlyrClient` wraps one aiohttp session. Every request carries a fresh
millisecond timestamp and its own HMAC signature; a body is serialised once with
:func:`~plyr_rooms.signing.canonical_json` and sent as exactly the bytes that were
signed. Task-producing calls return a :class:`~plyr_rooms.tasks.TaskRef` and never
poll (the shared :class:`~plyr_rooms.poller.TaskPoller` does that).

Retries never repeat a side effect: reads (GET) retry transport errors, 5xx and
429; a POST is retried only when its connection was refused, and once after a
``401 Request expired`` (the server rejected it before doing anything) with the
clock offset measured from ``GET /now``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import quote

import attrs
from yarl import URL

from . import _wire
from ._http import ClientStats, SignedHttp
from ._wire import format_amount
from .errors import (
    ApiError,
    InvalidInput,
    TaskTimeout,
)
from .signing import canonical_json
from .tasks import AlreadyJoined, TaskMethod, TaskRef, TaskResult

if TYPE_CHECKING:
    from types import TracebackType

    import aiohttp


__all__ = ["Amount", "ClientStats", "PlyrClient", "format_amount"]

#: What the client accepts as an amount; it leaves as a plain decimal string.
Amount = Decimal | int | str

_ENV_ENDPOINT = "PLYR_API_ENDPOINT"
_ENV_KEY = "PLYR_API_KEY"
_ENV_SECRET = "PLYR_API_SECRET"
_ALREADY_JOINED = "All players are already joined"


@attrs.frozen
class _Route:
    method: str
    label: str  # "POST /game/pay": the route as logged and counted
    url: URL
    task: TaskMethod


class PlyrClient:
    """An async context manager that sends signed requests to the PLYR API.

    Every request gets a fresh millisecond timestamp and signature; bodies are
    sent as exactly the text that was signed. Reads retry transport errors, 5xx
    and 429; a POST is retried only when its connection was refused.

    Use it as ``async with PlyrClient() as client:`` (or call :meth:`aclose`).
    Arguments are checked before anything is sent (:class:`InvalidInput`).
    Cancelling a call leaves nothing half-done on our side, but a POST that was
    already sent may still have been accepted by the server: its task may run.

    Args:
        endpoint: the host URL (``https://api.plyr.network``), with or without
            ``/api``; defaults to ``$PLYR_API_ENDPOINT``.
        api_key: defaults to ``$PLYR_API_KEY``.
        api_secret: defaults to ``$PLYR_API_SECRET``; never shown or logged.
        request_timeout: seconds for one HTTP exchange. A ``Retry-After`` longer
            than this is not waited out: :class:`RateLimited` is raised instead.
        max_retries: retries after the first attempt, where retrying is safe.
        connection_limit: simultaneous connections of a session we create.
        session: an aiohttp session to use (and not close); by default one is
            created on entry and closed on exit.
        sync_timeout: seconds for one ``sync=True`` call (the server may wait up
            to about 75 s for a join).
        retry_backoff: the first retry waits up to this many seconds; each next
            one up to twice as long (with jitter), capped by *retry_backoff_max*.
        retry_backoff_max: the longest wait between two attempts, in seconds.

    Raises:
        InvalidInput: if a credential is missing (naming its variable) or the
            endpoint is not an http(s) URL.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        request_timeout: float = 30.0,
        max_retries: int = 3,
        connection_limit: int = 100,
        session: aiohttp.ClientSession | None = None,
        sync_timeout: float = 90.0,
        retry_backoff: float = 0.25,
        retry_backoff_max: float = 8.0,
    ) -> None:
        endpoint = _setting(endpoint, _ENV_ENDPOINT, "endpoint")
        self.base_url: str = _wire.base_url(endpoint)
        self.api_key: str = _setting(api_key, _ENV_KEY, "api_key")
        if max_retries < 0:
            raise InvalidInput(f"max_retries must be >= 0, got {max_retries!r}")

        self._http = SignedHttp(
            self.base_url,
            self.api_key,
            _setting(api_secret, _ENV_SECRET, "api_secret"),
            request_timeout=request_timeout,
            sync_timeout=sync_timeout,
            max_retries=max_retries,
            connection_limit=connection_limit,
            session=session,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
        )
        self._routes = self._make_routes()
        self._status_prefix = self.base_url + "/task/status/"

    def _make_routes(self) -> dict[str, _Route]:
        def route(path: str, task: TaskMethod) -> _Route:
            return _Route("POST", f"POST {path}", URL(self.base_url + path), task)

        return {
            "create": route("/game/create", TaskMethod.CREATE),
            "join": route("/game/join", TaskMethod.JOIN),
            "pay": route("/game/pay", TaskMethod.PAY),
            "earn": route("/game/earn", TaskMethod.EARN),
            "leave": route("/game/leave", TaskMethod.LEAVE),
            "end": route("/game/end", TaskMethod.END),
            "join_pay": route("/game/joinPay", TaskMethod.JOIN_PAY),
            "earn_leave": route("/game/earnLeave", TaskMethod.EARN_LEAVE),
            "create_join_pay": route("/game/createJoinPay", TaskMethod.CREATE_JOIN_PAY),
            "earn_leave_end": route("/game/earnLeaveEnd", TaskMethod.EARN_LEAVE_END),
        }

    def __repr__(self) -> str:
        key = self.api_key[:4] + "..." if len(self.api_key) > 8 else "..."
        return f"PlyrClient(base_url={self.base_url!r}, api_key={key!r})"

    async def __aenter__(self) -> PlyrClient:
        self._http.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session if this client created it."""
        await self._http.aclose()

    @property
    def stats(self) -> ClientStats:
        """A frozen snapshot of the request, retry and error counters."""
        return self._http.stats

    # -- game-room endpoints ---------------------------------------------------

    @overload
    async def create(
        self, *, expires_in: int | None = None, sync: Literal[False] = False
    ) -> TaskRef: ...
    @overload
    async def create(
        self, *, expires_in: int | None = None, sync: Literal[True]
    ) -> TaskResult: ...
    @overload
    async def create(
        self, *, expires_in: int | None = None, sync: bool
    ) -> TaskRef | TaskResult: ...
    async def create(
        self, *, expires_in: int | None = None, sync: bool = False
    ) -> TaskRef | TaskResult:
        """Create a game room (``POST /game/create``).

        Args:
            expires_in: the room's lifetime in seconds; the server's default
                (30 days) when None.
            sync: wait on the server for the outcome and return the TaskResult.

        Raises:
            TaskTimeout: with *sync*, when the server stopped waiting (504).
        """
        body: dict[str, object] = {}
        if expires_in is not None:
            body["expiresIn"] = _wire.expires_in(expires_in)

        return await self._task(self._routes["create"], body, sync)

    @overload
    async def join(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        *,
        sync: Literal[False] = False,
    ) -> TaskRef | AlreadyJoined: ...
    @overload
    async def join(
        self, room_id: str | int, session_jwts: Sequence[str], *, sync: Literal[True]
    ) -> TaskResult | AlreadyJoined: ...
    @overload
    async def join(
        self, room_id: str | int, session_jwts: Sequence[str], *, sync: bool
    ) -> TaskRef | TaskResult | AlreadyJoined: ...
    async def join(
        self, room_id: str | int, session_jwts: Sequence[str], *, sync: bool = False
    ) -> TaskRef | TaskResult | AlreadyJoined:
        """Join players, one session JWT each, to a room (``POST /game/join``).

        Returns:
            The task, or :class:`AlreadyJoined` (no task) when every player was
            already in the room.
        """
        room = _wire.room_id(room_id)
        jwts = _wire.session_jwts(session_jwts)
        body: dict[str, object] = {"roomId": room, "sessionJwts": jwts}
        route = self._routes["join"]
        status, data = await self._post(route, body, sync, jwts)
        if isinstance(data, dict) and data.get("message") == _ALREADY_JOINED:
            return AlreadyJoined(room, _ALREADY_JOINED)

        return _task_answer(route, status, data, sync)

    @overload
    async def pay(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[False] = False,
    ) -> TaskRef: ...
    @overload
    async def pay(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[True],
    ) -> TaskResult: ...
    @overload
    async def pay(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool,
    ) -> TaskRef | TaskResult: ...
    async def pay(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool = False,
    ) -> TaskRef | TaskResult:
        """Move amounts from players into a room (``POST /game/pay``).

        Entry *i* pays ``amounts[i]`` of ``tokens[i]`` for the player of
        ``session_jwts[i]``; repeat a JWT to pay several tokens.
        """
        room = _wire.room_id(room_id)
        jwts, entries = _jwt_entries(session_jwts, tokens, amounts)
        body = {"roomId": room, "sessionJwts": jwts, **entries}
        return await self._task(self._routes["pay"], body, sync, jwts)

    @overload
    async def earn(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[False] = False,
    ) -> TaskRef: ...
    @overload
    async def earn(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[True],
    ) -> TaskResult: ...
    @overload
    async def earn(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool,
    ) -> TaskRef | TaskResult: ...
    async def earn(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool = False,
    ) -> TaskRef | TaskResult:
        """Pay amounts out of a room to players (``POST /game/earn``).

        The chain takes the platform fee out of each amount.
        """
        body = _id_entries(room_id, plyr_ids, tokens, amounts)
        return await self._task(self._routes["earn"], body, sync)

    @overload
    async def leave(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        *,
        sync: Literal[False] = False,
    ) -> TaskRef: ...
    @overload
    async def leave(
        self, room_id: str | int, session_jwts: Sequence[str], *, sync: Literal[True]
    ) -> TaskResult: ...
    @overload
    async def leave(
        self, room_id: str | int, session_jwts: Sequence[str], *, sync: bool
    ) -> TaskRef | TaskResult: ...
    async def leave(
        self, room_id: str | int, session_jwts: Sequence[str], *, sync: bool = False
    ) -> TaskRef | TaskResult:
        """Take players out of a room (``POST /game/leave``); needs live JWTs."""
        room = _wire.room_id(room_id)
        jwts = _wire.session_jwts(session_jwts)
        body: dict[str, object] = {"roomId": room, "sessionJwts": jwts}
        return await self._task(self._routes["leave"], body, sync, jwts)

    @overload
    async def end(
        self, room_id: str | int, *, sync: Literal[False] = False
    ) -> TaskRef: ...
    @overload
    async def end(self, room_id: str | int, *, sync: Literal[True]) -> TaskResult: ...
    @overload
    async def end(self, room_id: str | int, *, sync: bool) -> TaskRef | TaskResult: ...
    async def end(
        self, room_id: str | int, *, sync: bool = False
    ) -> TaskRef | TaskResult:
        """End a room (``POST /game/end``); its balance of every token must be 0."""
        body: dict[str, object] = {"roomId": _wire.room_id(room_id)}
        return await self._task(self._routes["end"], body, sync)

    @overload
    async def join_pay(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[False] = False,
    ) -> TaskRef: ...
    @overload
    async def join_pay(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[True],
    ) -> TaskResult: ...
    @overload
    async def join_pay(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool,
    ) -> TaskRef | TaskResult: ...
    async def join_pay(
        self,
        room_id: str | int,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool = False,
    ) -> TaskRef | TaskResult:
        """Join and pay in one transaction (``POST /game/joinPay``)."""
        room = _wire.room_id(room_id)
        jwts, entries = _jwt_entries(session_jwts, tokens, amounts)
        body = {"roomId": room, "sessionJwts": jwts, **entries}
        return await self._task(self._routes["join_pay"], body, sync, jwts)

    @overload
    async def earn_leave(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[False] = False,
    ) -> TaskRef: ...
    @overload
    async def earn_leave(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[True],
    ) -> TaskResult: ...
    @overload
    async def earn_leave(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool,
    ) -> TaskRef | TaskResult: ...
    async def earn_leave(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool = False,
    ) -> TaskRef | TaskResult:
        """Earn, then take the players out (``POST /game/earnLeave``); no JWTs.

        Amounts of 0 are allowed: that removes players whose sessions lapsed.
        """
        body = _id_entries(room_id, plyr_ids, tokens, amounts)
        return await self._task(self._routes["earn_leave"], body, sync)

    @overload
    async def create_join_pay(
        self,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        expires_in: int | None = None,
        sync: Literal[False] = False,
    ) -> TaskRef: ...
    @overload
    async def create_join_pay(
        self,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        expires_in: int | None = None,
        sync: Literal[True],
    ) -> TaskResult: ...
    @overload
    async def create_join_pay(
        self,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        expires_in: int | None = None,
        sync: bool,
    ) -> TaskRef | TaskResult: ...
    async def create_join_pay(
        self,
        session_jwts: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        expires_in: int | None = None,
        sync: bool = False,
    ) -> TaskRef | TaskResult:
        """Create a room, join and pay in one transaction.

        ``POST /game/createJoinPay``; the new room's id is in the task's result.
        """
        jwts, entries = _jwt_entries(session_jwts, tokens, amounts)
        body: dict[str, object] = {"sessionJwts": jwts, **entries}
        if expires_in is not None:
            body["expiresIn"] = _wire.expires_in(expires_in)

        return await self._task(self._routes["create_join_pay"], body, sync, jwts)

    @overload
    async def earn_leave_end(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[False] = False,
    ) -> TaskRef: ...
    @overload
    async def earn_leave_end(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: Literal[True],
    ) -> TaskResult: ...
    @overload
    async def earn_leave_end(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool,
    ) -> TaskRef | TaskResult: ...
    async def earn_leave_end(
        self,
        room_id: str | int,
        plyr_ids: Sequence[str],
        tokens: Sequence[str],
        amounts: Sequence[Amount],
        *,
        sync: bool = False,
    ) -> TaskRef | TaskResult:
        """Earn, leave and end in one transaction (``POST /game/earnLeaveEnd``)."""
        body = _id_entries(room_id, plyr_ids, tokens, amounts)
        return await self._task(self._routes["earn_leave_end"], body, sync)

    # -- reads ------------------------------------------------------------------

    async def is_joined(self, room_id: str | int, plyr_id: str) -> bool:
        """Return whether a player is in a room, as the chain says."""
        room = _wire.room_id(room_id)
        player = _wire.lower_name(plyr_id, "plyr_id")
        url = URL(
            f"{self.base_url}/game/isJoined?roomId={room}"
            f"&plyrId={quote(player, safe='')}",
            encoded=True,
        )
        label = "GET /game/isJoined"
        data = _json(*await self._http.call("GET", url, label, None), label)
        joined = data.get("isJoined") if isinstance(data, dict) else None
        if not isinstance(joined, bool):
            raise ApiError(200, "isJoined answer has no boolean 'isJoined'")

        return joined

    async def task_status(self, task_id: str, *, retry: bool = True) -> TaskResult:
        """Read a task's status (``GET /task/status/:id``).

        Args:
            task_id: the id a task-producing call returned.
            retry: retry transport errors, 5xx and 429 here; with False, make
                exactly one request and raise what it gives (the poller retries
                on its own schedule).
        """
        if not isinstance(task_id, str) or not task_id:
            raise InvalidInput(f"task_id must be a non-empty str, got {task_id!r}")

        url = URL(self._status_prefix + quote(task_id, safe=""), encoded=True)
        status, raw = await self._http.call(
            "GET", url, "GET /task/status/:id", None, retry=retry
        )
        try:
            return TaskResult.from_json(json.loads(raw), task_id)
        except ValueError:
            raise _unreadable(status, "GET /task/status/:id") from None

    async def server_time(self) -> datetime:
        """Return the server's clock (``GET /now``), timezone-aware."""
        label = "GET /now"
        url = URL(self.base_url + "/now")
        data = _json(*await self._http.call("GET", url, label, None), label)
        try:
            now = datetime.fromisoformat(data["now"])
        except (TypeError, KeyError, ValueError):
            raise _unreadable(200, label) from None

        return now if now.tzinfo else now.replace(tzinfo=UTC)

    async def balances(self, plyr_id: str) -> dict[str, Decimal]:
        """Return a player's token balances (``GET /user/balance/:plyrId``)."""
        player = _wire.lower_name(plyr_id, "plyr_id")
        url = URL(
            f"{self.base_url}/user/balance/{quote(player, safe='')}", encoded=True
        )
        label = "GET /user/balance/:plyrId"
        status, raw = await self._http.call("GET", url, label, None)
        try:
            data = json.loads(raw, parse_float=Decimal)
            return {str(k): _decimal(v) for k, v in data.items()}
        except (ValueError, TypeError, AttributeError, ArithmeticError):
            raise _unreadable(status, label) from None

    async def _get_json(self, path: str) -> Any:
        # A raw signed GET for the command line's --json output.
        label = f"GET {path}"
        return _json(
            *await self._http.call("GET", URL(self.base_url + path), label, None), label
        )

    # -- the request path -------------------------------------------------------

    async def _task(
        self,
        route: _Route,
        body: dict[str, object],
        sync: bool,
        jwts: Sequence[str] = (),
    ) -> TaskRef | TaskResult:
        status, data = await self._post(route, body, sync, jwts)
        return _task_answer(route, status, data, sync)

    async def _post(
        self, route: _Route, body: dict[str, object], sync: bool, jwts: Sequence[str]
    ) -> tuple[int, Any]:
        # Submit a task-producing call: serialise once, sign and send that text.
        if sync:
            body["sync"] = True

        text = canonical_json(body)
        status, raw = await self._http.call(
            route.method,
            route.url,
            route.label,
            text,
            retry=False,
            sync=sync,
            jwts=jwts,
        )
        if status == 504:
            raise _timeout(raw, route.label)

        return status, _json(status, raw, route.label)


def _setting(value: str | None, variable: str, name: str) -> str:
    if value is None:
        value = os.environ.get(variable)

    if not value:
        raise InvalidInput(f"no {name}: pass {name}= or set ${variable}")

    return value


def _jwt_entries(
    session_jwts: Sequence[str], tokens: Sequence[str], amounts: Sequence[Amount]
) -> tuple[list[str], dict[str, object]]:
    jwts = _wire.session_jwts(session_jwts)
    entries = _entries(tokens, amounts)
    _wire.same_lengths(session_jwts=jwts, tokens=tokens, amounts=amounts)
    return jwts, entries


def _id_entries(
    room_id: str | int,
    plyr_ids: Sequence[str],
    tokens: Sequence[str],
    amounts: Sequence[Amount],
) -> dict[str, object]:
    room = _wire.room_id(room_id)
    players = _wire.lower_names(plyr_ids, "plyr_ids")
    entries = _entries(tokens, amounts)
    _wire.same_lengths(plyr_ids=players, tokens=tokens, amounts=amounts)
    return {"roomId": room, "plyrIds": players, **entries}


def _entries(tokens: Sequence[str], amounts: Sequence[Amount]) -> dict[str, object]:
    symbols = _wire.lower_names(tokens, "tokens", token=True)
    if isinstance(amounts, str | bytes) or not isinstance(amounts, Sequence):
        raise InvalidInput(f"amounts must be a list, got a {type(amounts).__name__}")

    texts = [format_amount(a, f"amounts[{i}]") for i, a in enumerate(amounts)]
    return {"tokens": symbols, "amounts": texts}


def _task_answer(
    route: _Route, status: int, data: Any, sync: bool
) -> TaskRef | TaskResult:
    # {"task": {"id", "status"}}, or with sync the task object.
    if sync:
        try:
            return TaskResult.from_json(data)
        except ValueError:
            raise _unreadable(status, route.label) from None

    task = data.get("task") if isinstance(data, dict) else None
    task_id = task.get("id") if isinstance(task, dict) else None
    if not isinstance(task_id, str) or not task_id:
        raise _unreadable(status, route.label)

    return TaskRef(task_id, route.task)


def _json(status: int, raw: bytes, label: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise _unreadable(status, label) from None


def _unreadable(status: int, label: str) -> ApiError:
    # A success status with a body we cannot read: for a POST the request may
    # still have taken effect, so say so rather than guess.
    effect = " (the request may have taken effect)" if label[:4] == "POST" else ""
    return ApiError(status, f"{label}: unreadable response{effect}")


def _timeout(raw: bytes, label: str) -> TaskTimeout | ApiError:
    # The 504 of a sync call: the server stopped waiting, the task may still run.
    # A 504 without a task id came from something in front of the server.
    try:
        data = json.loads(raw)
    except ValueError:
        data = None

    if isinstance(data, dict) and isinstance(data.get("taskId"), str):
        message = data.get("errorMessage") or "the server stopped waiting"
        return TaskTimeout(data["taskId"], f"{label}: {message}")

    return _wire.api_error(504, "Gateway Timeout", raw)


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value

    if isinstance(value, str | int) and not isinstance(value, bool):
        return Decimal(value)

    raise TypeError(type(value).__name__)
