"""What goes on the wire: request values checked and shaped, error bodies read.

Everything here is pure (no I/O) so that the client's request path stays short and
these rules can be tested directly. Validation raises
:class:`~plyr_rooms.errors.InvalidInput` before anything is sent; messages name the
argument and the bad value, except session JWTs, which are named by index only.
"""

from __future__ import annotations

import email.utils
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC
from decimal import Decimal
from typing import Any

from .errors import (
    ApiError,
    InvalidInput,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    Unauthenticated,
)

__all__ = [
    "HMAC_MESSAGES",
    "api_error",
    "base_url",
    "expires_in",
    "format_amount",
    "lower_name",
    "lower_names",
    "parse_retry_after",
    "redact",
    "room_id",
    "same_lengths",
    "session_jwts",
]

#: The four 401 messages of the server's HMAC check; every other 401 is validation.
HMAC_MESSAGES = frozenset(
    {
        "Missing authentication headers",
        "Invalid API key",
        "Invalid signature",
        "Request expired",
    }
)

# 18 decimals is the most any token on the token list has; more would be rounded
# by the server's parseUnits, silently changing the amount.
_MAX_PLACES = 18
# An amount of 10**78 or more cannot fit a uint256 whatever its decimals.
_MAX_ADJUSTED = 77
_PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_MAX_SAFE_INT = 2**53 - 1
_MAX_TEXT = 300
_MAX_SHOWN = 60


def base_url(endpoint: str) -> str:
    """Return *endpoint* (a host URL, with or without ``/api``) ending in one ``/api``.

    Raises:
        InvalidInput: if *endpoint* is not an http(s) URL without query or fragment.
    """
    text = endpoint.strip()
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise InvalidInput(f"endpoint must be an http(s) URL, got {endpoint!r}")

    if "?" in rest or "#" in rest:
        raise InvalidInput(f"endpoint must not have a query or fragment: {endpoint!r}")

    text = text.rstrip("/")
    # The docs' quick-start doubles the prefix; the server has no /api/api routes.
    while text.lower().endswith("/api"):
        text = text[:-4].rstrip("/")

    return text + "/api"


def room_id(value: object, name: str = "room_id") -> str:
    """Return *value* as the decimal string the server needs for ``roomId``.

    Raises:
        InvalidInput: unless *value* is a non-negative int or a string of digits.
    """
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            return value.lstrip("0") or "0"

    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)

    raise InvalidInput(
        f"{name} must be a decimal room id like '12', got {_show(value)}"
    )


def format_amount(value: object, name: str = "amount") -> str:
    """Return *value* as a plain decimal string, exactly, with no exponent.

    ``Decimal("1.50")`` gives ``"1.5"``, ``Decimal("1E+2")`` gives ``"100"``, and
    ``Decimal(s)`` of the result always equals *value*.

    Args:
        value: a ``Decimal``, an ``int`` or a decimal string such as ``"12.5"``.
        name: how to name the value in an error message.

    Raises:
        InvalidInput: for floats, bools, NaN, infinities, negatives, exponent
            strings, more than 18 decimal places, or another type.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidInput(f"{name} must not be negative, got {value!r}")

        if value.bit_length() > 256:
            raise InvalidInput(f"{name} is too large: {_show(value)}")

        return str(value)

    if isinstance(value, str):
        if _PLAIN_DECIMAL.fullmatch(value) is None:
            raise InvalidInput(
                f"{name} must be a plain decimal string like '12.5', got {_show(value)}"
            )

        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        raise InvalidInput(
            f"{name} must be a Decimal, int or decimal string, not a float ({value!r});"
            " binary floats never carry money"
        )
    else:
        raise InvalidInput(
            f"{name} must be a Decimal, int or decimal string, got {_show(value)}"
        )

    return _plain(number, name)


def _plain(number: Decimal, name: str) -> str:
    if not number.is_finite():
        raise InvalidInput(f"{name} must be a finite number, got {number!r}")

    if number.is_signed() and not number.is_zero():
        raise InvalidInput(f"{name} must not be negative, got {number!r}")

    if number.is_zero():
        return "0"

    if number.adjusted() > _MAX_ADJUSTED:
        raise InvalidInput(f"{name} is too large: {number!r}")

    # format(..., "f") prints the exact digits without rounding to the context
    # precision (Decimal.normalize would round beyond 28 digits).
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
        places = len(text) - text.find(".") - 1 if "." in text else 0
        if places > _MAX_PLACES:
            raise InvalidInput(
                f"{name} has {places} decimal places, more than {_MAX_PLACES}:"
                f" {number!r}"
            )

    return text


def lower_names(values: object, name: str, *, token: bool = False) -> list[str]:
    """Return *values* (a non-empty list of non-empty strings) lower-cased.

    Raises:
        InvalidInput: if *values* is not such a list; with *token*, also for a token
            address (the server accepts one but every room task given one fails).
    """
    items = _string_list(values, name)
    return [
        lower_name(item, f"{name}[{index}]", token=token)
        for index, item in enumerate(items)
    ]


def lower_name(value: object, name: str, *, token: bool = False) -> str:
    """Return one plyr id or token symbol, checked and lower-cased.

    Raises:
        InvalidInput: as :func:`lower_names` does for one entry.
    """
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise InvalidInput(
            f"{name} must be a non-empty string without surrounding spaces,"
            f" got {_show(value)}"
        )

    if _looks_like_jwt(value):
        raise InvalidInput(f"{name} is a session JWT (not shown), not a name")

    if token and _ADDRESS.fullmatch(value):
        raise InvalidInput(
            f"{name} must be a token symbol like 'plyr', not an address"
            f" ({value!r}): room tasks given an address fail on the server"
        )

    return value.lower()


def session_jwts(values: object) -> list[str]:
    """Return *values* as a list of session JWTs, checked without ever echoing one.

    Raises:
        InvalidInput: unless *values* is a non-empty list of non-empty strings.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidInput(
            "session_jwts must be a list of session JWT strings,"
            f" got a {type(values).__name__}"
        )

    if not values:
        raise InvalidInput("session_jwts must not be empty")

    for index, item in enumerate(values):
        if not isinstance(item, str):
            raise InvalidInput(
                f"session_jwts[{index}] must be a str, got a {type(item).__name__}"
            )

        if not item.strip():
            raise InvalidInput(f"session_jwts[{index}] is empty")

    return list(values)


