"""A raw signed HTTP helper for checking the simulator without the real client.

The simulator's own tests use it so that the simulator is verified on its own,
byte for byte, rather than through the library's client.
"""

from __future__ import annotations

import io
import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs

from plyr_rooms.signing import canonical_json, sign_text

if TYPE_CHECKING:
    from types import TracebackType

    from plyr_rooms.simulator import Simulator

__all__ = ["Answer", "Probe"]


@attrs.frozen
class Answer:
    """One HTTP answer: status, raw text, parsed JSON (None if not JSON), headers."""

    status: int
    text: str
    data: Any
    headers: dict[str, str]

    @property
    def task_id(self) -> str:
        """The ``task.id`` of an async submit answer."""
        return str(self.data["task"]["id"])


class Probe:
    """Sends signed requests to a simulator, exactly as a careful client would."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Probe:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def headers(
        self, text: str, *, timestamp: str | None = None, secret: str | None = None
    ) -> dict[str, str]:
        """Return the auth headers for a body *text* (``"{}"`` for a GET)."""
        stamp = timestamp if timestamp is not None else str(int(time.time() * 1000))
        signature = sign_text(secret or self.sim.api_secret, stamp, text)
        return {"apikey": self.sim.api_key, "timestamp": stamp, "signature": signature}

    async def get(self, path: str, **kwargs: Any) -> Answer:
        """Signed GET of *path* (relative to ``/api``)."""
        return await self.request("GET", path, headers=self.headers("{}"), **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        """Signed POST of *body* serialised as JavaScript would."""
        text = canonical_json({} if body is None else body)
        headers = self.headers(text)
        headers["Content-Type"] = "application/json"
        return await self.request(
            "POST", path, data=text.encode(), headers=headers, **kwargs
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        absolute: bool = False,
    ) -> Answer:
        """Send anything; *path* is relative to ``/api`` unless *absolute*."""
        assert self._session is not None, "use `async with Probe(sim)`"
        base = self.sim.url.removesuffix("/api") if absolute else self.sim.url
        # aiohttp wants large bodies as a stream rather than raw bytes.
        payload = io.BytesIO(data) if data is not None and len(data) > 65536 else data
        async with self._session.request(
            method, base + path, data=payload, headers=headers or {}
        ) as response:
            text = await response.text()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None

            return Answer(response.status, text, parsed, dict(response.headers))

    async def settle(self, task_id: str) -> Answer:
        """Wait on the simulator's own clock for a task, then read its status."""
        task = self.sim.state.worker.tasks[task_id]
        await self.sim.state.worker.wait(task, 60.0)
        return await self.get(f"/task/status/{task_id}")
