"""goalport's age (resources/age.py) against a second implementation: pyrage, the Python
binding of rage, the reference Rust implementation. Files go both ways, binary and armored,
to one or several recipients and with passphrases, at random sizes around the 64 KiB
chunk boundaries where an off-by-one in the STREAM framing would show (an empty payload,
a full last chunk, one byte more or less).

The CCTV vectors and the `age` command line stay in tests/resources/test_age.py.
"""

from __future__ import annotations

import os
import random
import re
import time

import pyrage
import pytest
from pyrage import passphrase as pyrage_passphrase
from pyrage import x25519

from resources import age

CHUNK = 64 * 1024
# every boundary the payload framing has: empty, one byte, around one, two and three chunks
BOUNDARY_SIZES = [
    0,
    1,
    CHUNK - 1,
    CHUNK,
    CHUNK + 1,
    2 * CHUNK - 1,
    2 * CHUNK,
    2 * CHUNK + 1,
    3 * CHUNK,
]
_rng = random.Random(20)
# plus a few sizes drawn at random near those boundaries (seeded: a failure is reproducible)
RANDOM_SIZES = sorted(
    {max(0, _rng.choice([CHUNK, 2 * CHUNK]) + _rng.randint(-40, 40)) for _ in range(4)}
)
SIZES = BOUNDARY_SIZES + [s for s in RANDOM_SIZES if s not in BOUNDARY_SIZES]


def _goalport_keys(count: int) -> list[tuple[str, str]]:
    return [age.generate_identity() for _ in range(count)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
def test_pyrage_decrypts_what_goalport_encrypts_to_several_recipients(size: int, armor: bool):
    plaintext = os.urandom(size)
    keys = _goalport_keys(3)
    data = age.encrypt(plaintext, recipients=[recipient for _, recipient in keys], armor=armor)
    for identity, _ in keys:  # each recipient alone opens it
        assert pyrage.decrypt(data, [x25519.Identity.from_str(identity)]) == plaintext
    stranger = x25519.Identity.generate()
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(data, [stranger])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
def test_goalport_decrypts_what_pyrage_encrypts_to_several_recipients(size: int, armor: bool):
    plaintext = os.urandom(size)
    identities = [x25519.Identity.generate() for _ in range(3)]
    data = pyrage.encrypt(plaintext, [i.to_public() for i in identities], armored=armor)
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----" if armor else b"age-")
    for identity in identities:
        assert age.decrypt(data, identities=[str(identity)]) == plaintext
    # the recipients goalport derives from pyrage's identities are pyrage's own recipients
    assert {age.recipient_from_identity(str(i)) for i in identities} == {
        str(i.to_public()) for i in identities
    }
    with pytest.raises(age.AgeNoMatchError):
        age.decrypt(data, identities=[age.generate_identity()[0]])


@pytest.mark.parametrize("size", [0, CHUNK - 1, CHUNK + 1])
def test_goalport_passphrase_files_open_in_pyrage(size: int):
    plaintext = os.urandom(size)
    data = age.encrypt(plaintext, passphrase="corrèct horse", work_factor=10, armor=size > 0)
    assert pyrage_passphrase.decrypt(data, "corrèct horse") == plaintext
    with pytest.raises(pyrage.DecryptError):
        pyrage_passphrase.decrypt(data, "correct horse")


@pytest.fixture(scope="module")
def pyrage_passphrase_file() -> tuple[bytes, bytes, int]:
    """One file pyrage encrypted with a passphrase (rage picks its own work factor, about a
    second of scrypt: made once for the module), its plaintext and that work factor."""
    plaintext = os.urandom(CHUNK + 7)
    data = pyrage_passphrase.encrypt(plaintext, "pässphrase")
    match = re.search(rb"\n-> scrypt \S+ (\d+)\n", data)
    assert match, "pyrage wrote a passphrase file without an scrypt stanza"
    return data, plaintext, int(match.group(1))


def test_goalport_decrypts_what_pyrage_encrypts_with_a_passphrase(pyrage_passphrase_file):
    data, plaintext, work_factor = pyrage_passphrase_file
    assert work_factor <= age.DEFAULT_MAX_WORK_FACTOR
    # (one scrypt of rage's calibrated cost, seconds here; wrong passphrases: test_age.py)
    assert age.decrypt(data, passphrase="pässphrase", max_work_factor=work_factor) == plaintext


def test_work_factor_bound_is_checked_before_any_scrypt_work(pyrage_passphrase_file):
    data, _, work_factor = pyrage_passphrase_file
    # the right passphrase, but one less than the file asks for: refused, not tried
    with pytest.raises(age.AgeWorkFactorError, match=f"work factor {work_factor}"):
        age.decrypt(data, passphrase="pässphrase", max_work_factor=work_factor - 1)
    # a hostile file asking for 2^40 scrypt (a terabyte of memory): refused at once, where
    # running scrypt first would take the machine's memory or never return
    hostile = data.replace(f" {work_factor}\n".encode(), b" 40\n", 1)
    started = time.monotonic()
    with pytest.raises(age.AgeWorkFactorError, match="work factor 40"):
        age.decrypt(hostile, passphrase="pässphrase")
    assert time.monotonic() - started < 1.0


def test_a_file_cut_at_a_chunk_boundary_fails_in_both_implementations():
    plaintext = os.urandom(2 * CHUNK + 10)
    identity, recipient = age.generate_identity()
    data = age.encrypt(plaintext, recipients=recipient)
    header_end = data.index(b"\n---")
    header_end = data.index(b"\n", header_end + 1) + 1
    # header, nonce, then the first full chunk (64 KiB + 16-byte tag) and nothing after it
    cut = data[: header_end + 16 + CHUNK + 16]
    with pytest.raises(age.AgePayloadError):
        age.decrypt(cut, identities=identity)
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(cut, [x25519.Identity.from_str(identity)])
