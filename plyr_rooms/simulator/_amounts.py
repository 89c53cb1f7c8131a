"""JavaScript value coercions and viem's unit parsing, as the real server applies them.

The server's handlers receive parsed JSON (numbers are doubles) and convert
amounts with ``parseUnits(String(x), decimals)``. Everything here is exact
integer or decimal arithmetic; a float only ever appears where JavaScript itself
would hold a double.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from plyr_rooms.signing import js_number_to_string

__all__ = [
    "MAX_UINT256",
    "ViemError",
    "format_units",
    "js_bigint",
    "js_number",
    "js_string",
    "js_truthy",
    "parse_units",
    "to_decimal",
    "uint256_error",
]

MAX_UINT256 = 2**256 - 1

_DECIMAL_TEXT = re.compile(r"(-?)([0-9]*)\.?([0-9]*)")
_JS_NUMERIC = re.compile(
    r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)
_JS_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")
_RADIXES = {"x": 16, "o": 8, "b": 2}
# JavaScript's String.prototype.trim removes these (plus line terminators).
_JS_SPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501


class ViemError(Exception):
    """An error viem raises with a ``shortMessage`` (the worker reports that text)."""

    def __init__(self, short_message: str) -> None:
        super().__init__(short_message)
        self.short_message = short_message


def js_string(value: object) -> str:
    """Return ``String(value)`` for a value that came out of ``JSON.parse``."""
    if isinstance(value, str):
        return value

    if value is None:
        return "null"

    if isinstance(value, bool):
        return "true" if value else "false"

    if isinstance(value, float | int):
        return js_number_to_string(float(value))

    if isinstance(value, list):
        return ",".join("" if item is None else js_string(item) for item in value)

    return "[object Object]"


def js_number(value: object) -> float:
    """Return ``Number(value)`` (NaN for what JavaScript cannot read as a number)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0

    if isinstance(value, float | int):
        return float(value)

    if value is None:
        return 0.0

    if isinstance(value, list):
        return js_number(js_string(value)) if len(value) <= 1 else math.nan

    if not isinstance(value, str):
        return math.nan

    text = value.strip(_JS_SPACE)
    if not text:
        return 0.0

    radix = _JS_RADIX.fullmatch(text)
    if radix is not None:
        try:
            return float(int(radix.group(2), _RADIXES[radix.group(1).lower()]))
        except ValueError:
            return math.nan

    if _JS_NUMERIC.fullmatch(text):
        return float(text.replace("Infinity", "inf"))

    return math.nan


def js_truthy(value: object) -> bool:
    """Tell whether JavaScript treats a parsed JSON value as true."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)

    if isinstance(value, list | dict):
        return True

    return bool(value)


def js_bigint(value: object) -> int:
    """Return ``BigInt(value)``.

    Raises:
        ValueError: with JavaScript's message, when BigInt refuses the value.
    """
    if isinstance(value, bool):
        return int(value)

    if isinstance(value, float | int):
        if not math.isfinite(value) or value != int(value):
            shown = js_string(value)
            raise ValueError(
                f"The number {shown} cannot be converted to a BigInt"
                " because it is not an integer"
            )

        return int(value)

    text = js_string(value).strip(_JS_SPACE)
    if not text:
        return 0

    radix = _JS_RADIX.fullmatch(text)
    if radix is not None:
        try:
            return int(radix.group(2), _RADIXES[radix.group(1).lower()])
        except ValueError:
            pass

    elif re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)

    raise ValueError(f"Cannot convert {js_string(value)} to a BigInt")


def parse_units(text: str, decimals: int) -> int:
    """Return viem's ``parseUnits(text, decimals)``: a decimal string in base units.

    Digits beyond *decimals* are rounded half up, as viem does.

    Raises:
        ViemError: ``InvalidDecimalNumberError`` for anything but plain decimals.
    """
    match = _DECIMAL_TEXT.fullmatch(text)
    if match is None:
        raise ViemError(f"Number `{text}` is not a valid decimal number.")

    negative, integer, fraction = match.groups()
    fraction = fraction.rstrip("0")
    whole = int(integer or "0")
    if len(fraction) > decimals:
        whole, fraction = _round_fraction(whole, fraction, decimals)
    else:
        fraction = fraction.ljust(decimals, "0")

    units: int = whole * 10**decimals + int(fraction or "0")
    return -units if negative else units


def _round_fraction(whole: int, fraction: str, decimals: int) -> tuple[int, str]:
    # viem rounds the last kept digit with Math.round(Number("<digit>.<rest>")).
    if decimals == 0:
        return _js_round(f"{whole}.{fraction}"), ""

    left, unit, right = (
        fraction[: decimals - 1],
        fraction[decimals - 1],
        fraction[decimals:],
    )
    rounded = _js_round(f"{unit}.{right}")
    if rounded > 9:
        kept = str(int(left or "0") + 1) + "0"
        kept = kept.rjust(len(left) + 1, "0")
    else:
        kept = f"{left}{rounded}"

    if len(kept) > decimals:
        kept = kept[1:]
        whole += 1

    return whole, kept[:decimals]


def _js_round(text: str) -> int:
    # Math.round: the nearest integer, halves towards +infinity.
    number = float(text)
    floor = math.floor(number)
    return floor + 1 if number - floor >= 0.5 else floor


def format_units(units: int, decimals: int) -> str:
    """Return viem's ``formatUnits``: base units as a plain decimal string."""
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(decimals, "0")
    if decimals == 0:
        return sign + digits

    integer, fraction = digits[:-decimals], digits[-decimals:].rstrip("0")
    return f"{sign}{integer or '0'}{'.' + fraction if fraction else ''}"


def uint256_error(value: int, *, bigint: bool = True) -> ViemError:
    """Return the viem error for a value outside the uint256 range."""
    suffix = "n" if bigint else ""
    return ViemError(
        f'Number "{value}{suffix}" is not in safe 256-bit unsigned integer range'
        f" (0{suffix} to {MAX_UINT256}{suffix})"
    )


def to_decimal(units: int, decimals: int) -> Decimal:
    """Return *units* base units as a Decimal in whole tokens (no exponent noise)."""
    return Decimal(format_units(units, decimals))
