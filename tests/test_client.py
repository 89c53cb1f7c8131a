"""PlyrClient over real HTTP on loopback, against small aiohttp handlers.

The handlers check every request the way the real server does (HMAC over the
re-serialised parsed body, the ±5 minute window) and answer with whatever shape
a test asks for. Nothing in aiohttp is mocked; retries wait through a recorder
instead of sleeping.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import attrs
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from plyr_rooms import _cli_task, _wire
from plyr_rooms.client import PlyrClient, format_amount
from plyr_rooms.errors import (
    ApiError,
    InvalidInput,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PlyrError,
    RateLimited,
    ServerError,
    TaskTimeout,
    TransportError,
    Unauthenticated,
)
from plyr_rooms.signing import canonical_json, parse_js_json, sign, sign_text
from plyr_rooms.tasks import AlreadyJoined, TaskMethod, TaskRef, TaskState

# The conftest marks coroutine tests only after collection, which makes anyio's
# plugin rebuild parametrized tests without their parameters; marking the module
# lets anyio see the mark while collecting.
pytestmark = pytest.mark.anyio

KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECRET = "SECRET-do-not-leak-" + "5a" * 24
JWTS = [
    "eyJhbGciOiJFUzI1NiJ9.eyJwbHlySWQiOiJhbGljZSJ9.JWT-ALICE-do-not-leak",
    "eyJhbGciOiJFUzI1NiJ9.eyJwbHlySWQiOiJib2IifQ.JWT-BOB-do-not-leak",
]
WINDOW_MS = 300_000

Reply = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


@attrs.frozen
class Seen:
    """One request as the fake server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    signed_ok: bool

    def json(self) -> Any:
        return json.loads(self.raw)


