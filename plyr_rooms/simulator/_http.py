"""Transport as the real service does it: routing, body parsing, HMAC, answers.

The server is Koa with @koa/router (case-insensitive paths, optional trailing
slash, 404/405 text bodies), koa-bodyparser (strict JSON, form bodies, ``{}``
for anything else) and the ``hmacAuth`` middleware of section 2.
"""

from __future__ import annotations

import hmac
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from plyr_rooms.signing import canonical_json, parse_js_json, sign_text

if TYPE_CHECKING:
    from plyr_rooms.simulator._sessions import SessionCheck

__all__ = [
    "MISSING",
    "ApiKey",
    "Ctx",
    "JsError",
    "Route",
    "Router",
    "authenticate",
    "field",
    "json_answer",
    "parse_body",
    "text_answer",
]

_JSON_TYPES = frozenset(
    {
        "application/json",
        "application/json-patch+json",
        "application/vnd.api+json",
        "application/csp-report",
        "application/scim+json",
    }
)
_FORM_TYPE = "application/x-www-form-urlencoded"
_STRICT_START = re.compile(r"[\x20\x09\x0a\x0d]*[\[{]")
# parseInt(text) with no radix: leading whitespace, a sign, then "0x" digits in
# base 16 or decimal digits; whatever follows them is ignored.
_PARSE_INT = re.compile(r"\s*([+-]?)(?:0[xX]([0-9a-fA-F]+)|([0-9]+))")
_ROLES = ("user", "game", "admin")
_WINDOW_MS = 300_000


def _now_ms() -> int:
    # The server's Date.now(): whole milliseconds, so that a timestamp exactly
    # 300,000 ms away is inside the window, as there, and not 0.4 ms outside.
    return time.time_ns() // 1_000_000


class _Missing:
    # JavaScript's undefined: a key that is not there at all (and falsy).
    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class JsError(Exception):
    """A JavaScript exception in a handler: the service answers 500.

    Caught by the controller it becomes ``{"error"}``; escaping to the global
    handler (``stack=True``) it also carries a ``stack``.
    """

    def __init__(self, message: str, *, stack: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.stack = stack

    def answer(self) -> web.Response:
        """Return the 500 answer the service sends for this exception."""
        body: dict[str, object] = {"error": self.message}
        if self.stack:
            body["stack"] = f"TypeError: {self.message}\n    at <simulator>"

        return json_answer(500, body)


@attrs.frozen
class ApiKey:
    """An API key record: its owner is the caller's game."""

    key: str
    secret: str = attrs.field(repr=False)
    plyr_id: str
    role: str = "game"


@attrs.define(eq=False)
class Ctx:
    """One request as the handlers see it."""

    request: web.BaseRequest
    params: dict[str, str]
    body: Any
    api_key: ApiKey | None = None
    # filled by checkSessionJwts
    sessions: SessionCheck | None = None

    @property
    def game_id(self) -> str:
        """The caller's game: the API key's plyrId, lower-cased."""
        assert self.api_key is not None
        return self.api_key.plyr_id.lower()


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]


@attrs.frozen
class Route:
    method: str
    template: str
    segments: tuple[str, ...]
    handler: Handler
    role: str | None  # None: no HMAC at all

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


class Router:
    """Matches paths case-insensitively, tolerating one trailing slash."""

    def __init__(self) -> None:
        self._by_length: dict[int, list[Route]] = {}

    def add(
        self, method: str, template: str, handler: Handler, *, role: str | None
    ) -> None:
        """Register *handler* for *method* on *template* (``:name`` segments)."""
        segments = tuple(template.strip("/").split("/"))
        route = Route(method, template, segments, handler, role)
        self._by_length.setdefault(len(segments), []).append(route)

    def match(
        self, method: str, path: str
    ) -> tuple[Route | None, dict[str, str], bool]:
        """Return (route, path params, whether the path exists for another method)."""
        if path.endswith("/") and len(path) > 1:
            path = path[:-1]

        parts = path[1:].split("/")
        lowered = [part.lower() for part in parts]
        known = False
        for route in self._by_length.get(len(parts), ()):
            params = _bind(route.segments, parts, lowered)
            if params is None:
                continue

            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, params, True

            known = True

        return None, {}, known


