from __future__ import annotations

import json
import math
import random
import re
import shutil
import struct
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plyr_rooms.signing import (
    canonical_json,
    js_number_to_string,
    parse_js_json,
    sign,
    sign_text,
)

SECRET = "0123456789abcdef" * 4
TIMESTAMP = "1700000000000"

# Doubles of every magnitude, integer-like keys, unicode with surrogates (lone
# and paired) and control characters.
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
safe_ints = st.integers(min_value=-(2**53), max_value=2**53)
# Pieces drawn whole, so that surrogate pairs (and pairs split by a neighbour)
# come up often rather than by the chance of two adjacent draws.
_PIECES = ["\ud83d\ude00", "\ud83d", "\ude00", "\udbff\udfff", "a", "\u2028", "\x00"]
texts = st.text(
    st.characters(codec=None, exclude_categories=()),
    max_size=12,
) | st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
keys = st.one_of(
    texts,
    st.integers(min_value=0, max_value=2**33).map(str),
    st.sampled_from(["0", "01", "-1", "4294967294", "4294967295", "__proto__"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | safe_ints | finite_floats | texts,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=20,
)


class TestVectors:
    """The vectors of the API reference, section 2.7, computed with Node."""

    def test_get_signs_empty_object(self) -> None:
        assert sign(SECRET, TIMESTAMP, {}) == (
            "00ad48c27e319600e7070d6616f6c8ee5ed0c56038be6792c8e035bbea96d26a"
        )

    def test_post_with_float_amount(self) -> None:
        body = parse_js_json(
            '{"roomId":"7","sessionJwts":["eyJ.a.b"],"tokens":["plyr"],'
            '"amounts":[1.0],"sync":false}'
        )
        assert canonical_json(body) == (
            '{"roomId":"7","sessionJwts":["eyJ.a.b"],"tokens":["plyr"],'
            '"amounts":[1],"sync":false}'
        )
        assert sign(SECRET, TIMESTAMP, body) == (
            "90a49b0ea19c453702aed41203682a171dca2eddbe8366947891b7938007a666"
        )

    def test_post_with_unicode_and_exponents(self) -> None:
        body = parse_js_json(
            r'{"plyrIds":["caf\u00e9-01"],"note":"a\u2028b",'
            r'"amounts":[1e21, 0.0000001, -0.0]}'
        )
        assert canonical_json(body) == (
            '{"plyrIds":["café-01"],"note":"a\u2028b","amounts":[1e+21,1e-7,0]}'
        )
        assert sign(SECRET, TIMESTAMP, body) == (
            "273d921f4894da6b6fa0e64b38250f326aa12e84d239d1f40c99b2483d1df09b"
        )

    def test_signing_null_is_the_docs_bug(self) -> None:
        wrong = sign_text(SECRET, TIMESTAMP, "null")
        assert wrong == (
            "57d8a7b6072b72de4c695299cff6671f67616b748647d6d88914e67998a03097"
        )
        assert wrong != sign(SECRET, TIMESTAMP, {})


class TestNumbers:
    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (1.0, "1"),
            (-0.0, "0"),
            (1e21, "1e+21"),
            (12e20, "1.2e+21"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (0.000001, "0.000001"),
            (0.00001, "0.00001"),
            (1e16, "10000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5e-324, "5e-324"),
            (-2.5, "-2.5"),
        ],
    )
    def test_number_to_string(self, value: float, text: str) -> None:
        assert js_number_to_string(value) == text

    def test_large_integers_print_as_doubles(self) -> None:
        assert canonical_json(10**21) == "1e+21"
        # JavaScript prints the shortest digits that read back as the same double.
        assert canonical_json(2**60) == "1152921504606847000"
        assert canonical_json(-(2**53)) == "-9007199254740992"

    def test_parsed_large_integer_loses_precision_like_javascript(self) -> None:
        assert canonical_json(parse_js_json("[9007199254740993]")) == (
            "[9007199254740992]"
        )

    @given(finite_floats)
    def test_number_text_reads_back_as_the_same_double(self, value: float) -> None:
        assert float(js_number_to_string(value)) == value or value == 0


class TestRefusals:
    @pytest.mark.parametrize(
        ("value", "path"),
        [
            ({"a": [1, math.nan]}, "$.a[1]"),
            ({"b": math.inf}, "$.b"),
            ([2**53 + 1], "$[0]"),
            ({"amount": object()}, "$.amount"),
            ({"x": {1: "a"}}, "$.x"),
        ],
    )
    def test_refused_values_name_their_path(self, value: object, path: str) -> None:
        with pytest.raises(
            ValueError, match=path.replace("$", r"\$").replace("[", r"\[")
        ):
            canonical_json(value)

    @pytest.mark.parametrize("text", ["NaN", "[Infinity]", "{'a':1}", "{", ""])
    def test_parse_refuses_what_json_parse_refuses(self, text: str) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - json's own messages vary
            parse_js_json(text)


class TestStrings:
    @pytest.mark.parametrize(
        ("value", "text"),
        [
            ('"\\', r'"\"\\"'),
            ("\b\f\n\r\t", r'"\b\f\n\r\t"'),
            ("\x01\x1f", r'"\u0001\u001f"'),
            ("/\x7f", '"/\x7f"'),
            ("é\u2028\u2029", '"é\u2028\u2029"'),
            ("\ud800", r'"\ud800"'),
            ("a\udfffb", r'"a\udfffb"'),
            ("\ud83d\ude00", '"😀"'),
            ("😀", '"😀"'),
        ],
    )
    def test_escapes(self, value: str, text: str) -> None:
        assert canonical_json(value) == text

    def test_index_keys_come_first_in_numeric_order(self) -> None:
        value = {"b": 1, "10": 2, "2": 3, "01": 4, "-1": 5, "4294967295": 6}
        assert canonical_json(value) == (
            '{"2":3,"10":2,"b":1,"01":4,"-1":5,"4294967295":6}'
        )

    def test_bom_is_ignored(self) -> None:
        assert parse_js_json("\ufeff{}".encode()) == {}


class TestProperties:
    @given(json_values)
    def test_output_is_valid_compact_json(self, value: object) -> None:
        text = canonical_json(value)
        # Lone surrogates are escaped, so the text always encodes as UTF-8.
        text.encode("utf-8")
        # It reads back as the same value, with objects in JavaScript's key order.
        reread = json.loads(text, parse_int=float, object_pairs_hook=_pairs)
        assert reread == _as_js(value)
        # No whitespace at all outside strings.
        assert re.search(r"\s", _no_strings(text)) is None

    @given(json_values)
    def test_serialising_is_idempotent_through_a_parse(self, value: object) -> None:
        once = canonical_json(value)
        assert canonical_json(parse_js_json(once)) == once

    @given(st.text(max_size=40), st.text(max_size=40))
    def test_signature_is_lower_case_hex(self, secret: str, text: str) -> None:
        signature = sign_text(secret or "s", TIMESTAMP, text)
        assert len(signature) == 64
        assert signature == signature.lower()
        assert int(signature, 16) >= 0


def _random_json(rng: random.Random, depth: int = 0) -> object:
    # A plain seeded generator: the Node comparison wants one large batch, which
    # a @given test (one example at a time) cannot hand to a single process.
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**53), 2**53)
    if kind == 2:
        return rng.choice(
            [
                rng.uniform(-1e6, 1e6),
                10.0 ** rng.randint(-330, 308) * rng.random(),
                float(rng.randint(0, 10**6)) / 10 ** rng.randint(0, 12),
                struct.unpack("<d", rng.randbytes(8))[0],
            ]
        )
    if kind in (3, 4):
        alphabet = 'aé"\\\b\n\x01\x1f\x7f\u2028\ud800\udc00\U0001f600/'
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(["a", "0", "7", "01", "-1", "10", "4294967295", "b"]): _random_json(
            rng, depth + 1
        )
        for _ in range(rng.randint(0, 4))
    }


