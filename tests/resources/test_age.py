"""The age format (resources/age.py): the community test vectors, interoperability with the
real `age` command-line tool in both directions, and the failures users must see as clear
errors (wrong passphrase, wrong key, truncated file, one flipped byte) without ever getting
partial plaintext back.
"""

from __future__ import annotations

import hashlib
import io
import os
import pty
import select
import shutil
import signal
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from resources import age

VECTORS_DIR = Path(__file__).parent / "vectors" / "age"

_POST_QUANTUM = "post-quantum mlkem768x25519 (hybrid) identities are not implemented by goalport"
UNSUPPORTED_VECTORS = {
    "armor_hybrid": _POST_QUANTUM,
    "hybrid": _POST_QUANTUM,
    "hybrid_and_x25519": _POST_QUANTUM,
    "hybrid_bad_tag": _POST_QUANTUM,
    "hybrid_currupted_enc_mlkem": _POST_QUANTUM,
    "hybrid_currupted_enc_x25519": _POST_QUANTUM,
    "hybrid_extra_argument": _POST_QUANTUM,
    "hybrid_grease": _POST_QUANTUM,
    "hybrid_identity": _POST_QUANTUM,
    "hybrid_long_file_key": _POST_QUANTUM,
    "hybrid_long_share": _POST_QUANTUM,
    "hybrid_low_order": _POST_QUANTUM,
    "hybrid_multiple_recipients": _POST_QUANTUM,
    "hybrid_no_match": _POST_QUANTUM,
    "hybrid_not_canonical_body": _POST_QUANTUM,
    "hybrid_not_canonical_enc": _POST_QUANTUM,
    "hybrid_short_share": _POST_QUANTUM,
    "hybrid_uppercase": _POST_QUANTUM,
}

EXPECTED_ERRORS = {
    "header failure": age.AgeHeaderError,
    "armor failure": age.AgeArmorError,
    "payload failure": age.AgePayloadError,
    "HMAC failure": age.AgeHeaderMacError,
    "no match": age.AgeNoMatchError,
}


@dataclass(frozen=True)
class Vector:
    name: str
    expect: str
    payload_sha256: str | None
    identities: tuple[str, ...]  # every identity the vector lists
    passphrase: str | None
    stored: bytes  # the file as stored in the vector, zlib-compressed for the large ones
    compressed: bool

    @property
    def data(self) -> bytes:
        return zlib.decompress(self.stored) if self.compressed else self.stored

    @property
    def x25519_identities(self) -> list[str]:
        # hybrid_x25519_arg lists a post-quantum identity beside the X25519 one it tests.
        return [i for i in self.identities if not i.startswith("AGE-SECRET-KEY-PQ-")]


def _load_vector(path: Path) -> Vector:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    return Vector(
        name=path.name,
        expect=fields["expect"][0],
        payload_sha256=fields.get("payload", [None])[0],
        identities=tuple(fields.get("identity", [])),
        passphrase=fields.get("passphrase", [None])[0],
        stored=body,
        compressed=fields.get("compressed") == ["zlib"],
    )


ALL_VECTORS = [_load_vector(p) for p in sorted(VECTORS_DIR.iterdir()) if p.name != "SOURCE.md"]
RUN_VECTORS = [v for v in ALL_VECTORS if v.name not in UNSUPPORTED_VECTORS]
SUCCESS_VECTORS = [v for v in RUN_VECTORS if v.expect == "success"]
FAILURE_VECTORS = [v for v in RUN_VECTORS if v.expect != "success"]


def test_only_post_quantum_vectors_are_excluded():
    assert len(ALL_VECTORS) == 143
    needs_post_quantum = {v.name for v in ALL_VECTORS if v.identities and not v.x25519_identities}
    assert set(UNSUPPORTED_VECTORS) == needs_post_quantum
    assert {v.expect for v in FAILURE_VECTORS} == set(EXPECTED_ERRORS)


@pytest.mark.parametrize("vector", SUCCESS_VECTORS, ids=lambda v: v.name)
def test_success_vector_decrypts_to_its_payload(vector: Vector):
    keys = {"identities": vector.x25519_identities, "passphrase": vector.passphrase}
    data = vector.data
    plaintext = age.decrypt(data, **keys)
    assert hashlib.sha256(plaintext).hexdigest() == vector.payload_sha256

    out = io.BytesIO()
    written = age.decrypt_stream(io.BytesIO(data), out, **keys)
    assert written == len(plaintext)
    assert out.getvalue() == plaintext


