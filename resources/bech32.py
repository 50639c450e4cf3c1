"""Bech32 (BIP 173), the encoding of age's keys: `age1...` recipients and
`AGE-SECRET-KEY-1...` identities.

A human-readable part, the separator `1`, then 5-bit groups of the data and a six-character
checksum that catches typos and truncated copies. As age uses it: no length limit (BIP 173
caps strings at 90 characters), and a string in mixed case is refused. Errors are
`ValueError`s whose message completes a sentence about the key ("it has a wrong checksum"),
for `resources.age` to put in its own.
"""

from __future__ import annotations

from collections.abc import Iterable

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate(_GENERATOR):
            if top >> bit & 1:
                checksum ^= generator
    return checksum


def _hrp_values(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup_bits(data: Iterable[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    accumulator, bits, out = 0, 0, []
    mask = (1 << to_bits) - 1
    for value in data:
        accumulator = accumulator << from_bits | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append(accumulator >> bits & mask)
    if pad:
        if bits:
            out.append(accumulator << (to_bits - bits) & mask)
    elif bits >= from_bits or accumulator << (to_bits - bits) & mask:
        raise ValueError("has invalid padding in its data part")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Lowercase Bech32 of `data` under `hrp` (which must be given in lowercase)."""
    values = _regroup_bits(data, 8, 5, pad=True)
    polymod = _polymod(_hrp_values(hrp) + values + [0] * 6) ^ 1
    checksum = [polymod >> 5 * (5 - i) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """(hrp as written, data); age's Bech32 has no length limit; mixed case is refused."""
    if text != text.lower() and text != text.upper():
        raise ValueError("mixes upper and lower case")
    lower = text.lower()
    separator = lower.rfind("1")
    if separator < 1 or separator + 7 > len(lower):
        raise ValueError("is not Bech32 (no separator, or too short)")
    hrp = lower[:separator]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise ValueError("has invalid characters before the separator")
    values = [_CHARSET.find(c) for c in lower[separator + 1 :]]
    if -1 in values:
        raise ValueError("has characters outside the Bech32 alphabet")
    if _polymod(_hrp_values(hrp) + values) != 1:
        raise ValueError("has a wrong checksum (a typo, or a truncated copy)")
    return text[:separator], bytes(_regroup_bits(values[:-6], 5, 8, pad=False))
