"""Bech32 as age's keys use it (resources/bech32.py): the BIP 173 test vectors, a round trip
of key-sized data, and the two ways age's Bech32 differs from BIP 173's (no length limit,
mixed case refused)."""

from __future__ import annotations

import os

import pytest

from resources import bech32

VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11" + "q" * 82 + "c8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]

INVALID = {
    "\x201nwldj5": "invalid characters before the separator",
    "\x7f1axkwrx": "invalid characters before the separator",
    "pzry9x0s0muk": "no separator",
    "1pzry9x0s0muk": "no separator",
    "x1b4n0q5v": "outside the Bech32 alphabet",
    "li1dgmt3": "too short",
    "de1lg7wt\xff": "outside the Bech32 alphabet",
    "A1G7SGD8": "wrong checksum",
    "10a06t8": "no separator",
    "1qzzfhee": "no separator",
    "A12uEL5L": "mixes upper and lower case",
}


@pytest.mark.parametrize("text", VALID)
def test_bip173_valid_strings_decode(text):
    hrp, _ = bech32.decode(text)
    assert hrp == text[: text.rfind("1")]


@pytest.mark.parametrize("text", INVALID)
def test_bip173_invalid_strings_say_why(text):
    with pytest.raises(ValueError, match=INVALID[text]):
        bech32.decode(text)


@pytest.mark.parametrize("size", [0, 1, 20, 32, 100])
def test_round_trip(size):
    data = os.urandom(size)
    text = bech32.encode("age", data)
    assert text == text.lower()
    assert bech32.decode(text) == ("age", data)
    assert bech32.decode(text.upper()) == ("AGE", data)


def test_no_length_limit():
    data = os.urandom(200)  # 320 data characters: far past BIP 173's 90
    assert bech32.decode(bech32.encode("age", data))[1] == data