@pytest.mark.parametrize("vector", FAILURE_VECTORS, ids=lambda v: v.name)
def test_failure_vector_fails_with_its_kind_of_error(vector: Vector):
    keys = {"identities": vector.x25519_identities, "passphrase": vector.passphrase}
    expected = EXPECTED_ERRORS[vector.expect]
    data = vector.data
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        age.decrypt(data, **keys)
    assert str(caught.value)
    # e.g. scrypt_work_factor_23 (8 GiB of scrypt) is refused before any work is done
    assert time.monotonic() - started < 2

    out = io.BytesIO(b"")
    with pytest.raises(expected):
        age.decrypt_stream(io.BytesIO(data), out, **keys)
    assert out.getvalue() == b"", "a failed streaming decryption left plaintext behind"


# ---------------------------------------------------------------- keys and identity files

SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


def test_recipient_from_identity_matches_the_specification_example():
    assert age.recipient_from_identity(SPEC_IDENTITY) == SPEC_RECIPIENT
    assert age.validate_recipient(f"  {SPEC_RECIPIENT}\n") == SPEC_RECIPIENT


def test_generated_identities_are_distinct_and_consistent():
    identity, recipient = age.generate_identity()
    other, _ = age.generate_identity()
    assert identity != other
    assert identity.startswith("AGE-SECRET-KEY-1") and identity == identity.upper()
    assert recipient.startswith("age1") and len(recipient) == 62
    assert age.recipient_from_identity(identity) == recipient


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SPEC_RECIPIENT[:-1] + "q", "checksum"),
        (SPEC_RECIPIENT[:10] + SPEC_RECIPIENT[10:].upper(), "mixes upper and lower case"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK", "SSH keys are not supported"),
        ("age1pq1" + "q" * 60, "post-quantum"),
        (SPEC_IDENTITY, "secret identity, not a recipient"),
        ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "must start with 'age1'"),
    ],
)
def test_bad_recipients_are_refused_with_the_reason(text: str, message: str):
    with pytest.raises(age.AgeKeyError, match=message):
        age.validate_recipient(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SPEC_IDENTITY[:-1] + "Q", "checksum"),
        (SPEC_IDENTITY.lower(), "must start with AGE-SECRET-KEY-1"),
        (
            "AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG",
            "post-quantum",
        ),
        (SPEC_RECIPIENT, "must start with AGE-SECRET-KEY-1"),
    ],
)
def test_bad_identities_are_refused_with_the_reason(text: str, message: str):
    with pytest.raises(age.AgeKeyError, match=message):
        age.recipient_from_identity(text)


def test_identity_file_is_read_like_age_reads_it():
    identity, recipient = age.generate_identity()
    content = (
        f"# created: 2024-01-01T00:00:00Z\r\n# public key: {recipient}\r\n\r\n"
        f"{identity}\r\n\n# second key\n{SPEC_IDENTITY}\n"
    )
    assert age.parse_identity_file(content) == [identity, SPEC_IDENTITY]
    assert age.parse_identity_file(content.encode()) == [identity, SPEC_IDENTITY]


def test_identity_file_errors_name_the_line():
    with pytest.raises(age.AgeKeyError, match="line 3: .*checksum"):
        age.parse_identity_file(f"# key\n\n{SPEC_IDENTITY[:-1]}A\n")
    with pytest.raises(age.AgeKeyError, match="no identities"):
        age.parse_identity_file("# only a comment\n\n")
    with pytest.raises(age.AgeKeyError, match="itself encrypted"):
        age.parse_identity_file(age.encrypt(b"x", recipients=[SPEC_RECIPIENT], armor=True))


def test_format_identity_file_is_what_age_keygen_writes():
    import datetime as dt

    created = dt.datetime(2024, 5, 6, 9, 10, 11, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    text = age.format_identity_file(SPEC_IDENTITY, created, SPEC_RECIPIENT)
    assert text == (
        f"# created: 2024-05-06T07:10:11Z\n# public key: {SPEC_RECIPIENT}\n{SPEC_IDENTITY}\n"
    )
    assert age.parse_identity_file(text) == [SPEC_IDENTITY]
    with pytest.raises(age.AgeKeyError, match="does not belong"):
        age.format_identity_file(SPEC_IDENTITY, created, age.generate_identity()[1])


# ---------------------------------------------------------------- round trips

SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 200_000]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
def test_round_trip_to_recipients(size: int, armor: bool):
    plaintext = os.urandom(size)
    first, first_recipient = age.generate_identity()
    second, second_recipient = age.generate_identity()
    data = age.encrypt(plaintext, recipients=[first_recipient, second_recipient], armor=armor)
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n" if armor else b"age-")
    assert age.is_age_file(data[:64])
    assert age.decrypt(data, identities=[first]) == plaintext
    assert age.decrypt(data, identities=[second]) == plaintext