@attrs.define
class FakeApi:
    """A catch-all handler that authenticates like the server, then replies."""

    url: str = ""
    seen: list[Seen] = attrs.Factory(list)
    # Milliseconds the server's clock is ahead of ours; with check_expiry the
    # ±5 minute window is enforced against it (and /now and Date follow it).
    clock_ms: int = 0
    check_expiry: bool = False
    now_checks_expiry: bool = True
    drop_now: bool = False
    reply: Reply | None = None
    tasks: int = 0

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    def server_now(self) -> datetime:
        return datetime.now(UTC) + timedelta(milliseconds=self.clock_ms)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        timestamp = request.headers.get("timestamp", "")
        signature = request.headers.get("signature", "")
        # The server signs JSON.stringify of what it parsed, not the raw bytes.
        body = parse_js_json(raw) if raw else {}
        ok = signature == sign(SECRET, timestamp, body)
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                raw,
                ok,
            )
        )
        date = email.utils.format_datetime(self.server_now(), usegmt=True)
        if request.headers.get("apikey") != KEY:
            return _json({"error": "Invalid API key"}, 401)

        if not ok:
            return _json({"error": "Invalid signature"}, 401)

        exempt = request.path == "/api/now" and not self.now_checks_expiry
        skew = abs(self.server_now().timestamp() * 1000 - int(timestamp))
        if self.check_expiry and not exempt and skew > WINDOW_MS:
            return _json({"error": "Request expired"}, 401, {"Date": date})

        if request.path == "/api/now" and self.drop_now:
            assert request.transport is not None
            request.transport.close()

        if request.path == "/api/now":
            now = self.server_now().isoformat(timespec="milliseconds")
            return _json({"now": now.replace("+00:00", "Z")}, 200, {"Date": date})

        if self.reply is not None:
            return await self.reply(request, raw)

        return self.default(request)

    def default(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            self.tasks += 1
            return _json(
                {"task": {"id": f"17000000000{self.tasks:02d}-0", "status": "PENDING"}}
            )

        return _json({"status": "PENDING"})


def _json(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def reply_with(
    *answers: tuple[int, object] | tuple[int, object, dict[str, str]],
) -> Reply:
    """Answer successive requests with (status, body[, headers]); the last repeats.

    A str body is sent as text/plain, or text/html when it starts with "<".
    """
    queue = list(answers)

    async def reply(request: web.Request, raw: bytes) -> web.StreamResponse:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        status, body = answer[0], answer[1]
        headers = answer[2] if len(answer) > 2 else None
        if isinstance(body, str):
            kind = "text/html" if body.startswith("<") else "text/plain"
            return web.Response(
                text=body, status=status, content_type=kind, headers=headers
            )

        return _json(body, status, headers)

    return reply


async def serve(fake: FakeApi, port: int = 0) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    fake = FakeApi()
    runner = await serve(fake)
    try:
        yield fake
    finally:
        await runner.cleanup()


class Sleeps:
    """Stands in for the retry sleep: records each delay and yields once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await anyio.lowlevel.checkpoint()


def make_client(url: str, **options: Any) -> PlyrClient:
    options = {"retry_backoff": 0.001, "retry_backoff_max": 0.004, **options}
    return PlyrClient(url, KEY, SECRET, **options)


@pytest.fixture
async def client(api: FakeApi) -> AsyncIterator[PlyrClient]:
    async with make_client(api.url) as plyr:
        plyr._http.sleep = Sleeps()
        yield plyr


def sleeps(client: PlyrClient) -> list[float]:
    recorder = client._http.sleep
    assert isinstance(recorder, Sleeps)
    return recorder.delays


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- signing and the bytes on the wire ------------------------------------------


class TestWire:
    async def test_post_body_is_the_signed_canonical_text(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        """The server's HMAC over its re-serialisation matches the raw bytes'."""
        ref = await client.pay(
            7, JWTS, ["PLYR", "gamr"], [Decimal("1.50"), "0.000000001"]
        )

        assert ref == TaskRef("1700000000001-0", TaskMethod.PAY)
        (seen,) = api.seen
        text = seen.raw.decode("utf-8")
        assert seen.signed_ok
        assert seen.headers["signature"] == sign_text(
            SECRET, seen.headers["timestamp"], text
        )
        assert canonical_json(parse_js_json(seen.raw)) == text
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.json() == {
            "roomId": "7",
            "sessionJwts": JWTS,
            "tokens": ["plyr", "gamr"],
            "amounts": ["1.5", "0.000000001"],
        }

    async def test_get_sends_no_body_and_signs_empty_object(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        result = await client.task_status("1700000000000-0")

        assert result.state is TaskState.PENDING
        assert result.task_id == "1700000000000-0"
        (seen,) = api.seen
        assert seen.raw == b""
        assert "Content-Type" not in seen.headers
        assert seen.headers["signature"] == sign_text(
            SECRET, seen.headers["timestamp"], "{}"
        )

    async def test_headers_carry_key_and_millisecond_timestamp(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        await client.end("3")
        await client.end("3")

        first, second = api.seen
        assert first.headers["apikey"] == KEY
        for seen in api.seen:
            stamp = seen.headers["timestamp"]
            assert stamp.isdigit()
            assert len(stamp) == 13  # milliseconds, not seconds

        assert int(second.headers["timestamp"]) >= int(first.headers["timestamp"])

    async def test_non_ascii_is_sent_raw_and_signed_as_utf8(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        await client.earn("1", ["Café-01", "a\u2028b"], ["plyr", "plyr"], [1, 2])

        (seen,) = api.seen
        assert "café-01".encode() in seen.raw
        assert "a\u2028b".encode() in seen.raw
        assert seen.signed_ok

    async def test_bodies_never_carry_game_id(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        await client.create(expires_in=3600)
        await client.create_join_pay(JWTS[:1], ["plyr"], [5], expires_in=60)

        assert [s.json() for s in api.seen] == [
            {"expiresIn": 3600},
            {
                "sessionJwts": JWTS[:1],
                "tokens": ["plyr"],
                "amounts": ["5"],
                "expiresIn": 60,
            },
        ]


@pytest.mark.parametrize(
    "endpoint",
    ["{url}", "{url}/", "{url}/api", "{url}/api/", "{url}/API", "{url}/api/api"],
)
async def test_base_url_has_exactly_one_api_prefix(api: FakeApi, endpoint: str) -> None:
    async with make_client(endpoint.format(url=api.url)) as plyr:
        assert plyr.base_url == api.url + "/api"
        await plyr.task_status("1-0")

    assert [s.path for s in api.seen] == ["/api/task/status/1-0"]


@pytest.mark.parametrize(
    "endpoint", ["api.plyr.network", "ftp://x", "http://", "http://h/?q=1"]
)
def test_bad_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(InvalidInput, match="endpoint"):
        PlyrClient(endpoint, KEY, SECRET)


class TestCredentials:
    def test_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PLYR_API_ENDPOINT", "https://api.plyr.network")
        monkeypatch.setenv("PLYR_API_KEY", KEY)
        monkeypatch.setenv("PLYR_API_SECRET", SECRET)

        plyr = PlyrClient()

        assert plyr.base_url == "https://api.plyr.network/api"
        assert plyr.api_key == KEY
        assert SECRET not in repr(plyr)
        assert KEY not in repr(plyr)

    @pytest.mark.parametrize(
        "variable", ["PLYR_API_ENDPOINT", "PLYR_API_KEY", "PLYR_API_SECRET"]
    )
    def test_missing_one_names_its_variable(
        self, monkeypatch: pytest.MonkeyPatch, variable: str
    ) -> None:
        monkeypatch.setenv("PLYR_API_ENDPOINT", "https://api.plyr.network")
        monkeypatch.setenv("PLYR_API_KEY", KEY)
        monkeypatch.setenv("PLYR_API_SECRET", SECRET)
        monkeypatch.delenv(variable)

        with pytest.raises(InvalidInput, match=variable) as caught:
            PlyrClient()

        assert SECRET not in str(caught.value)


# -- endpoints and their answers --------------------------------------------------

ROOM_CALLS: list[
    tuple[
        str,
        Callable[[PlyrClient], Awaitable[object]],
        str,
        TaskMethod,
        dict[str, object],
    ]
] = [
    ("create", lambda c: c.create(), "/api/game/create", TaskMethod.CREATE, {}),
    (
        "join",
        lambda c: c.join(12, JWTS),
        "/api/game/join",
        TaskMethod.JOIN,
        {"roomId": "12", "sessionJwts": JWTS},
    ),
    (
        "leave",
        lambda c: c.leave("12", JWTS),
        "/api/game/leave",
        TaskMethod.LEAVE,
        {"roomId": "12", "sessionJwts": JWTS},
    ),
    ("end", lambda c: c.end(12), "/api/game/end", TaskMethod.END, {"roomId": "12"}),
    (
        "earn",
        lambda c: c.earn("12", ["Alice"], ["plyr"], ["0.5"]),
        "/api/game/earn",
        TaskMethod.EARN,
        {"roomId": "12", "plyrIds": ["alice"], "tokens": ["plyr"], "amounts": ["0.5"]},
    ),
    (
        "join_pay",
        lambda c: c.join_pay("12", JWTS[:1], ["plyr"], [3]),
        "/api/game/joinPay",
        TaskMethod.JOIN_PAY,
        {"roomId": "12", "sessionJwts": JWTS[:1], "tokens": ["plyr"], "amounts": ["3"]},
    ),
    (
        "earn_leave",
        lambda c: c.earn_leave("12", ["bob"], ["plyr"], [0]),
        "/api/game/earnLeave",
        TaskMethod.EARN_LEAVE,
        {"roomId": "12", "plyrIds": ["bob"], "tokens": ["plyr"], "amounts": ["0"]},
    ),
    (
        "create_join_pay",
        lambda c: c.create_join_pay(JWTS, ["plyr", "plyr"], [1, 2]),
        "/api/game/createJoinPay",
        TaskMethod.CREATE_JOIN_PAY,
        {"sessionJwts": JWTS, "tokens": ["plyr", "plyr"], "amounts": ["1", "2"]},
    ),
    (
        "earn_leave_end",
        lambda c: c.earn_leave_end("12", ["bob"], ["plyr"], [Decimal("1E+2")]),
        "/api/game/earnLeaveEnd",
        TaskMethod.EARN_LEAVE_END,
        {"roomId": "12", "plyrIds": ["bob"], "tokens": ["plyr"], "amounts": ["100"]},
    ),
]


@pytest.mark.parametrize(
    ("call", "path", "method", "body"),
    [case[1:] for case in ROOM_CALLS],
    ids=[case[0] for case in ROOM_CALLS],
)
async def test_each_room_call_posts_its_body_and_returns_a_task_ref(
    api: FakeApi,
    client: PlyrClient,
    call: Callable[[PlyrClient], Awaitable[object]],
    path: str,
    method: TaskMethod,
    body: dict[str, object],
) -> None:
    ref = await call(client)

    assert ref == TaskRef("1700000000001-0", method)
    (seen,) = api.seen
    assert (seen.method, seen.path) == ("POST", path)
    assert seen.json() == body
    assert seen.signed_ok


class TestAnswers:
    async def test_join_when_everyone_is_in_returns_already_joined(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with((200, {"message": "All players are already joined"}))

        assert await client.join("7", JWTS) == AlreadyJoined("7")
        assert await client.join("7", JWTS, sync=True) == AlreadyJoined("7")

    async def test_sync_returns_the_task_result(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with(
            (
                200,
                {
                    "taskId": "1717171717171-0",
                    "taskData": {
                        "method": "createGameRoom",
                        "body": {"gameId": "g", "expiresIn": 60},
                        "result": {
                            "gameId": "g",
                            "roomId": "12",
                            "roomAddress": "0xAb",
                        },
                    },
                    "status": "SUCCESS",
                    "hash": "0x" + "1" * 64,
                    "errorMessage": None,
                    "completedAt": "2025-05-31T12:34:56.789Z",
                },
            )
        )

        result = await client.create(expires_in=60, sync=True)

        assert result.state is TaskState.SUCCESS
        assert (result.task_id, result.room_id) == ("1717171717171-0", "12")
        assert api.seen[0].json() == {"expiresIn": 60, "sync": True}

    async def test_sync_failed_is_a_result_not_an_error(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with(
            (
                200,
                {
                    "taskId": "5-0",
                    "taskData": ["endGameRoom", '{"gameId":"g","roomId":"3"}'],
                    "status": "FAILED",
                    "hash": None,
                    "errorMessage": "Transaction Receipt Failed",
                    "completedAt": "2025-05-31T12:34:56.789Z",
                },
            )
        )

        result = await client.end("3", sync=True)

        assert result.state is TaskState.FAILED
        assert result.error_message == "Transaction Receipt Failed"

    async def test_sync_504_raises_task_timeout(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        message = "Task timeout, but still maybe success, you can check later"
        api.reply = reply_with(
            (504, {"taskId": "9-0", "status": "TIMEOUT", "errorMessage": message})
        )

        with pytest.raises(TaskTimeout) as caught:
            await client.pay("1", JWTS[:1], ["plyr"], [1], sync=True)

        assert caught.value.task_id == "9-0"
        assert isinstance(caught.value, TimeoutError)
        assert api.count("/api/game/pay") == 1

    async def test_proxy_504_on_sync_call_is_a_server_error(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with(
            (504, "<html><title>504 Gateway Time-out</title></html>")
        )

        with pytest.raises(ServerError, match="504"):
            await client.create(sync=True)

        assert len(api.seen) == 1

    async def test_unreadable_success_says_it_may_have_taken_effect(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with((200, "<html>maintenance</html>"))

        with pytest.raises(ApiError, match="may have taken effect"):
            await client.create()

    async def test_reads(self, api: FakeApi, client: PlyrClient) -> None:
        async def reply(request: web.Request, raw: bytes) -> web.StreamResponse:
            if request.path == "/api/game/isJoined":
                return _json({"isJoined": request.query["plyrId"] == "alice"})

            return _json({"plyr": "12.5", "gamr": "0", "usdc": "0.000001"})

        api.reply = reply

        assert await client.is_joined(7, "Alice") is True
        assert await client.is_joined("7", "bob") is False
        assert await client.balances("Alice") == {
            "plyr": Decimal("12.5"),
            "gamr": Decimal("0"),
            "usdc": Decimal("0.000001"),
        }
        assert api.seen[0].query == {"roomId": "7", "plyrId": "alice"}
        assert api.seen[2].path == "/api/user/balance/alice"
        assert all(s.signed_ok for s in api.seen)

    async def test_server_time(self, api: FakeApi, client: PlyrClient) -> None:
        api.clock_ms = 3_600_000

        now = await client.server_time()

        assert now.tzinfo is not None
        assert now - datetime.now(UTC) > timedelta(minutes=50)


# -- error mapping ------------------------------------------------------------------

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr>nginx</body></html>"
)
ERROR_SHAPES: list[tuple[str, int, object, type[ApiError], str, dict[str, object]]] = [
    (
        "string",
        400,
        {"error": "sessionJwts is empty"},
        InvalidRequest,
        "sessionJwts is empty",
        {},
    ),
    (
        "array",
        401,
        {"error": ["Player is not joined: a", "Player is not joined: b"]},
        InvalidRequest,
        "Player is not joined: a; Player is not joined: b",
        {"errors": ["Player is not joined: a", "Player is not joined: b"]},
    ),
    (
        "invalid-plyr-ids",
        401,
        {
            "error": "Invalid sessionJwts",
            "invalidPlyrIds": {
                "unknown": "Invalid sessionJwt",
                "bob": "JWT nonce is expired",
            },
        },
        InvalidRequest,
        "Invalid sessionJwts",
        {
            "invalidPlyrIds": {
                "unknown": "Invalid sessionJwt",
                "bob": "JWT nonce is expired",
            }
        },
    ),
    (
        "stack",
        500,
        {"error": "boom", "stack": "Error: boom\n    at x.js:1"},
        ServerError,
        "boom",
        {"stack": "Error: boom\n    at x.js:1"},
    ),
    (
        "message-401",
        401,
        {"message": "JWT nonce is expired"},
        InvalidRequest,
        "JWT nonce is expired",
        {},
    ),
    ("null-error", 500, {"error": None}, ServerError, "Internal Server Error", {}),
    ("bad-request-text", 400, "Bad Request", InvalidRequest, "Bad Request", {}),
    ("not-found-text", 404, "Not Found", NotFound, "Not Found", {}),
    (
        "not-found-json",
        404,
        {"error": "User not found"},
        NotFound,
        "User not found",
        {},
    ),
    (
        "method-not-allowed",
        405,
        "Method Not Allowed",
        InvalidRequest,
        "Method Not Allowed",
        {},
    ),
    (
        "permission",
        403,
        {"error": "Insufficient permissions"},
        PermissionDenied,
        "Insufficient permissions",
        {},
    ),
    ("proxy-html", 502, HTML_PAGE, ServerError, "502 Bad Gateway", {}),
    (
        "token-list",
        503,
        {"error": "Token list not available yet"},
        ServerError,
        "Token list not available yet",
        {},
    ),
    (
        "hmac-missing",
        401,
        {"error": "Missing authentication headers"},
        Unauthenticated,
        "Missing authentication headers",
        {},
    ),
    (
        "hmac-key",
        401,
        {"error": "Invalid API key"},
        Unauthenticated,
        "Invalid API key",
        {},
    ),
    (
        "hmac-signature",
        401,
        {"error": "Invalid signature"},
        Unauthenticated,
        "Invalid signature",
        {},
    ),
    (
        "validation-401",
        401,
        {"error": "Invalid token: doge"},
        InvalidRequest,
        "Invalid token: doge",
        {},
    ),
    ("empty-body", 500, "", ServerError, "Internal Server Error", {}),
]


@pytest.mark.parametrize(
    ("status", "body", "kind", "message", "details"),
    [case[1:] for case in ERROR_SHAPES],
    ids=[case[0] for case in ERROR_SHAPES],
)
async def test_error_shape_maps_to_typed_error(
    api: FakeApi,
    client: PlyrClient,
    status: int,
    body: object,
    kind: type[ApiError],
    message: str,
    details: dict[str, object],
) -> None:
    """Every error body of plyr-api.md 3.3 keeps status, message and details."""
    api.reply = reply_with((status, body))

    with pytest.raises(kind) as caught:
        await client.end("4")

    assert type(caught.value) is kind
    assert caught.value.status == status
    assert caught.value.message == message
    assert dict(caught.value.details) == details
    assert len(api.seen) == 1  # a POST that reached the server is never repeated


async def test_redirects_are_not_followed(api: FakeApi, client: PlyrClient) -> None:
    """A signed request is for this host only; a redirect is an error."""
    api.reply = reply_with(
        (301, "Moved", {"Location": "https://elsewhere.example/api/game/end"})
    )

    with pytest.raises(ApiError) as caught:
        await client.end("1")

    assert caught.value.status == 301
    assert len(api.seen) == 1


class TestRateLimits:
    async def test_post_429_raises_with_retry_after(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with(
            (429, {"error": "Too many requests"}, {"Retry-After": "2"})
        )

        with pytest.raises(RateLimited) as caught:
            await client.create()

        assert caught.value.retry_after == 2.0
        assert len(api.seen) == 1

    async def test_429_without_retry_after(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with(
            (429, "<html><title>429 Too Many Requests</title></html>")
        )

        with pytest.raises(RateLimited) as caught:
            await client.end("1")

        assert caught.value.retry_after is None
        assert caught.value.message == "429 Too Many Requests"

    async def test_retry_after_as_http_date(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        when = datetime.now(UTC) + timedelta(seconds=30)
        header = email.utils.format_datetime(when, usegmt=True)
        api.reply = reply_with((429, {"error": "slow down"}, {"Retry-After": header}))

        with pytest.raises(RateLimited) as caught:
            await client.end("1")

        assert caught.value.retry_after is not None
        assert 0 < caught.value.retry_after <= 30

    async def test_get_waits_out_retry_after_then_succeeds(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with(
            (429, {"error": "slow down"}, {"Retry-After": "0.05"}),
            (200, {"status": "NOT_FOUND"}),
        )

        result = await client.task_status("1-0")

        assert result.state is TaskState.NOT_FOUND
        assert len(api.seen) == 2
        assert sleeps(client) == [pytest.approx(0.05)]

    async def test_get_does_not_wait_beyond_its_request_timeout(
        self, api: FakeApi
    ) -> None:
        api.reply = reply_with((429, {"error": "slow down"}, {"Retry-After": "3600"}))

        async with make_client(api.url, request_timeout=5) as plyr:
            with pytest.raises(RateLimited):
                await plyr.task_status("1-0")

        assert len(api.seen) == 1


# -- retries ------------------------------------------------------------------------


class TestRetries:
    async def test_get_retries_5xx_up_to_the_bound(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with((500, {"error": "down"}))

        with pytest.raises(ServerError):
            await client.task_status("1-0")

        assert len(api.seen) == 4  # one try and max_retries=3 retries
        assert len(sleeps(client)) == 3
        assert all(0 < d <= 0.004 for d in sleeps(client))
        assert client.stats.retries == 3
        assert client.stats.errors == {"ServerError": 1}

    async def test_backoff_doubles_with_jitter_up_to_its_cap(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        """Waits grow from retry_backoff, doubling up to retry_backoff_max, each
        drawn from the upper half of its ceiling so that clients spread out."""
        api.reply = reply_with((503, {"error": "busy"}))
        ceilings = [0.001, 0.002, 0.004]
        delays: list[float] = []
        for _ in range(20):
            with pytest.raises(ServerError):
                await client.task_status("1-0")

            waits = sleeps(client)
            delays += waits
            assert len(waits) == len(ceilings)
            for wait, ceiling in zip(waits, ceilings, strict=True):
                assert ceiling / 2 <= wait <= ceiling

            waits.clear()

        assert len(set(delays)) == len(delays)  # drawn, not fixed

    async def test_get_recovers_after_5xx(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with(
            (503, {"error": "busy"}), (502, HTML_PAGE), (200, {"status": "PENDING"})
        )

        assert (await client.task_status("1-0")).state is TaskState.PENDING
        assert len(api.seen) == 3
        assert all(s.signed_ok for s in api.seen)

    async def test_status_without_retry_makes_exactly_one_request(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with((500, {"error": "down"}))

        with pytest.raises(ServerError):
            await client.task_status("1-0", retry=False)

        assert len(api.seen) == 1

    async def test_get_retries_a_dropped_connection(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        dropped = 0

        async def reply(request: web.Request, raw: bytes) -> web.StreamResponse:
            nonlocal dropped
            if dropped < 2:
                dropped += 1
                assert request.transport is not None
                request.transport.close()

            return _json({"isJoined": True})

        api.reply = reply

        assert await client.is_joined("1", "alice") is True
        assert len(api.seen) == 3

    async def test_post_is_not_repeated_after_a_dropped_connection(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        async def reply(request: web.Request, raw: bytes) -> web.StreamResponse:
            assert request.transport is not None
            request.transport.close()
            return _json({})

        api.reply = reply

        with pytest.raises(TransportError) as caught:
            await client.pay("1", JWTS[:1], ["plyr"], [1])

        assert caught.value.sent is True
        assert len(api.seen) == 1

    @pytest.mark.parametrize("status", [500, 502, 503, 429])
    async def test_post_is_not_repeated_after_an_error_status(
        self, api: FakeApi, client: PlyrClient, status: int
    ) -> None:
        api.reply = reply_with((status, {"error": "no"}, {"Retry-After": "0"}))

        with pytest.raises(ApiError):
            await client.earn("1", ["a"], ["plyr"], [1])

        assert len(api.seen) == 1
        assert sleeps(client) == []

    async def test_refused_post_is_retried_until_the_server_answers(self) -> None:
        """A refused connection never reached the server, so a POST may retry."""
        fake = FakeApi()
        port = free_port()
        runners: list[web.AppRunner] = []

        async def start_server(delay: float) -> None:
            if not runners:
                runners.append(await serve(fake, port))

        async with make_client(f"http://127.0.0.1:{port}") as plyr:
            plyr._http.sleep = start_server
            try:
                ref = await plyr.create()
            finally:
                for runner in runners:
                    await runner.cleanup()

        assert ref.method == TaskMethod.CREATE
        assert len(fake.seen) == 1
        assert plyr.stats.retries == 1

    async def test_refused_post_gives_up_after_the_bound(self) -> None:
        async with make_client(f"http://127.0.0.1:{free_port()}") as plyr:
            plyr._http.sleep = Sleeps()
            with pytest.raises(TransportError) as caught:
                await plyr.end("1")

        assert caught.value.sent is False
        assert plyr.stats.requests == 4
        assert plyr.stats.errors == {"TransportError": 1}


# -- clock skew ---------------------------------------------------------------------


class TestClockSkew:
    async def test_expired_request_is_resent_with_the_server_clock(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        """With a skew beyond the window, /now is expired too: its Date is used."""
        api.clock_ms = 10 * 60_000
        api.check_expiry = True

        ref = await client.create()
        await client.end("1")

        assert ref.method == TaskMethod.CREATE
        assert [(s.method, s.path) for s in api.seen] == [
            ("POST", "/api/game/create"),
            ("GET", "/api/now"),
            ("POST", "/api/game/create"),
            ("POST", "/api/game/end"),
        ]
        assert client.stats.clock_corrections == 1
        assert client.stats.clock_offset == pytest.approx(600, abs=5)

    async def test_now_body_gives_the_offset_when_it_answers(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.clock_ms = -7 * 60_000
        api.check_expiry = True
        api.now_checks_expiry = False

        assert (await client.task_status("1-0")).state is TaskState.PENDING
        assert client.stats.clock_offset == pytest.approx(-420, abs=2)
        assert len(api.seen) == 3

    async def test_unreachable_now_falls_back_to_the_expired_replys_date(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.clock_ms = -20 * 60_000
        api.check_expiry = True
        api.drop_now = True

        assert (await client.task_status("1-0")).state is TaskState.PENDING
        assert client.stats.clock_offset == pytest.approx(-1200, abs=5)
        assert client.stats.requests_by_route["GET /now"] == 1

    async def test_concurrent_expiries_measure_once(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.clock_ms = 6 * 60_000
        api.check_expiry = True

        async with anyio.create_task_group() as group:
            for room in range(5):
                group.start_soon(client.end, str(room + 1))

        assert api.count("/api/now") == 1
        assert client.stats.clock_corrections == 1
        assert api.count("/api/game/end") == 10

    async def test_expiry_that_persists_is_raised(
        self, api: FakeApi, client: PlyrClient
    ) -> None:
        api.reply = reply_with((401, {"error": "Request expired"}))

        with pytest.raises(Unauthenticated, match="Request expired"):
            await client.end("1")

        assert api.count("/api/game/end") == 2


# -- validation before any request --------------------------------------------------

BAD_CALLS: list[tuple[str, Callable[[PlyrClient], Awaitable[object]], str]] = [
    ("room-float", lambda c: c.end(1.5), "room_id"),  # type: ignore[call-overload]
    ("room-text", lambda c: c.end("abc"), "room_id"),
    ("room-empty", lambda c: c.end(""), "room_id"),
    ("room-negative", lambda c: c.end(-1), "room_id"),
    ("room-bool", lambda c: c.end(True), "room_id"),
    ("jwts-str", lambda c: c.join("1", JWTS[0]), "session_jwts"),
    ("jwts-empty", lambda c: c.join("1", []), "session_jwts"),
    ("jwt-blank", lambda c: c.leave("1", [JWTS[0], " "]), r"session_jwts\[1\]"),
    ("jwt-type", lambda c: c.leave("1", [JWTS[0], 7]), r"session_jwts\[1\]"),  # type: ignore[list-item]
    ("amount-float", lambda c: c.pay("1", JWTS[:1], ["plyr"], [0.1]), r"amounts\[0\]"),  # type: ignore[list-item]
    (
        "amount-negative",
        lambda c: c.earn("1", ["a"], ["plyr"], [Decimal(-1)]),
        "negative",
    ),
    ("amount-nan", lambda c: c.earn("1", ["a"], ["plyr"], [Decimal("NaN")]), "finite"),
    (
        "amount-exponent",
        lambda c: c.earn("1", ["a"], ["plyr"], ["1e5"]),
        "plain decimal",
    ),
    (
        "amount-places",
        lambda c: c.earn("1", ["a"], ["plyr"], ["0." + "0" * 18 + "1"]),
        "19 decimal places",
    ),
    ("amount-bool", lambda c: c.earn("1", ["a"], ["plyr"], [True]), r"amounts\[0\]"),
    ("lengths", lambda c: c.pay("1", JWTS, ["plyr"], [1, 2]), "same length"),
    (
        "lengths-earn",
        lambda c: c.earn("1", ["a", "b"], ["plyr", "plyr"], [1]),
        "same length",
    ),
    ("token-empty", lambda c: c.earn("1", ["a"], [""], [1]), r"tokens\[0\]"),
    ("token-address", lambda c: c.earn("1", ["a"], ["0x" + "0" * 40], [1]), "symbol"),
    ("plyr-id-empty", lambda c: c.earn("1", [""], ["plyr"], [1]), r"plyr_ids\[0\]"),
    ("expires-zero", lambda c: c.create(expires_in=0), "expires_in"),
    ("expires-bool", lambda c: c.create(expires_in=True), "expires_in"),
    ("expires-float", lambda c: c.create(expires_in=60.0), "expires_in"),  # type: ignore[call-overload]
    (
        "amount-huge",
        lambda c: c.earn("1", ["a"], ["plyr"], [2**300]),
        "too large",
    ),
    (
        "plyr-id-is-a-jwt",
        lambda c: c.earn("1", JWTS, ["plyr", "plyr"], [1, 1]),
        "session JWT",
    ),
    ("task-id-empty", lambda c: c.task_status(""), "task_id"),
    ("is-joined-id", lambda c: c.is_joined("x", "alice"), "room_id"),
]


@pytest.mark.parametrize(
    ("call", "names"),
    [case[1:] for case in BAD_CALLS],
    ids=[case[0] for case in BAD_CALLS],
)
async def test_bad_arguments_are_refused_before_sending(
    api: FakeApi,
    client: PlyrClient,
    call: Callable[[PlyrClient], Awaitable[object]],
    names: str,
) -> None:
    with pytest.raises(InvalidInput, match=names) as caught:
        await call(client)

    assert isinstance(caught.value, ValueError)
    assert api.seen == []
    for jwt in JWTS:
        assert jwt not in str(caught.value)


# -- amounts ------------------------------------------------------------------------

PLAIN = r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?"


@st.composite
def exact_decimals(draw: st.DrawFn, max_places: int = 18) -> Decimal:
    """Non-negative Decimals with at most *max_places* significant decimals."""
    value = draw(st.integers(min_value=0, max_value=10**40))
    places = draw(st.integers(min_value=0, max_value=max_places))
    padding = draw(st.integers(min_value=0, max_value=6))  # trailing zeros
    exponent = draw(st.integers(min_value=-places, max_value=20))
    text = f"{value}{'0' * padding}E{exponent - padding}"
    return Decimal(text)


class TestAmounts:
    @given(exact_decimals())
    def test_decimals_round_trip_exactly(self, value: Decimal) -> None:
        text = format_amount(value)

        assert Decimal(text) == value
        assert re.fullmatch(PLAIN, text)

    @given(exact_decimals())
    def test_strings_and_ints_agree_with_decimals(self, value: Decimal) -> None:
        text = format_amount(value)

        assert format_amount(text) == text
        if value == value.to_integral_value():
            assert format_amount(int(value)) == text

    @given(
        st.one_of(
            st.floats(),
            st.booleans(),
            st.integers(max_value=-1),
            st.decimals(max_value=Decimal("-1E-30")),
            st.sampled_from(
                [
                    Decimal("NaN"),
                    Decimal("sNaN"),
                    Decimal("Infinity"),
                    Decimal("-Infinity"),
                ]
            ),
            st.from_regex(r"-?[0-9]+(\.[0-9]+)?[eE][+-]?[0-9]+", fullmatch=True),
            st.text().filter(lambda s: re.fullmatch(r"[0-9]+(\.[0-9]+)?", s) is None),
            st.integers(min_value=19, max_value=40).map(
                lambda n: Decimal(1).scaleb(-n)
            ),
            st.none(),
            st.lists(st.integers(), max_size=2),
        )
    )
    def test_anything_else_is_refused(self, value: object) -> None:
        with pytest.raises(InvalidInput):
            format_amount(value)

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (Decimal("1.50"), "1.5"),
            (Decimal("1E+2"), "100"),
            (Decimal("-0"), "0"),
            (Decimal("0.000"), "0"),
            ("007.10", "7.1"),
            (10**30, "1" + "0" * 30),
            (Decimal("1E-18"), "0.000000000000000001"),
            (
                Decimal("123456789012345678901234567890.123456789012345678"),
                "123456789012345678901234567890.123456789012345678",
            ),
        ],
    )
    def test_examples(self, value: object, text: str) -> None:
        assert format_amount(value) == text


# -- secrets ------------------------------------------------------------------------


class TestSecrets:
    async def test_secret_and_jwts_never_leak(
        self, api: FakeApi, client: PlyrClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Fail every way; no message, repr, detail or log line shows a secret."""
        caplog.set_level(logging.DEBUG)

        async def echo(request: web.Request, raw: bytes) -> web.StreamResponse:
            # A hostile server echoing the request into every error field.
            text = raw.decode() + request.headers.get("signature", "") + SECRET
            status = int(request.query.get("status", "0")) or (
                401 if request.path.endswith("/join") else 500
            )
            return _json(
                {
                    "error": [text],
                    "stack": text,
                    "invalidPlyrIds": {text: text},
                    "message": text,
                },
                status,
            )

        api.reply = echo
        failures: list[BaseException] = []
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.join("1", JWTS),
            lambda: client.leave("1", JWTS),
            lambda: client.pay("1", JWTS, ["plyr", "plyr"], [1, 2]),
            lambda: client.join_pay("1", JWTS, ["plyr"], [1]),
            lambda: client.create_join_pay(JWTS, ["plyr", "gamr"], [1, 2], sync=True),
            lambda: client.pay("1", JWTS, ["plyr"], [0.5]),  # type: ignore[list-item]
            lambda: client.join("1", [*JWTS, ""]),
            lambda: client.join(JWTS, "7"),  # type: ignore[call-overload]
            lambda: client.join(JWTS[0], JWTS),
            lambda: client.earn("1", JWTS, ["plyr", "plyr"], [1, 2]),
            lambda: client.create(expires_in=JWTS[0]),  # type: ignore[call-overload]
            lambda: client.is_joined("1", JWTS[1]),
            lambda: client.pay("1", JWTS, ["plyr", "plyr"], [1, JWTS[0]]),
            lambda: client.task_status("1-0"),
        ]
        for call in calls:
            with pytest.raises(PlyrError) as caught:
                await call()

            failures.append(caught.value)

        async with make_client(
            f"http://127.0.0.1:{free_port()}", max_retries=1
        ) as dead:
            with pytest.raises(TransportError) as lost:
                await dead.join("1", JWTS)

            failures.append(lost.value)

        shown = [repr(client), repr(dead), caplog.text]
        for failure in failures:
            shown += [str(failure), repr(failure), repr(failure.args)]
            shown.append(repr(getattr(failure, "details", None)))

        for text in shown:
            assert SECRET not in text
            for jwt in JWTS:
                assert jwt not in text

        assert "<session_jwts[0]>" in repr(failures[0].details)  # type: ignore[attr-defined]


# -- session ownership and logs -----------------------------------------------------


class TestSession:
    async def test_given_session_is_left_open(self, api: FakeApi) -> None:
        async with aiohttp.ClientSession() as session:
            async with make_client(api.url, session=session) as plyr:
                await plyr.end("1")

            assert not session.closed

        assert len(api.seen) == 1

    async def test_closed_client_refuses_requests(self, api: FakeApi) -> None:
        async with make_client(api.url) as plyr:
            pass

        with pytest.raises(RuntimeError, match="closed"):
            await plyr.end("1")

    async def test_logs_each_request_and_warns_on_retries(
        self, api: FakeApi, client: PlyrClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="plyr_rooms.client")
        api.reply = reply_with((503, {"error": "busy"}), (200, {"status": "PENDING"}))

        await client.task_status("1-0")

        levels = [(r.levelname, r.getMessage()) for r in caplog.records]
        assert [level for level, _ in levels] == ["DEBUG", "WARNING", "DEBUG"]
        assert levels[0][1].startswith("GET /task/status/:id -> 503 in ")
        assert "retry 1 of 3" in levels[1][1]
        assert client.stats.requests_by_route == {"GET /task/status/:id": 2}


# -- the task command ---------------------------------------------------------------


class TestTaskCommand:
    def parse(self, *argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        _cli_task.add_parser(parser.add_subparsers())
        return parser.parse_args(["task", *argv])

    @pytest.fixture(autouse=True)
    def env(self, monkeypatch: pytest.MonkeyPatch, api: FakeApi) -> None:
        monkeypatch.setenv("PLYR_API_ENDPOINT", api.url)
        monkeypatch.setenv("PLYR_API_KEY", KEY)
        monkeypatch.setenv("PLYR_API_SECRET", SECRET)

    async def test_prints_a_readable_status(
        self, api: FakeApi, capsys: pytest.CaptureFixture[str]
    ) -> None:
        api.reply = reply_with(
            (
                200,
                {
                    "taskId": "5-0",
                    "taskData": {
                        "method": "createGameRoom",
                        "body": {"gameId": "g", "expiresIn": 60},
                        "result": {"roomId": "12", "roomAddress": "0xAbC"},
                    },
                    "status": "SUCCESS",
                    "hash": "0xfeed",
                    "errorMessage": None,
                    "completedAt": "2025-05-31T12:34:56.789Z",
                },
            )
        )
        args = self.parse("5-0")

        assert await args.handler(args) == 0
        out = capsys.readouterr().out
        assert out.startswith("task 5-0: SUCCESS\n")
        assert "room:         12 (0xAbC)" in out
        assert "createGameRoom" in out

    async def test_json_prints_the_raw_answer(
        self, api: FakeApi, capsys: pytest.CaptureFixture[str]
    ) -> None:
        args = self.parse("7-0", "--json", "--endpoint", api.url + "/api")

        assert await args.handler(args) == 3  # PENDING
        assert json.loads(capsys.readouterr().out) == {"status": "PENDING"}

    async def test_lookup_failure_exits_2(
        self, api: FakeApi, capsys: pytest.CaptureFixture[str]
    ) -> None:
        api.reply = reply_with((404, "Not Found"))
        args = self.parse("abc")

        assert await args.handler(args) == 2
        assert "plyr-rooms task:" in capsys.readouterr().err


# -- pure helpers -------------------------------------------------------------------


class TestWireHelpers:
    @pytest.mark.parametrize(
        ("header", "seconds"),
        [
            (None, None),
            ("7", 7.0),
            (" 0.25 ", 0.25),
            ("-1", None),
            ("nan", None),
            ("soon", None),
            ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),
            ("Thu, 01 Jan 1970 00:01:40", 40.0),
            ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),
        ],
    )
    def test_parse_retry_after(self, header: str | None, seconds: float | None) -> None:
        assert _wire.parse_retry_after(header, now=60.0) == seconds

    @pytest.mark.parametrize(
        ("status", "raw", "kind", "message", "details"),
        [
            (400, b'["a", "b"]', InvalidRequest, "a; b", {"errors": ["a", "b"]}),
            (400, b"{not json", InvalidRequest, "{not json", {}),
            (
                500,
                b'{"error": {"code": 7}}',
                ServerError,
                "Internal Server Error",
                {"error": {"code": 7}},
            ),
            (
                401,
                b'{"error": "x", "message": "y"}',
                InvalidRequest,
                "x",
                {"message": "y"},
            ),
            (302, b"", ApiError, "Found", {}),
            (
                418,
                b"\xef\xbb\xbf" + b"I'm a teapot " * 40,
                InvalidRequest,
                ("I'm a teapot " * 40)[:297] + "...",
                {},
            ),
        ],
    )
    def test_api_error_odd_bodies(
        self,
        status: int,
        raw: bytes,
        kind: type[ApiError],
        message: str,
        details: dict[str, object],
    ) -> None:
        error = _wire.api_error(status, HTTPStatus(status).phrase, raw)

        assert type(error) is kind
        assert (error.message, dict(error.details)) == (message, details)

    def test_lists_must_not_be_empty(self) -> None:
        with pytest.raises(InvalidInput, match="tokens must not be empty"):
            _wire.lower_names([], "tokens")

        with pytest.raises(InvalidInput, match="too large"):
            format_amount(Decimal("1E+78"))
