"""Just enough Ethereum for the simulator: Keccak-256, EIP-55 and fake addresses.

The standard library only has SHA-3, whose padding differs from the Keccak the
chain uses, so the permutation is written out here. It runs a few times per
room and per player, never per request.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["fake_address", "is_address", "keccak256", "to_checksum_address"]

_MASK = (1 << 64) - 1
_RATE = 136  # bytes absorbed per permutation for a 256-bit output

_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip

# Rotation offsets, indexed by x + 5 * y.
_ROTATIONS = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _pi_steps() -> tuple[tuple[int, int, int], ...]:
    # (source lane, destination lane after rho and pi, rotation) for each lane
    steps = []
    for y in range(5):
        for x in range(5):
            index = x + 5 * y
            steps.append((index, y + 5 * ((2 * x + 3 * y) % 5), _ROTATIONS[index]))

    return tuple(steps)


_PI_STEPS = _pi_steps()


def _rotl1(value: int) -> int:
    return ((value << 1) | (value >> 63)) & _MASK


def _permute(a: list[int]) -> None:
    # Keccak-f[1600], unrolled where it pays: this is the hot loop.
    moved = [0] * 25
    for constant in _ROUND_CONSTANTS:
        c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20]
        c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21]
        c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22]
        c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23]
        c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24]
        d = (
            c4 ^ _rotl1(c1),
            c0 ^ _rotl1(c2),
            c1 ^ _rotl1(c3),
            c2 ^ _rotl1(c4),
            c3 ^ _rotl1(c0),
        )
        for source, target, shift in _PI_STEPS:
            v = a[source] ^ d[source % 5]
            moved[target] = ((v << shift) | (v >> (64 - shift))) & _MASK if shift else v

        for y in (0, 5, 10, 15, 20):
            b0, b1, b2, b3, b4 = moved[y : y + 5]
            a[y] = b0 ^ (~b1 & b2)
            a[y + 1] = b1 ^ (~b2 & b3)
            a[y + 2] = b2 ^ (~b3 & b4)
            a[y + 3] = b3 ^ (~b4 & b0)
            a[y + 4] = b4 ^ (~b0 & b1)

        a[0] ^= constant


def keccak256(data: bytes) -> bytes:
    """Return the Keccak-256 digest of *data* (the pre-standard SHA-3 padding)."""
    padded = bytearray(data)
    padded.append(0x01)
    padded.extend(b"\x00" * (-len(padded) % _RATE))
    padded[-1] |= 0x80
    lanes = [0] * 25
    for start in range(0, len(padded), _RATE):
        block = padded[start : start + _RATE]
        for i in range(_RATE // 8):
            lanes[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")

        _permute(lanes)

    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])


def to_checksum_address(address: str) -> str:
    """Return *address* (``0x`` + 40 hex digits) in EIP-55 mixed case."""
    body = address[2:].lower()
    digest = keccak256(body.encode("ascii")).hex()
    return "0x" + "".join(
        char.upper() if int(digest[i], 16) >= 8 else char for i, char in enumerate(body)
    )


def is_address(value: str) -> bool:
    """Tell whether viem's ``isAddress`` would accept *value*."""
    if not _HEX_ADDRESS.fullmatch(value):
        return False

    body = value[2:]
    if body == body.lower() or body == body.upper():
        return True

    return to_checksum_address(value) == value


def fake_address(*parts: str) -> str:
    """Return a deterministic checksummed address derived from *parts*."""
    # Any stable digest will do for a fake address; only the checksum needs
    # Keccak, which is the slow part here.
    digest = hashlib.sha256(":".join(parts).encode("utf-8")).digest()
    return to_checksum_address("0x" + digest[-20:].hex())