def test_streaming_round_trip_with_a_passphrase(tmp_path: Path):
    plaintext = os.urandom(5 * 65536 + 123)
    source, encrypted, restored = tmp_path / "in", tmp_path / "in.age", tmp_path / "out"
    source.write_bytes(plaintext)
    with source.open("rb") as src, encrypted.open("wb") as dst:
        assert age.encrypt_stream(src, dst, passphrase="pässword", work_factor=10) == len(plaintext)
    with encrypted.open("rb") as src, restored.open("wb") as dst:
        assert age.decrypt_stream(src, dst, passphrase="pässword") == len(plaintext)
    assert restored.read_bytes() == plaintext
    assert age.decrypt(encrypted.read_bytes(), passphrase="pässword") == plaintext


def test_encrypt_refuses_unusable_inputs():
    with pytest.raises(age.AgeKeyError, match="not both"):
        age.encrypt(b"x", recipients=[SPEC_RECIPIENT], passphrase="pw")
    with pytest.raises(age.AgeKeyError, match="nothing to encrypt to"):
        age.encrypt(b"x")
    with pytest.raises(age.AgeKeyError, match="empty"):
        age.encrypt(b"x", passphrase="")


# ---------------------------------------------------------------- clear failures

PLAINTEXT = os.urandom(2 * 65536 + 1000)


@pytest.fixture(scope="module")
def keyed_file() -> tuple[bytes, str]:
    identity, recipient = age.generate_identity()
    return age.encrypt(PLAINTEXT, recipients=[recipient]), identity


def test_wrong_passphrase_is_a_clear_error():
    data = age.encrypt(b"secret", passphrase="right", work_factor=10)
    with pytest.raises(age.AgeWrongPassphraseError, match="wrong passphrase"):
        age.decrypt(data, passphrase="wrong")
    with pytest.raises(age.AgeNoMatchError, match="no passphrase was given"):
        age.decrypt(data, identities=[SPEC_IDENTITY])


def test_work_factor_above_the_bound_is_refused():
    data = age.encrypt(b"secret", passphrase="pw", work_factor=12)
    with pytest.raises(age.AgeWorkFactorError, match="work factor 12 .*above 11"):
        age.decrypt(data, passphrase="pw", max_work_factor=11)
    assert age.decrypt(data, passphrase="pw", max_work_factor=12) == b"secret"


def test_wrong_key_is_a_clear_error(keyed_file):
    data, _ = keyed_file
    with pytest.raises(age.AgeNoMatchError, match="wrong key"):
        age.decrypt(data, identities=[age.generate_identity()[0]])
    with pytest.raises(age.AgeNoMatchError, match="no identity was given"):
        age.decrypt(data, passphrase="pw")


def _header_end(data: bytes) -> int:
    return data.index(b"\n", data.index(b"\n--- ") + 1) + 1


def test_truncated_file_is_a_clear_error(keyed_file):
    data, identity = keyed_file
    header_end = _header_end(data)
    payload_start = header_end + 16
    cuts = {
        20: age.AgeHeaderError,
        header_end - 5: age.AgeHeaderError,
        header_end + 8: age.AgeHeaderError,
        payload_start: age.AgeTruncatedError,
        payload_start + 65552: age.AgeTruncatedError,
        payload_start + 65552 + 100: age.AgePayloadError,
        len(data) - 1: age.AgePayloadError,
    }
    for cut, error in cuts.items():
        with pytest.raises(error, match="truncated") as caught:
            age.decrypt(data[:cut], identities=[identity])
        assert "truncated" in str(caught.value), cut


def test_every_flipped_byte_is_detected(keyed_file):
    data, identity = keyed_file
    header_end = _header_end(data)
    positions = list(range(header_end + 16 + 32)) + list(range(header_end, len(data), 997))
    positions += [len(data) - 1, header_end + 16 + 65552 - 1, header_end + 16 + 65552]
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        with pytest.raises(age.AgeError) as caught:
            age.decrypt(bytes(damaged), identities=[identity])
        assert str(caught.value), position


def test_flipped_byte_in_armor_is_detected():
    identity, recipient = age.generate_identity()
    data = age.encrypt(b"armored secret" * 100, recipients=[recipient], armor=True)
    for position in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        with pytest.raises(age.AgeError):
            age.decrypt(bytes(damaged), identities=[identity])


def test_failed_stream_decryption_leaves_no_plaintext(keyed_file, tmp_path: Path):
    data, identity = keyed_file
    damaged = bytearray(data)
    damaged[-1] ^= 0x01  # the first two chunks are genuine, only the last fails
    target = tmp_path / "restored"
    with target.open("wb") as dst, pytest.raises(age.AgePayloadError):
        age.decrypt_stream(io.BytesIO(bytes(damaged)), dst, identities=[identity])
    assert target.read_bytes() == b""