def _bind(
    segments: tuple[str, ...], parts: list[str], lowered: list[str]
) -> dict[str, str] | None:
    params = {}
    for segment, part, low in zip(segments, parts, lowered, strict=True):
        if segment.startswith(":"):
            if not part:
                return None

            params[segment[1:]] = part
        elif segment.lower() != low:
            return None

    return params


def parse_body(content_type: str, raw: bytes) -> Any:
    """Return the body as koa-bodyparser leaves it.

    Raises:
        ValueError: for what the service answers 400 ``Bad Request``.
    """
    if content_type in _JSON_TYPES:
        text = raw.decode("utf-8", "replace").removeprefix("\ufeff")
        if not text.strip(" \t\n\r"):
            return {}

        if not _STRICT_START.match(text):
            raise ValueError("not an object or array")

        body = parse_js_json(text)
        if ("__proto__" in text or "prototype" in text) and _poisoned(body):
            raise ValueError("prototype poisoning")

        return body

    if content_type == _FORM_TYPE:
        form: dict[str, Any] = {}
        for key, value in urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), True):
            previous = form.get(key)
            if previous is None:
                form[key] = value
            elif isinstance(previous, list):
                previous.append(value)
            else:
                form[key] = [previous, value]

        return form

    return {}


def _poisoned(value: Any) -> bool:
    if isinstance(value, list):
        return any(_poisoned(item) for item in value)

    if not isinstance(value, dict):
        return False

    if "__proto__" in value:
        return True

    constructor = value.get("constructor")
    if isinstance(constructor, dict) and "prototype" in constructor:
        return True

    return any(_poisoned(item) for item in value.values())


def authenticate(
    request: web.BaseRequest, body: Any, keys: dict[str, ApiKey], role: str
) -> ApiKey | web.Response:
    """Run ``hmacAuth(role)``: the key record, or the refusal to send."""
    headers = request.headers
    key, timestamp = headers.get("apikey"), headers.get("timestamp")
    signature = headers.get("signature")
    if not key or not timestamp or not signature:
        return json_answer(401, {"error": "Missing authentication headers"})

    record = keys.get(key)
    if record is None:
        return json_answer(401, {"error": "Invalid API key"})

    try:
        expected = sign_text(record.secret, timestamp, canonical_json(body))
    except ValueError:
        expected = ""

    given = signature.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(expected.encode("ascii"), given):
        return json_answer(401, {"error": "Invalid signature"})

    # parseInt: a numeric prefix counts; no digits at all (NaN) passes.
    stamp = _parse_int(timestamp)
    if stamp is not None and abs(_now_ms() - stamp) > _WINDOW_MS:
        return json_answer(401, {"error": "Request expired"})

    if _ROLES.index(record.role) < _ROLES.index(role):
        return json_answer(403, {"error": "Insufficient permissions"})

    return record


def _parse_int(text: str) -> int | None:
    # JavaScript's parseInt(text); None for NaN.
    found = _PARSE_INT.match(text)
    if found is None:
        return None

    sign, hexadecimal, decimal = found.groups()
    value = int(hexadecimal, 16) if hexadecimal else int(decimal)
    return -value if sign == "-" else value


def field(body: Any, name: str) -> Any:
    """Return ``body[name]`` as JavaScript reads it (:data:`MISSING` if absent)."""
    if isinstance(body, dict):
        return body.get(name, MISSING)

    return MISSING


def json_answer(status: int, value: object) -> web.Response:
    """Return a JSON answer serialised as ``JSON.stringify`` would."""
    return web.Response(
        status=status,
        body=canonical_json(value).encode("utf-8"),
        content_type="application/json",
        charset="utf-8",
    )


def raw_json_answer(status: int, body: bytes) -> web.Response:
    """Return already serialised JSON."""
    return web.Response(
        status=status, body=body, content_type="application/json", charset="utf-8"
    )


def text_answer(status: int, text: str) -> web.Response:
    """Return a ``text/plain`` answer (Koa's default bodies)."""
    return web.Response(status=status, text=text, content_type="text/plain")
