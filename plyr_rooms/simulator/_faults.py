"""Request-level trouble: a per-key rate limit, injected 5xx and dropped connections.

None of this exists in the real server's code; it stands for whatever proxy or
load balancer sits in front of it, so it runs before routing and before
authentication.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from plyr_rooms.simulator._config import Faults

__all__ = ["RequestFaults"]

_HTML_429 = (
    "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
    "<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_JSON_429 = '{"error":"Too Many Requests"}'
_JSON_503 = '{"error":"Service Unavailable"}'


class _Bucket:
    # A token bucket holding at most one second's worth of requests.
    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = max(rate, 1.0)
        self.stamp = now

    def take(self, now: float) -> bool:
        capacity = max(self.rate, 1.0)
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True

        return False


class RequestFaults:
    """Decides, per request, whether to refuse, fail or drop it."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(f"{seed}:request-faults")
        self._buckets: dict[str, _Bucket] = {}
        self.rate_limited = 0
        self.server_errors = 0
        self.dropped = 0

    @property
    def active(self) -> bool:
        """Whether any request-level fault is configured."""
        f = self.faults
        return bool(f.rate_limit_rps is not None or f.server_error_rate or f.drop_rate)

    def over_budget(self, api_key: str, now: float) -> web.Response | None:
        """Return a 429 answer if *api_key* is over its request rate, else None."""
        rate = self.faults.rate_limit_rps
        if rate is None:
            return None

        bucket = self._buckets.get(api_key)
        if bucket is None:
            bucket = self._buckets[api_key] = _Bucket(rate, now)

        if bucket.take(now):
            return None

        self.rate_limited += 1
        headers = {}
        retry_after = self.faults.rate_limit_retry_after
        if retry_after is not None:
            headers["Retry-After"] = _seconds(retry_after)

        if self.faults.rate_limit_html:
            return web.Response(
                status=429, text=_HTML_429, content_type="text/html", headers=headers
            )

        return web.Response(
            status=429, text=_JSON_429, content_type="application/json", headers=headers
        )

    def drop(self) -> bool:
        """Draw whether to close this connection without answering."""
        if self.faults.drop_rate and self._rng.random() < self.faults.drop_rate:
            self.dropped += 1
            return True

        return False

    def server_error(self) -> web.Response | None:
        """Draw whether to answer this request with a 5xx."""
        rate = self.faults.server_error_rate
        if not rate or self._rng.random() >= rate:
            return None

        self.server_errors += 1
        return web.Response(status=503, text=_JSON_503, content_type="application/json")


def _seconds(value: float) -> str:
    # Retry-After is delta-seconds; fractions are kept for scaled-down tests.
    return str(int(value)) if value == int(value) else repr(value)
