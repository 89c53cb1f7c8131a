"""Request signing, byte-compatible with the PLYR server.

The server does not sign the bytes it receives: it parses the JSON body and signs
``timestamp + JSON.stringify(parsed)``. A Python client therefore has to print
JSON exactly as JavaScript would, and the simplest safe design is to serialise a
body once with :func:`canonical_json`, sign that text, and send those same bytes.

This module does no I/O. The simulator uses :func:`parse_js_json` and
:func:`canonical_json` together to compute what the real server would sign.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal

__all__ = [
    "canonical_json",
    "js_number_to_string",
    "parse_js_json",
    "sign",
    "sign_text",
]

# JSON.stringify escapes exactly what Python's non-ASCII encoder escapes (quote,
# backslash, the five short forms and other C0 controls as lower-case \u00XX),
# except for UTF-16 surrogates, which Python leaves raw and cannot encode.
_encode_plain: Callable[[str], str] = json.encoder.encode_basestring
_SURROGATES = re.compile("[\ud800-\udfff]+")
_MAX_SAFE = 2**53
# Keys that are canonical array indices (0 .. 2**32 - 2, no leading zeros) are
# printed first, in ascending numeric order, by every JavaScript engine.
_MAX_INDEX = 2**32 - 2


def canonical_json(value: object) -> str:
    """Return exactly what JavaScript's ``JSON.stringify`` prints for *value*.

    Accepts ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples and
    dicts with string keys, nested to any depth.

    Raises:
        ValueError: for a value JavaScript would silently change or refuse: NaN,
            infinities, integers a double cannot hold exactly, non-string keys,
            or an unsupported type. The message names the value and its path.
    """
    parts: list[str] = []
    _write(value, parts, "$")
    return "".join(parts)


def sign_text(secret: str, timestamp: str, text: str) -> str:
    """Return the lower-case hex HMAC-SHA256 of ``timestamp + text``.

    *secret* is used as its UTF-8 bytes (a hex secret is not hex-decoded).
    """
    message = (timestamp + text).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: str, body: object) -> str:
    """Return the signature the server expects for *body* sent at *timestamp*.

    A GET request has no body and signs ``{}``: pass ``{}``.
    """
    return sign_text(secret, timestamp, canonical_json(body))


def parse_js_json(text: str | bytes) -> object:
    """Parse *text* as JavaScript's ``JSON.parse`` would.

    Every number becomes a float (a double), so ``9007199254740993`` reads as
    ``9007199254740992.0``; a duplicate key keeps its first position and its last
    value; a leading byte-order mark is ignored.

    Raises:
        ValueError: if *text* is not strict JSON (``NaN`` and ``Infinity`` are not).
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"body is not UTF-8: {exc}") from None

    text = text.removeprefix("\ufeff")
    return json.loads(
        text,
        parse_int=float,
        parse_float=float,
        parse_constant=_refuse_constant,
    )


def js_number_to_string(x: float) -> str:
    """Format *x* as ECMAScript's ``Number::toString`` does.

    Raises:
        ValueError: for NaN and infinities, which JSON cannot carry.
    """
    if not math.isfinite(x):
        raise ValueError(f"{x!r} has no JSON form")

    if x == 0:
        return "0"

    if x < 0:
        return "-" + js_number_to_string(-x)

    # repr() gives the shortest digits that round-trip, as ECMAScript requires;
    # only the placement of the decimal point and the exponent form differ.
    _, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    assert isinstance(exponent, int)
    n = exponent + len(digit_tuple)  # x = 0.DIGITS * 10**n
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)

    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]

    if -6 < n <= 0:
        return "0." + "0" * -n + digits

    sign = "+" if n - 1 >= 0 else "-"
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{sign}{abs(n - 1)}"


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _write(value: object, parts: list[str], path: str) -> None:
    # One function with a type ladder: bodies are small and this is on the
    # request path, so avoid per-value dispatch objects.
    if isinstance(value, str):
        parts.append(_string(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(_integer(value, path))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} at {path} has no JSON form")

        parts.append(js_number_to_string(value))
    elif isinstance(value, Mapping):
        _write_object(value, parts, path)
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")

            _write(item, parts, f"{path}[{index}]")

        parts.append("]")
    else:
        raise ValueError(
            f"{type(value).__name__} value {value!r} at {path} is not a JSON value"
        )


def _write_object(value: Mapping[object, object], parts: list[str], path: str) -> None:
    keys: list[str] = []
    for key in value:
        if not isinstance(key, str):
            raise ValueError(f"key {key!r} at {path} is not a string")

        keys.append(key)

    if any(key[:1].isdigit() for key in keys):
        keys = _js_key_order(keys)

    parts.append("{")
    for index, key in enumerate(keys):
        if index:
            parts.append(",")

        parts.append(_string(key))
        parts.append(":")
        _write(value[key], parts, f"{path}.{key}")

    parts.append("}")


def _js_key_order(keys: list[str]) -> list[str]:
    indices = sorted((k for k in keys if _is_index(k)), key=int)
    return indices + [k for k in keys if not _is_index(k)]


def _is_index(key: str) -> bool:
    return (
        key.isdigit()
        and key.isascii()
        and (key == "0" or key[0] != "0")
        and int(key) <= _MAX_INDEX
    )


def _integer(value: int, path: str) -> str:
    if -_MAX_SAFE <= value <= _MAX_SAFE:
        return str(value)

    as_double = float(value)
    if as_double != value:
        raise ValueError(
            f"integer {value} at {path} is beyond 2**53 and a double cannot hold it"
            " exactly; send it as a string"
        )

    return js_number_to_string(as_double)


def _string(value: str) -> str:
    text: str = _encode_plain(value)
    if _SURROGATES.search(value) is None:
        return text

    # Rare path: pair up surrogates as UTF-16 would, escape the lone ones.
    out: list[str] = ['"']
    position = 0
    for match in _SURROGATES.finditer(value):
        out.append(_encode_plain(value[position : match.start()])[1:-1])
        out.append(_surrogate_run(match.group()))
        position = match.end()

    out.append(_encode_plain(value[position:])[1:-1])
    out.append('"')
    return "".join(out)


def _surrogate_run(run: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(run):
        high = ord(run[index])
        low = ord(run[index + 1]) if index + 1 < len(run) else 0
        if 0xD800 <= high <= 0xDBFF and 0xDC00 <= low <= 0xDFFF:
            out.append(chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)))
            index += 2
        else:
            out.append(f"\\u{high:04x}")
            index += 1

    return "".join(out)