_NODE_SCRIPT = r"""
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
const out = lines.map((line) => JSON.stringify(JSON.parse(line)));
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_equal_to_node_json_stringify() -> None:
    """A large generated sample prints exactly as Node prints it, in one process."""
    rng = random.Random(2026)
    samples = [_random_json(rng) for _ in range(5000)]
    samples = [s for s in samples if _finite(s)]
    # Feed Node what Python's json writes (ASCII-escaped, so lone surrogates
    # survive the pipe) and compare with our own printing of the same parse.
    lines = "\n".join(json.dumps(s) for s in samples) + "\n"
    done = subprocess.run(
        ["node", "-e", _NODE_SCRIPT],
        input=lines.encode("ascii"),
        capture_output=True,
        check=True,
        timeout=60,
    )
    # Node's output escapes lone surrogates too, so it is plain UTF-8 text.
    node_texts = json.loads(done.stdout.decode("utf-8"))
    ours = [canonical_json(parse_js_json(json.dumps(s))) for s in samples]
    mismatches = [(a, b) for a, b in zip(ours, node_texts, strict=True) if a != b]
    assert len(samples) > 4000
    assert mismatches == []


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _pairs(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    # Keep an object's keys in the order the text printed them.
    return pairs


def _utf16(text: str) -> str:
    # What a JavaScript string holds: surrogate pairs joined, lone ones kept.
    return text.encode("utf-16-le", "surrogatepass").decode(
        "utf-16-le", "surrogatepass"
    )


def _as_js(value: object) -> object:
    # The value as JSON.parse(JSON.stringify(value)) would hand it back, with
    # objects as (key, value) lists in JavaScript's property order.
    if isinstance(value, str):
        return _utf16(value)

    if isinstance(value, list | tuple):
        return [_as_js(item) for item in value]

    if isinstance(value, dict):
        items = [(_utf16(k), _as_js(v)) for k, v in value.items()]
        index = [i for i in items if _is_array_index(i[0])]
        other = [i for i in items if not _is_array_index(i[0])]
        return sorted(index, key=lambda i: int(i[0])) + other

    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) + 0.0  # every number is a double; -0 prints as 0

    return value


def _is_array_index(key: str) -> bool:
    return re.fullmatch(r"0|[1-9][0-9]*", key) is not None and int(key) < 2**32 - 1


def _no_strings(text: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
