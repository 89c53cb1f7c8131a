"""The client's request path: sign, send, map errors, retry where it is safe.

:class:`SignedHttp` owns the aiohttp session and the per-request work that every
endpoint shares. It knows nothing about rooms; :class:`~plyr_rooms.client.PlyrClient`
builds the bodies and reads the answers.

Retry rules (a retry must never repeat a side effect):

- reads (``retry=True``) retry transport errors, 5xx and 429 with jittered
  exponential backoff, at least as long as the server's ``Retry-After``;
- every request is retried after a refused connection (it never arrived);
- every request is re-sent once after ``401 Request expired`` (the server refused
  it before doing anything), with the clock offset measured from ``GET /now``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING

import aiohttp
import anyio
import attrs
from yarl import URL

from . import _wire
from .errors import ApiError, RateLimited, TransportError, Unauthenticated
from .signing import sign_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from multidict import CIMultiDictProxy

__all__ = ["ClientStats", "SignedHttp"]

# Logged under the public module's name: users configure "plyr_rooms.client".
logger = logging.getLogger("plyr_rooms.client")

_EXPIRED = "Request expired"
_NOW = "GET /now"


@attrs.frozen
class ClientStats:
    """A snapshot of what a client has sent so far.

    Attributes:
        requests: HTTP requests sent (every attempt counts).
        requests_by_route: the same, by route (``"GET /task/status/:id"``).
        retries: attempts that were retries of an earlier one.
        errors: errors raised to callers, by exception class name.
        clock_corrections: times the clock offset was measured after an expiry.
        clock_offset: seconds added to the local clock to get the server's.
    """

    requests: int
    requests_by_route: Mapping[str, int]
    retries: int
    errors: Mapping[str, int]
    clock_corrections: int
    clock_offset: float


class SignedHttp:
    """Signed requests over one aiohttp session, with safe retries."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        secret: str,
        *,
        request_timeout: float,
        sync_timeout: float,
        max_retries: int,
        connection_limit: int,
        session: aiohttp.ClientSession | None,
        retry_backoff: float,
        retry_backoff_max: float,
    ) -> None:
        self._secret = secret
        self._max_retries = max_retries
        self._max_wait = request_timeout
        self._backoff = retry_backoff
        self._backoff_max = retry_backoff_max
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._sync_timeout = aiohttp.ClientTimeout(total=sync_timeout)
        self._connection_limit = connection_limit
        self._session = session
        self._own_session = session is None
        self._closed = False
        # Headers that never change, copied into each request with its timestamp.
        self._get_headers = {"apikey": api_key}
        self._post_headers = {"apikey": api_key, "Content-Type": "application/json"}
        self._now_url = URL(base_url + "/now")
        self._offset_ms = 0  # server clock minus local clock, in milliseconds
        self._skew_epoch = 0  # bumped each time the offset is measured
        self._skew_lock = anyio.Lock()
        #: How retries wait; tests swap in a recorder.
        self.sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self._by_route: dict[str, int] = {}
        self._retries = 0
        self._errors: dict[str, int] = {}
        self._corrections = 0

    def open(self) -> None:
        """Create the session if there is none (inside a running event loop)."""
        self._closed = False
        self._ensure_session()

    async def aclose(self) -> None:
        """Close the session if we created it; later requests raise RuntimeError."""
        self._closed = True
        if self._own_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._closed:
                raise RuntimeError("this PlyrClient is closed")

            connector = aiohttp.TCPConnector(limit=self._connection_limit)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout
            )

        return self._session

    @property
    def stats(self) -> ClientStats:
        """A frozen snapshot of the request, retry and error counters."""
        return ClientStats(
            requests=sum(self._by_route.values()),
            requests_by_route=dict(self._by_route),
            retries=self._retries,
            errors=dict(self._errors),
            clock_corrections=self._corrections,
            clock_offset=self._offset_ms / 1000,
        )

    async def call(
        self,
        method: str,
        url: URL,
        label: str,
        text: str | None,
        *,
        retry: bool = True,
        sync: bool = False,
        jwts: Sequence[str] = (),
    ) -> tuple[int, bytes]:
        """Send one request, with the retries that are safe for it.

        Args:
            method: ``GET`` or ``POST``.
            url: the full URL.
            label: the route as logged and counted (``"POST /game/pay"``).
            text: the body, already serialised; None for a GET (signs ``{}``).
            retry: whether this request is safe to repeat (reads).
            sync: a ``sync=True`` call: longer timeout, a 504 is an answer.
            jwts: session JWTs in the body, hidden if an error body echoes them.

        Returns:
            (status, body) for a 2xx, or for the 504 of a *sync* call.

        Raises:
            ApiError: (a subclass) for an error status.
            TransportError: when no HTTP answer arrived.
        """
        data = None if text is None else text.encode("utf-8")
        budget = self._sync_timeout if sync else self._timeout
        epoch = self._skew_epoch
        attempt = 0
        corrected = False
        while True:
            try:
                status, raw, headers = await self._send(
                    method, url, label, text, data, budget
                )
            except TransportError as exc:
                if attempt < self._max_retries and (retry or not exc.sent):
                    attempt += 1
                    await self._pause(attempt, str(exc), None)
                    continue

                self._count_error(exc)
                raise

            if status < 400 or (sync and status == 504):
                return status, raw

            error = self._error(status, raw, headers, jwts)
            if not corrected and _is_expiry(error):
                corrected = True
                if await self._correct_clock(epoch, headers):
                    continue

            if retry and attempt < self._max_retries and _retryable(error):
                wait = error.retry_after if isinstance(error, RateLimited) else None
                if wait is None or wait <= self._max_wait:
                    attempt += 1
                    await self._pause(attempt, f"{label}: {error}", wait)
                    continue

            self._count_error(error)
            raise error

    async def _send(
        self,
        method: str,
        url: URL,
        label: str,
        text: str | None,
        data: bytes | None,
        budget: aiohttp.ClientTimeout,
    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        # One signed HTTP exchange: a fresh timestamp and signature every time.
        session = self._session or self._ensure_session()
        timestamp = str(time.time_ns() // 1_000_000 + self._offset_ms)
        signature = sign_text(self._secret, timestamp, "{}" if text is None else text)
        base = self._get_headers if data is None else self._post_headers
        headers = {**base, "timestamp": timestamp, "signature": signature}
        self._by_route[label] = self._by_route.get(label, 0) + 1
        started = time.perf_counter()
        try:
            # No redirects: a signed request is meant for this host only, and a
            # redirected POST would arrive as a GET without its body.
            async with session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=budget,
                allow_redirects=False,
            ) as response:
                raw = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _transport_error(label, exc) from exc

        logger.debug(
            "%s -> %d in %.1f ms",
            label,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response.status, raw, response.headers

    def _error(
        self,
        status: int,
        raw: bytes,
        headers: CIMultiDictProxy[str],
        jwts: Sequence[str],
    ) -> ApiError:
        retry_after = None
        if status == 429:
            now = time.time() + self._offset_ms / 1000
            retry_after = _wire.parse_retry_after(headers.get("Retry-After"), now)

        hidden = [(self._secret, "<api secret>")]
        hidden += [(jwt, f"<session_jwts[{i}]>") for i, jwt in enumerate(jwts)]
        return _wire.api_error(
            status, _reason(status), raw, retry_after=retry_after, hidden=hidden
        )

    async def _pause(self, attempt: int, reason: str, floor: float | None) -> None:
        # Jittered exponential backoff, never shorter than a Retry-After.
        ceiling = min(self._backoff_max, self._backoff * 2 ** (attempt - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        if floor is not None:
            delay = max(delay, floor)

        self._retries += 1
        logger.warning(
            "%s; retry %d of %d in %.3f s",
            reason,
            attempt,
            self._max_retries,
            delay,
        )
        await self.sleep(delay)

    async def _correct_clock(self, epoch: int, headers: CIMultiDictProxy[str]) -> bool:
        # Answer "Request expired" by measuring the server's clock once; requests
        # that failed with the same stale offset reuse the new measurement.
        async with self._skew_lock:
            if self._skew_epoch != epoch:
                return True

            offset = await self._measure_offset(headers)
            if offset is None:
                return False

            logger.warning(
                "request expired: the local clock is %+.3f s off the server's;"
                " correcting timestamps",
                -offset / 1000,
            )
            self._offset_ms = offset
            self._skew_epoch += 1
            self._corrections += 1
            return True

    async def _measure_offset(self, expired: CIMultiDictProxy[str]) -> int | None:
        # GET /now, timed; the server's clock is taken to be read at the midpoint.
        # With a large skew /now is itself "expired": fall back to its Date header
        # (whole seconds, so add half a second), then to the expired reply's.
        before = time.time()
        try:
            status, raw, headers = await self._send(
                "GET", self._now_url, _NOW, None, None, self._timeout
            )
        except TransportError:
            status, raw, headers = 0, b"", expired

        midpoint = (before + time.time()) / 2
        server = _now_from_body(raw) if status == 200 else None
        if server is None:
            server = _date_header(headers) or _date_header(expired)

        if server is None:
            return None

        return round((server - midpoint) * 1000)

    def _count_error(self, error: Exception) -> None:
        name = type(error).__name__
        self._errors[name] = self._errors.get(name, 0) + 1


def _transport_error(label: str, exc: BaseException) -> TransportError:
    # Only a refused connection proves the request never reached the server.
    refused = isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, ConnectionRefusedError
    )
    detail = str(exc) or type(exc).__name__
    return TransportError(f"{label}: {detail}", sent=not refused)


def _is_expiry(error: ApiError) -> bool:
    return isinstance(error, Unauthenticated) and error.message == _EXPIRED


def _retryable(error: ApiError) -> bool:
    return error.status >= 500 or error.status == 429


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _now_from_body(raw: bytes) -> float | None:
    try:
        return datetime.fromisoformat(json.loads(raw)["now"]).timestamp()
    except (ValueError, TypeError, KeyError):
        return None


def _date_header(headers: CIMultiDictProxy[str]) -> float | None:
    value = headers.get("Date")
    if value is None:
        return None

    # Measured from the epoch, a Retry-After date is the date's Unix time.
    seconds = _wire.parse_retry_after(value, 0.0)
    return None if seconds is None or seconds < 1e9 else seconds + 0.5
