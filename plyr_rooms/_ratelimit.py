# The shared request-rate budget of the poller's status checks. Pure, like the
# scheduler: the caller passes the time.
"""A token bucket for the status-request rate."""

from __future__ import annotations

import attrs

__all__ = ["TokenBucket"]


@attrs.define
class TokenBucket:
    """A request-rate budget: *rate* tokens a second, holding at most *burst*.

    Pure: the caller passes the time. Starts full.
    """

    rate: float
    burst: float
    _tokens: float = attrs.field(init=False)
    _updated: float | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if not self.rate > 0 or not self.burst >= 1:
            raise ValueError("need rate > 0 and burst >= 1")

        self._tokens = self.burst

    def available(self, now: float) -> int:
        """Return how many whole tokens could be taken at *now*."""
        self._refill(now)
        return int(self._tokens)

    def take(self, now: float, count: int) -> None:
        """Spend *count* tokens (the caller checked :meth:`available`)."""
        self._refill(now)
        self._tokens -= count

    def ready_at(self, now: float) -> float:
        """Return the time a whole token will be available."""
        self._refill(now)
        missing = 1 - self._tokens
        return now if missing <= 0 else now + missing / self.rate

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._tokens = min(
                self.burst, self._tokens + (now - self._updated) * self.rate
            )

        if self._updated is None or now > self._updated:
            self._updated = now