# ---------------------------------------------------------------- the real `age` tool


@pytest.fixture(scope="module")
def age_cli() -> str:
    path = shutil.which("age")
    assert path, "the age command-line tool is required: `apt-get install age` (make system-deps)"
    return path


def _run(*argv: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(argv, input=stdin, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def _run_with_terminal(argv: list[str], answers: list[tuple[bytes, bytes]]) -> int:
    """Run `argv` on a pseudo-terminal, typing each answer when its prompt appears.

    The age tool reads passphrases from the terminal only, never from a pipe or variable.
    """
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes `age`
        os.execvp(argv[0], argv)
    seen, pending = b"", list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(fd, 1024)
            except OSError:  # the child closed the terminal: it has exited
                break
            if not data:
                break
            seen += data
            if pending and pending[0][0] in seen:
                seen = seen.split(pending[0][0], 1)[1]
                os.write(fd, pending.pop(0)[1] + b"\n")
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
def test_age_cli_decrypts_what_goalport_encrypts_to_a_recipient(age_cli, tmp_path, armor):
    identity, recipient = age.generate_identity()
    identity_file = tmp_path / "key.txt"
    identity_file.write_text(age.format_identity_file(identity))
    plaintext = os.urandom(3 * 65536 + 17)
    encrypted = tmp_path / "backup.age"
    encrypted.write_bytes(age.encrypt(plaintext, recipients=[recipient], armor=armor))
    assert _run(age_cli, "-d", "-i", str(identity_file), str(encrypted)) == plaintext

    assert _run("age-keygen", "-y", str(identity_file)).decode().strip() == recipient


def test_age_cli_decrypts_what_goalport_encrypts_with_a_passphrase(age_cli, tmp_path):
    plaintext = os.urandom(70_000)
    encrypted, restored = tmp_path / "export.age", tmp_path / "export"
    encrypted.write_bytes(age.encrypt(plaintext, passphrase="correct horse", work_factor=14))
    status = _run_with_terminal(
        [age_cli, "-d", "-o", str(restored), str(encrypted)],
        [(b"Enter passphrase", b"correct horse")],
    )
    assert status == 0
    assert restored.read_bytes() == plaintext


def test_goalport_decrypts_what_age_cli_encrypts_to_a_recipient(age_cli, tmp_path):
    identity_file = tmp_path / "key.txt"
    _run("age-keygen", "-o", str(identity_file))
    identities = age.parse_identity_file(identity_file.read_text())
    recipient = age.recipient_from_identity(identities[0])
    plaintext = os.urandom(2 * 65536)
    binary = _run(age_cli, "-r", recipient, stdin=plaintext)
    armored = _run(age_cli, "-a", "-r", recipient, "-r", SPEC_RECIPIENT, stdin=plaintext)
    assert armored.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert age.decrypt(binary, identities=identities) == plaintext
    assert age.decrypt(armored, identities=identities) == plaintext
    assert age.decrypt(armored, identities=[SPEC_IDENTITY]) == plaintext


@pytest.mark.slow
def test_goalport_decrypts_what_age_cli_encrypts_with_a_passphrase(age_cli, tmp_path):
    source, encrypted = tmp_path / "plain", tmp_path / "plain.age"
    plaintext = os.urandom(100_000)
    source.write_bytes(plaintext)
    status = _run_with_terminal(
        [age_cli, "-p", "-o", str(encrypted), str(source)],
        [(b"Enter passphrase", b"hunter2 hunter2"), (b"Confirm passphrase", b"hunter2 hunter2")],
    )
    assert status == 0
    data = encrypted.read_bytes()
    assert b"\n-> scrypt " in data
    assert age.decrypt(data, passphrase="hunter2 hunter2") == plaintext
    with pytest.raises(age.AgeWrongPassphraseError):
        age.decrypt(data, passphrase="hunter3 hunter3")


@pytest.mark.slow
def test_an_x25519_recipient_whose_data_starts_with_tag_is_not_taken_for_a_tag_recipient():
    """Found by a 1-in-32,768 failure: the bech32 data of a random key can begin "tag"."""
    while True:
        identity, recipient = age.generate_identity()
        if recipient.startswith("age1tag"):
            break
    assert age.validate_recipient(recipient) == recipient
    assert age.decrypt(age.encrypt(b"x", recipients=[recipient]), identities=[identity]) == b"x"
    with pytest.raises(age.AgeKeyError, match="hardware-tag"):
        age.validate_recipient("age1tag1" + recipient[len("age1tag") :])