def same_lengths(**lists: Sequence[object]) -> None:
    """Check that parallel lists (entry *i* of each belongs together) match.

    Raises:
        InvalidInput: naming every list and its length when they differ.
    """
    lengths = {name: len(items) for name, items in lists.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise InvalidInput(f"parallel lists must have the same length: {listed}")


def expires_in(value: object) -> int:
    """Return *value* as a room lifetime in whole seconds.

    Raises:
        InvalidInput: unless *value* is a positive int (not a bool).
    """
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 < value <= _MAX_SAFE_INT
    ):
        return value

    raise InvalidInput(
        f"expires_in must be a positive int of seconds, got {_show(value)}"
    )


def _string_list(values: object, name: str) -> Sequence[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidInput(
            f"{name} must be a list of strings, got a {type(values).__name__}"
        )

    if not values:
        raise InvalidInput(f"{name} must not be empty")

    return values


def _looks_like_jwt(text: str) -> bool:
    # A compact JWS: three base64url parts, the header starting '{"' -> "eyJ".
    return text.startswith("eyJ") and text.count(".") == 2


def _show(value: object) -> str:
    # A bad value for a message: never a session JWT, never a huge repr.
    if isinstance(value, str) and _looks_like_jwt(value):
        return "a session JWT (not shown)"

    if isinstance(value, list | tuple | dict | set | bytes):
        return f"a {type(value).__name__} of {len(value)}"

    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for, or None.

    Args:
        value: the header (delay in seconds, or an HTTP-date), or None if absent.
        now: the current Unix time on the server's clock, for HTTP-dates.
    """
    if value is None:
        return None

    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None

        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)

        return max(0.0, when.timestamp() - now)

    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def api_error(
    status: int,
    reason: str | None,
    raw: bytes,
    *,
    retry_after: float | None = None,
    hidden: Sequence[tuple[str, str]] = (),
) -> ApiError:
    """Return the typed error for an error response.

    Args:
        status: the HTTP status (>= 400).
        reason: the HTTP reason phrase, used when the body says nothing.
        raw: the response body, JSON or not (a proxy's HTML page, plain text).
        retry_after: the parsed ``Retry-After`` of a 429.
        hidden: ``(secret, placeholder)`` pairs replaced wherever the body echoes
            them (the session JWTs of the request).
    """
    message, details = _read_body(raw)
    if hidden:
        message = redact(message, hidden)
        details = redact(details, hidden)

    message = message or reason or f"HTTP {status}"
    if status == 429:
        return RateLimited(status, message, details, retry_after=retry_after)

    if status == 401:
        kind: type[ApiError] = (
            Unauthenticated if message in HMAC_MESSAGES else InvalidRequest
        )
    elif status == 403:
        kind = PermissionDenied
    elif status == 404:
        kind = NotFound
    elif status >= 500:
        kind = ServerError
    elif 400 <= status < 500:
        kind = InvalidRequest
    else:
        kind = ApiError

    return kind(status, message, details)


def _read_body(raw: bytes) -> tuple[str, dict[str, Any]]:
    text = raw.decode("utf-8", "replace").strip().removeprefix("\ufeff")
    if text[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError:
            data = None

        if isinstance(data, Mapping):
            return _read_mapping(data)

        if isinstance(data, list):
            return _join(data), {"errors": data}

    if text[:1] == "<":
        # A proxy's or load balancer's HTML page: its title is the useful part.
        title = _TITLE.search(text)
        found = " ".join(html.unescape(title.group(1)).split()) if title else ""
        return _clip(found or "HTML error page"), {}

    return _clip(" ".join(text.split())), {}


def _read_mapping(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    details = {k: v for k, v in data.items() if k not in ("error", "message")}
    error = data.get("error")
    if isinstance(error, str):
        message = error
    elif isinstance(error, list):
        details["errors"] = error
        message = _join(error)
    else:
        if error is not None:
            details["error"] = error

        message = ""

    note = data.get("message")
    if isinstance(note, str) and not message:
        message = note
    elif "message" in data:
        details["message"] = note

    return message, details


def _join(items: list[Any]) -> str:
    return _clip("; ".join(str(item) for item in items))


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def redact(value: Any, hidden: Sequence[tuple[str, str]]) -> Any:
    """Return *value* with every hidden string replaced by its placeholder.

    Walks strings, lists and mappings (keys too); other values are kept.
    """
    if isinstance(value, str):
        for secret, placeholder in hidden:
            if secret and secret in value:
                value = value.replace(secret, placeholder)

        return value

    if isinstance(value, Mapping):
        return {redact(k, hidden): redact(v, hidden) for k, v in value.items()}

    if isinstance(value, list | tuple):
        return [redact(item, hidden) for item in value]

    return value
