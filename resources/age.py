"""The age file format (age-encryption.org/v1) on top of `cryptography`'s primitives.

goalport's backups and encrypted exports are age files, so that their owners can open them
with the standard `age` tool and no goalport at all. This module is the whole format:
X25519 recipients and identities (`age1...` / `AGE-SECRET-KEY-1...`, their Bech32 in
`resources.bech32`), scrypt passphrases, the header and its MAC, the STREAM payload in
64 KiB chunks, and the ASCII armor. Decryption is strict in the way the specification and
its test vectors require (canonical base64, exact stanza shapes, no data after the final
chunk) and fails with an `AgeError` subclass that says what is wrong; `decrypt` never
returns partial plaintext.

Why one module of about 950 lines: it is one specification, read against its test vectors
(tests/resources/vectors/age) section by section, and its parts share one error hierarchy
and private primitives (canonical base64, HKDF labels, the buffered reader that both the
header parser and the armor decoder consume). Split into header, armor and payload
modules, each would import the others' private names, and every caller, which uses the
public names as `age.X` (a dozen modules), would have to know which part holds which
error. Only Bech32, a separate specification with no age in it, lives apart.

Post-quantum (mlkem768x25519), tagged, plugin and SSH recipients are not implemented: their
stanzas are skipped like any unknown stanza, and their keys are refused with a clear error.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from resources import bech32
from resources.schema import as_utc

__all__ = [
    "AgeArmorError",
    "AgeError",
    "AgeHeaderError",
    "AgeHeaderMacError",
    "AgeKeyError",
    "AgeNoMatchError",
    "AgePayloadError",
    "AgeTruncatedError",
    "AgeWorkFactorError",
    "AgeWrongPassphraseError",
    "DEFAULT_MAX_WORK_FACTOR",
    "DEFAULT_WORK_FACTOR",
    "decrypt",
    "decrypt_stream",
    "encrypt",
    "encrypt_stream",
    "format_identity_file",
    "generate_identity",
    "is_age_file",
    "parse_identity_file",
    "recipient_from_identity",
    "validate_recipient",
]

DEFAULT_WORK_FACTOR = 18  # what `age -p` uses: about a second and 256 MiB
DEFAULT_MAX_WORK_FACTOR = 22  # what `age -d` accepts: 4 GiB and many seconds

_VERSION_PREFIX = b"age-encryption.org/"
_INTRO = b"age-encryption.org/v1\n"
_FILE_KEY_SIZE = 16
_NONCE_SIZE = 16
_TAG_SIZE = 16
_CHUNK_SIZE = 64 * 1024
_ENC_CHUNK_SIZE = _CHUNK_SIZE + _TAG_SIZE
_ZERO_NONCE = bytes(12)
_WRAPPED_KEY_SIZE = _FILE_KEY_SIZE + _TAG_SIZE
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_SCRYPT_SALT_SIZE = 16
_COLUMNS = 64
_MAX_HEADER_LINE = 16 * 1024
_MAX_HEADER_SIZE = 1024 * 1024

_ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
_ARMOR_BYTES_PER_LINE = _COLUMNS // 4 * 3
_ARMOR_MAX_WHITESPACE = 1024

_RECIPIENT_HRP = "age"
_IDENTITY_HRP = "AGE-SECRET-KEY-"
_MAX_IDENTITY_FILE = 16 * 1024 * 1024

_WORK_FACTOR = re.compile(r"[1-9][0-9]*")
_RAW_BASE64 = re.compile(rb"[A-Za-z0-9+/]*")


# ---------------------------------------------------------------- errors


class AgeError(Exception):
    """An age file or key could not be used; the message says what was wrong."""


class AgeKeyError(AgeError, ValueError):
    """A recipient, identity, identity file or passphrase given to us is not usable."""


class AgeArmorError(AgeError):
    """The ASCII armor (-----BEGIN AGE ENCRYPTED FILE-----) is malformed."""


class AgeHeaderError(AgeError):
    """The header is malformed, unsupported, or cut short."""


class AgeWorkFactorError(AgeHeaderError):
    """The file asks for more scrypt work than we agreed to spend; refused before any work."""


class AgeHeaderMacError(AgeError):
    """The header MAC does not match: the header was altered after encryption."""


class AgeNoMatchError(AgeError):
    """None of the identities (or the passphrase) given opens the file."""


class AgeWrongPassphraseError(AgeNoMatchError):
    """The passphrase does not open this passphrase-encrypted file."""


class AgePayloadError(AgeError):
    """The encrypted payload fails authentication: corrupted, altered or truncated."""


class AgeTruncatedError(AgePayloadError):
    """The payload ends before its final chunk: the file was cut short."""


# ---------------------------------------------------------------- small primitives


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _b64encode_raw(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _b64decode_raw(text: bytes, what: str) -> bytes:
    """Unpadded, canonical base64 as the header requires; anything else is a header error."""
    if not _RAW_BASE64.fullmatch(text) or len(text) % 4 == 1:
        raise AgeHeaderError(f"{what} is not valid unpadded base64")
    decoded = base64.b64decode(text + b"=" * (-len(text) % 4))
    if _b64encode_raw(decoded) != text:
        raise AgeHeaderError(f"{what} is not canonical base64")
    return decoded


def _chunk_nonce(counter: int, last: bool) -> bytes:
    if counter >= 1 << 88:
        raise AgePayloadError("the payload has more chunks than the format can count")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# ---------------------------------------------------------------- keys


def _describe_unsupported_key(text: str) -> str | None:
    if text.startswith("AGE-SECRET-KEY-PQ-"):
        return "post-quantum (mlkem768x25519) identities are not supported by goalport"
    if text.startswith("AGE-PLUGIN-"):
        return "age plugin identities are not supported by goalport"
    # Their human-readable parts end in "1" ("age1pq1...", "age1tag1..."): plain "age1tag..."
    # is an ordinary X25519 recipient whose data happens to start with "tag".
    if text.startswith(("age1pq1", "age1tag1")):
        return "post-quantum and hardware-tag recipients are not supported by goalport"
    if text.startswith(("ssh-", "ecdsa-sha2-")):
        return "SSH keys are not supported by goalport; use an age X25519 key (age-keygen)"
    if text.startswith("-----BEGIN") and "PRIVATE KEY" in text:
        return "SSH/PEM private keys are not supported by goalport; use an age identity"
    return None


def _parse_identity(identity: str) -> X25519PrivateKey:
    text = identity.strip()
    unsupported = _describe_unsupported_key(text)
    if unsupported:
        raise AgeKeyError(unsupported)
    if not text.startswith(_IDENTITY_HRP):
        raise AgeKeyError("not an age identity: it must start with AGE-SECRET-KEY-1")
    try:
        hrp, secret = bech32.decode(text)
    except ValueError as exc:
        raise AgeKeyError(f"malformed age identity: it {exc}") from None
    if hrp != _IDENTITY_HRP or len(secret) != 32:
        raise AgeKeyError(
            "malformed age identity: it must be AGE-SECRET-KEY-1 and 32 bytes, uppercase"
        )
    return X25519PrivateKey.from_private_bytes(secret)


def _parse_recipient(recipient: str) -> bytes:
    text = recipient.strip()
    unsupported = _describe_unsupported_key(text)
    if unsupported:
        raise AgeKeyError(unsupported)
    if text.startswith("AGE-SECRET-KEY-"):
        raise AgeKeyError(
            "this is a secret identity, not a recipient: give the public key (age1...)"
        )
    if not text.lower().startswith(_RECIPIENT_HRP + "1"):
        raise AgeKeyError(f"not an age recipient ({text[:12]!r}...): it must start with 'age1'")
    try:
        hrp, public = bech32.decode(text)
    except ValueError as exc:
        raise AgeKeyError(f"malformed age recipient ({text[:12]}...): it {exc}") from None
    if hrp != _RECIPIENT_HRP:
        raise AgeKeyError(f"not an age X25519 recipient: it must start with 'age1', not {hrp!r}")
    if len(public) != 32:
        raise AgeKeyError("malformed age recipient: an X25519 public key is 32 bytes")
    return public


def _public_bytes(identity: X25519PrivateKey) -> bytes:
    return identity.public_key().public_bytes_raw()


def generate_identity() -> tuple[str, str]:
    """A fresh X25519 key pair: (identity `AGE-SECRET-KEY-1...`, recipient `age1...`)."""
    key = X25519PrivateKey.generate()
    identity = bech32.encode(_IDENTITY_HRP.lower(), key.private_bytes_raw()).upper()
    return identity, bech32.encode(_RECIPIENT_HRP, _public_bytes(key))


def recipient_from_identity(identity: str) -> str:
    """The public `age1...` recipient of an `AGE-SECRET-KEY-1...` identity."""
    return bech32.encode(_RECIPIENT_HRP, _public_bytes(_parse_identity(identity)))


def validate_recipient(recipient: str) -> str:
    """The recipient, stripped, if it is an `age1...` X25519 public key; else AgeKeyError."""
    _parse_recipient(recipient)
    return recipient.strip()


def parse_identity_file(content: str | bytes) -> list[str]:
    """The identities of an identity file, read the way `age -d -i FILE` reads it.

    One identity per line; blank lines and lines starting with `#` are ignored; CRLF line
    ends are accepted. Errors name the line.
    """
    if isinstance(content, bytes):
        if len(content) > _MAX_IDENTITY_FILE:
            raise AgeKeyError("identity file is larger than 16 MiB")
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError:
            raise AgeKeyError("identity file is not text (UTF-8)") from None
    if content.lstrip().startswith(("age-encryption.org/", "-----BEGIN AGE ENCRYPTED FILE")):
        raise AgeKeyError(
            "this identity file is itself encrypted: decrypt it first (age -d) and pass the result"
        )
    identities = []
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line or line.startswith("#"):
            continue
        try:
            _parse_identity(line)
        except AgeKeyError as exc:
            raise AgeKeyError(f"identity file, line {number}: {exc}") from None
        identities.append(line.strip())
    if not identities:
        raise AgeKeyError("identity file contains no identities (only comments or blank lines)")
    return identities


def format_identity_file(
    identity: str, created: dt.datetime | None = None, recipient: str | None = None
) -> str:
    """An identity file as `age-keygen` writes it, readable by `age -d -i FILE`.

    `created` defaults to now (UTC; a naive datetime is taken as UTC). `recipient`, if
    given, must be the identity's own public key: a wrong comment would mislead a user.
    """
    derived = recipient_from_identity(identity)
    if recipient is not None and recipient.strip() != derived:
        raise AgeKeyError("the recipient given does not belong to this identity")
    created = as_utc(created) or dt.datetime.now(dt.UTC)
    stamp = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"# created: {stamp}\n# public key: {derived}\n{identity.strip()}\n"


# ---------------------------------------------------------------- reading helpers


class _Source:
    """Buffered reads over a `read(n)` callable: header lines, then exact-size chunks."""

    def __init__(self, read: Callable[[int], bytes]):
        self._read = read
        self._buffer = bytearray()
        self._eof = False

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size and not self._eof:
            data = self._read(max(size - len(self._buffer), _ENC_CHUNK_SIZE))
            if data:
                self._buffer += data
            else:
                self._eof = True

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return bytes(self._buffer[:size])

    def read_exact(self, size: int) -> bytes:
        """`size` bytes, or fewer only at the end of the input."""
        self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, limit: int) -> bytes | None:
        """The next line with its `\\n`; the rest at end of input; None if over `limit`."""
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if end >= 0:
                if end + 1 > limit:
                    return None
                return self.read_exact(end + 1)
            if len(self._buffer) >= limit:
                return None
            if self._eof:
                return self.read_exact(len(self._buffer))
            searched = len(self._buffer)
            self._fill(len(self._buffer) + 1)


class _ArmorDecoder:
    """Strict PEM decoding of an armored age file, line by line (64 columns, padded base64).

    Accepts whitespace before and after the block and LF or CRLF line ends; refuses
    everything else that would make the armor malleable (RFC 7468 strict, canonical base64).
    """

    def __init__(self, source: _Source):
        self._source = source
        self._decoded = bytearray()
        self._line_number = 0
        self._started = False
        self._done = False

    def read(self, size: int) -> bytes:
        if not self._started:
            self._start()
        while len(self._decoded) < size and not self._done:
            self._decode_line()
        data = bytes(self._decoded[:size])
        del self._decoded[:size]
        return data

    def _line(self) -> bytes:
        line = self._source.readline(_COLUMNS + 2)
        self._line_number += 1
        if line is None:
            raise AgeArmorError(f"armor line {self._line_number} is longer than 64 columns")
        if not line:
            raise AgeArmorError("the armored file ends without its END line (truncated?)")
        if line.endswith(b"\n"):
            line = line[:-1].removesuffix(b"\r")
        return line

    def _start(self) -> None:
        skipped = 0
        while True:
            line = self._source.readline(_ARMOR_MAX_WHITESPACE + len(_ARMOR_BEGIN) + 2)
            self._line_number += 1
            if line is None or skipped > _ARMOR_MAX_WHITESPACE:
                raise AgeArmorError("too much text before the BEGIN line")
            if line and not line.strip():
                skipped += len(line)
                continue
            if line.rstrip(b"\n").removesuffix(b"\r") != _ARMOR_BEGIN:
                raise AgeArmorError(
                    f"armor line {self._line_number} is not exactly "
                    f"'{_ARMOR_BEGIN.decode()}': {line[:40]!r}"
                )
            self._started = True
            return

    def _decode_line(self) -> None:
        line = self._line()
        if line == _ARMOR_END:
            self._finish()
            return
        if not line:
            raise AgeArmorError(f"armor line {self._line_number} is empty")
        if len(line) > _COLUMNS:
            raise AgeArmorError(f"armor line {self._line_number} is longer than 64 columns")
        try:
            data = binascii.a2b_base64(line, strict_mode=True)
        except binascii.Error as exc:
            raise AgeArmorError(
                f"armor line {self._line_number} is not valid padded base64 ({exc})"
            ) from None
        self._decoded += data
        if len(data) < _ARMOR_BYTES_PER_LINE:
            if base64.b64encode(data) != line:
                raise AgeArmorError(f"armor line {self._line_number} is not canonical base64")
            if self._line() != _ARMOR_END:
                raise AgeArmorError(
                    f"armor line {self._line_number - 1} is shorter than 64 columns but is not "
                    "followed by the END line"
                )
            self._finish()

    def _finish(self) -> None:
        rest = self._source.read_exact(_ARMOR_MAX_WHITESPACE + 1)
        if rest.strip():
            raise AgeArmorError("there is data after the END line of the armored file")
        if len(rest) > _ARMOR_MAX_WHITESPACE:
            raise AgeArmorError("too much whitespace after the END line of the armored file")
        self._done = True


def _open_source(read: Callable[[int], bytes]) -> _Source:
    """The binary age file behind `read`, seeing through the ASCII armor if there is one."""
    raw = _Source(read)
    head = raw.peek(_ARMOR_MAX_WHITESPACE + len(_ARMOR_BEGIN))
    if head.startswith(_VERSION_PREFIX):
        return raw
    if head.lstrip().startswith(b"-----") or _ARMOR_BEGIN in head:
        return _Source(_ArmorDecoder(raw).read)
    return raw


def is_age_file(head: bytes) -> bool:
    """Whether `head` (the first bytes of a file; 64 are plenty) starts like an age file."""
    return head.startswith(_VERSION_PREFIX) or head.lstrip().startswith(_ARMOR_BEGIN)


# ---------------------------------------------------------------- header


@dataclass(frozen=True)
class _Stanza:
    args: tuple[str, ...]  # args[0] is the stanza type
    body: bytes


@dataclass(frozen=True)
class _Header:
    stanzas: tuple[_Stanza, ...]
    mac: bytes
    mac_input: bytes  # the header up to and including "---"


def _read_header(source: _Source) -> _Header:
    head = source.peek(len(_VERSION_PREFIX))
    if not head:
        raise AgeHeaderError("the file is empty: it is not an age file")
    if head != _VERSION_PREFIX:
        raise AgeHeaderError("not an age file: it does not start with 'age-encryption.org/'")
    raw = bytearray()

    def next_line() -> bytes:
        line = source.readline(_MAX_HEADER_LINE)
        if line is None:
            raise AgeHeaderError("a header line is longer than 16 KiB: the file is damaged")
        if not line.endswith(b"\n"):
            raise AgeHeaderError("the file ends inside the header (truncated?)")
        raw.extend(line)
        if len(raw) > _MAX_HEADER_SIZE:
            raise AgeHeaderError("the header is larger than 1 MiB: the file is damaged")
        return line[:-1]

    version = next_line()
    if version != _INTRO[:-1]:
        if version.endswith(b"\r"):
            raise AgeHeaderError(
                "the header lines end in CRLF: the file was mangled by a text-mode transfer"
            )
        raise AgeHeaderError(
            f"unsupported age format version {version[len(_VERSION_PREFIX) :][:20]!r}; "
            "goalport reads v1"
        )
    stanzas: list[_Stanza] = []
    while True:
        line = next_line()
        if line.startswith(b"-> "):
            stanzas.append(_read_stanza(line, next_line, len(stanzas) + 1))
        elif line.startswith(b"---"):
            mac_input = bytes(raw[: len(raw) - len(line) - 1 + 3])
            if not line.startswith(b"--- "):
                raise AgeHeaderError("the MAC line must be '--- ' followed by the MAC")
            mac = _b64decode_raw(line[4:], "the header MAC")
            if len(mac) != 32:
                raise AgeHeaderError("the header MAC must be 32 bytes")
            break
        else:
            raise AgeHeaderError(
                f"unexpected header line {line[:40]!r}: expected '-> ' (a recipient stanza) "
                "or '--- ' (the MAC)"
            )
    if not stanzas:
        raise AgeHeaderError("the header has no recipient stanzas")
    return _Header(tuple(stanzas), mac, mac_input)


def _read_stanza(arg_line: bytes, next_line: Callable[[], bytes], number: int) -> _Stanza:
    args = arg_line[3:].split(b" ")
    for arg in args:
        if not arg or any(not 33 <= c <= 126 for c in arg):
            raise AgeHeaderError(
                f"stanza {number} has an empty argument or one with characters outside "
                "printable ASCII"
            )
    body_lines: list[bytes] = []
    while True:
        line = next_line()
        if line.startswith((b"-> ", b"---")) and not body_lines:
            raise AgeHeaderError(
                f"stanza {number} ({args[0].decode()}) has no body: every stanza ends with a "
                "line shorter than 64 columns, even if empty"
            )
        if len(line) > _COLUMNS:
            raise AgeHeaderError(f"stanza {number} has a body line longer than 64 columns")
        body_lines.append(line)
        if len(line) < _COLUMNS:
            break
    body = _b64decode_raw(b"".join(body_lines), f"the body of stanza {number}")
    return _Stanza(tuple(a.decode("ascii") for a in args), body)


def _x25519_share(stanza: _Stanza) -> bytes:
    if len(stanza.args) != 2:
        raise AgeHeaderError("an X25519 stanza must have exactly one argument (the share)")
    share = _b64decode_raw(stanza.args[1].encode(), "the X25519 share")
    if len(share) != 32:
        raise AgeHeaderError("the X25519 share must be 32 bytes")
    if len(stanza.body) != _WRAPPED_KEY_SIZE:
        raise AgeHeaderError("the X25519 stanza body must be a 16-byte wrapped file key")
    return share


def _scrypt_parameters(stanza: _Stanza) -> tuple[bytes, int]:
    if len(stanza.args) != 3:
        raise AgeHeaderError("an scrypt stanza must have exactly two arguments (salt, work factor)")
    salt = _b64decode_raw(stanza.args[1].encode(), "the scrypt salt")
    if len(salt) != _SCRYPT_SALT_SIZE:
        raise AgeHeaderError("the scrypt salt must be 16 bytes")
    if not _WORK_FACTOR.fullmatch(stanza.args[2]) or len(stanza.args[2]) > 2:
        raise AgeHeaderError(
            f"the scrypt work factor {stanza.args[2][:20]!r} is not a decimal number from 1 to 99"
        )
    if len(stanza.body) != _WRAPPED_KEY_SIZE:
        raise AgeHeaderError("the scrypt stanza body must be a 16-byte wrapped file key")
    return salt, int(stanza.args[2])


def _check_stanzas(stanzas: Sequence[_Stanza]) -> None:
    """Reject malformed stanzas of the types we know, and scrypt mixed with anything."""
    for stanza in stanzas:
        if stanza.args[0] == "X25519":
            _x25519_share(stanza)
        elif stanza.args[0] == "scrypt":
            _scrypt_parameters(stanza)
    if len(stanzas) > 1 and any(s.args[0] == "scrypt" for s in stanzas):
        raise AgeHeaderError("a passphrase (scrypt) stanza must be the only stanza in the header")


def _unwrap_with_passphrase(stanza: _Stanza, passphrase: str, max_work_factor: int) -> bytes:
    salt, work_factor = _scrypt_parameters(stanza)
    if work_factor > max_work_factor:
        raise AgeWorkFactorError(
            f"the file asks for scrypt work factor {work_factor} (about "
            f"{_human_bytes(1024 << work_factor)} of memory); refusing anything above "
            f"{max_work_factor}. If you trust this file, raise max_work_factor."
        )
    key = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1).derive(
        passphrase.encode("utf-8")
    )
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, stanza.body, None)
    except InvalidTag:
        raise AgeWrongPassphraseError("wrong passphrase: it does not open this file") from None


def _unwrap_with_identity(stanza: _Stanza, identity: X25519PrivateKey) -> bytes | None:
    share = _x25519_share(stanza)
    try:
        shared = identity.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:
        shared = bytes(32)
    if shared == bytes(32):
        raise AgeHeaderError(
            "an X25519 stanza carries a low-order share (all-zero shared secret): "
            "the file was crafted to be insecure"
        )
    wrap_key = _hkdf(shared, share + _public_bytes(identity), _X25519_LABEL)
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
    except InvalidTag:
        return None


def _unwrap_file_key(
    header: _Header,
    identities: Sequence[X25519PrivateKey],
    passphrase: str | None,
    max_work_factor: int,
) -> bytes:
    _check_stanzas(header.stanzas)
    types = [s.args[0] for s in header.stanzas]
    if types == ["scrypt"]:
        if passphrase is None:
            raise AgeNoMatchError(
                "this file is encrypted with a passphrase, and no passphrase was given"
            )
        return _unwrap_with_passphrase(header.stanzas[0], passphrase, max_work_factor)
    for stanza in header.stanzas:
        if stanza.args[0] != "X25519":
            continue
        for identity in identities:
            file_key = _unwrap_with_identity(stanza, identity)
            if file_key is not None:
                return file_key
    known = types.count("X25519")
    if not known:
        unsupported = ", ".join(sorted({t[:40] for t in types}))
        raise AgeNoMatchError(
            f"this file is encrypted only to recipient types goalport does not support ({unsupported})"
        )
    if not identities:
        raise AgeNoMatchError(
            "this file is encrypted to public keys (recipients), and no identity was given"
        )
    raise AgeNoMatchError(
        f"no identity given matches: the file is encrypted to {known} X25519 recipient(s)"
        + (f" and {len(types) - known} of other types" if len(types) > known else "")
        + f", none of which belongs to the {len(identities)} identity(ies) given (wrong key?)"
    )


def _human_bytes(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} {unit}"
        size //= 1024
    raise AssertionError("unreachable")


def _verify_mac(header: _Header, file_key: bytes) -> None:
    expected = hmac.digest(_hkdf(file_key, b"", b"header"), header.mac_input, "sha256")
    if not hmac.compare_digest(expected, header.mac):
        raise AgeHeaderMacError(
            "the header MAC does not match: the header was altered after the file was encrypted"
        )


def _build_header(file_key: bytes, stanzas: Sequence[tuple[Sequence[bytes], bytes]]) -> bytes:
    out = bytearray(_INTRO)
    for args, body in stanzas:
        out += b"-> " + b" ".join(args) + b"\n"
        encoded = _b64encode_raw(body)
        for start in range(0, len(encoded), _COLUMNS):
            out += encoded[start : start + _COLUMNS] + b"\n"
        if len(encoded) % _COLUMNS == 0:
            out += b"\n"
    out += b"---"
    mac = hmac.digest(_hkdf(file_key, b"", b"header"), bytes(out), "sha256")
    return bytes(out + b" " + _b64encode_raw(mac) + b"\n")


# ---------------------------------------------------------------- payload


def _open_chunk(aead: ChaCha20Poly1305, counter: int, chunk: bytes, last: bool) -> bytes | None:
    try:
        return aead.decrypt(_chunk_nonce(counter, last), chunk, None)
    except InvalidTag:
        return None


def _open_payload(source: _Source, file_key: bytes, nonce: bytes) -> Iterator[bytes]:
    """Authenticated plaintext chunks; raises at the first chunk that is not genuine."""
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    counter = 0
    chunk = source.read_exact(_ENC_CHUNK_SIZE)
    if not chunk:
        raise AgeTruncatedError(
            "the file is truncated: it ends right after its header, without the payload"
        )
    while True:
        following = source.read_exact(_ENC_CHUNK_SIZE) if len(chunk) == _ENC_CHUNK_SIZE else b""
        if following:
            plain = _open_chunk(aead, counter, chunk, last=False)
            if plain is None:
                if _open_chunk(aead, counter, chunk, last=True) is not None:
                    raise AgePayloadError(
                        f"there is data after the final chunk (chunk {counter}): "
                        "the file was altered or concatenated"
                    )
                raise AgePayloadError(
                    f"payload chunk {counter} fails authentication: the file is corrupted or "
                    "was altered"
                )
            yield plain
            chunk, counter = following, counter + 1
            continue
        plain = _open_chunk(aead, counter, chunk, last=True)
        if plain is None:
            if _open_chunk(aead, counter, chunk, last=False) is not None:
                raise AgeTruncatedError(
                    f"the file is truncated: it ends after chunk {counter}, before its final chunk"
                )
            raise AgePayloadError(
                f"the last payload chunk (chunk {counter}) fails authentication: the file is "
                "truncated or corrupted"
            )
        if not plain and counter > 0:
            raise AgePayloadError("the final chunk is empty, which the age format forbids")
        yield plain
        return


def _seal_payload(file_key: bytes, nonce: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Encrypted chunks; `chunks` yields full 64 KiB pieces, then at most one shorter one."""
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    counter = 0
    current = next(chunks, b"")
    for following in chunks:
        yield aead.encrypt(_chunk_nonce(counter, False), current, None)
        current, counter = following, counter + 1
    yield aead.encrypt(_chunk_nonce(counter, True), current, None)


# ---------------------------------------------------------------- armor writing


class _ArmorWriter:
    """Writes bytes to `dst` as strict PEM: 64-column padded base64 between BEGIN and END."""

    def __init__(self, dst: BinaryIO):
        self._dst = dst
        self._pending = bytearray()
        dst.write(_ARMOR_BEGIN + b"\n")

    def write(self, data: bytes) -> None:
        self._pending += data
        whole = len(self._pending) - len(self._pending) % _ARMOR_BYTES_PER_LINE
        if whole:
            self._write_lines(bytes(self._pending[:whole]))
            del self._pending[:whole]

    def _write_lines(self, data: bytes) -> None:
        encoded = base64.b64encode(data)
        lines = [encoded[i : i + _COLUMNS] for i in range(0, len(encoded), _COLUMNS)]
        self._dst.write(b"\n".join(lines) + b"\n")

    def close(self) -> None:
        if self._pending:
            self._write_lines(bytes(self._pending))
        self._dst.write(_ARMOR_END + b"\n")


# ---------------------------------------------------------------- public API


def _as_list(values: str | Iterable[str], what: str) -> list[str]:
    if isinstance(values, str):
        return [values]
    values = list(values)
    if not all(isinstance(v, str) for v in values):
        raise TypeError(f"{what} must be strings")
    return values


def _new_header(
    recipients: Sequence[str], passphrase: str | None, work_factor: int
) -> tuple[bytes, bytes]:
    """(file key, header bytes) for the given recipients or passphrase."""
    if passphrase is not None and recipients:
        raise AgeKeyError(
            "encrypt either with a passphrase or to recipients, not both: the age format "
            "keeps a passphrase stanza alone in the header"
        )
    if passphrase is None and not recipients:
        raise AgeKeyError("nothing to encrypt to: give recipients or a passphrase")
    file_key = os.urandom(_FILE_KEY_SIZE)
    stanzas: list[tuple[list[bytes], bytes]] = []
    if passphrase is not None:
        if not passphrase:
            raise AgeKeyError("the passphrase is empty")
        if not 1 <= work_factor <= 30:
            raise AgeKeyError("the scrypt work factor must be between 1 and 30")
        salt = os.urandom(_SCRYPT_SALT_SIZE)
        key = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1).derive(
            passphrase.encode("utf-8")
        )
        body = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)
        stanzas.append(([b"scrypt", _b64encode_raw(salt), str(work_factor).encode()], body))
    for recipient in dict.fromkeys(r.strip() for r in recipients):
        public = _parse_recipient(recipient)
        ephemeral = X25519PrivateKey.generate()
        share = _public_bytes(ephemeral)
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
        wrap_key = _hkdf(shared, share + public, _X25519_LABEL)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        stanzas.append(([b"X25519", _b64encode_raw(share)], body))
    return file_key, _build_header(file_key, stanzas)


def _read_exact_chunks(read: Callable[[int], bytes]) -> Iterator[bytes]:
    source = _Source(read)
    while chunk := source.read_exact(_CHUNK_SIZE):
        yield chunk


def encrypt(
    plaintext: bytes,
    *,
    recipients: str | Sequence[str] = (),
    passphrase: str | None = None,
    armor: bool = False,
    work_factor: int = DEFAULT_WORK_FACTOR,
) -> bytes:
    """`plaintext` as an age file, to X25519 `recipients` (age1...) or with a `passphrase`.

    `armor=True` gives the ASCII-armored (PEM) form. `work_factor` is scrypt's log2(N) for
    passphrases; 18 is what `age -p` uses.
    """
    out = io.BytesIO()
    encrypt_stream(
        io.BytesIO(plaintext),
        out,
        recipients=recipients,
        passphrase=passphrase,
        armor=armor,
        work_factor=work_factor,
    )
    return out.getvalue()


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    recipients: str | Sequence[str] = (),
    passphrase: str | None = None,
    armor: bool = False,
    work_factor: int = DEFAULT_WORK_FACTOR,
) -> int:
    """Encrypt everything `src` reads into `dst`, one 64 KiB chunk at a time.

    Memory stays constant whatever the size. Returns the number of plaintext bytes.
    """
    file_key, header = _new_header(_as_list(recipients, "recipients"), passphrase, work_factor)
    sink = _ArmorWriter(dst) if armor else dst
    sink.write(header)
    nonce = os.urandom(_NONCE_SIZE)
    sink.write(nonce)
    total = 0

    def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal total
        for chunk in chunks:
            total += len(chunk)
            yield chunk

    for sealed in _seal_payload(file_key, nonce, counted(_read_exact_chunks(src.read))):
        sink.write(sealed)
    if armor:
        sink.close()
    return total


def _begin_decryption(
    read: Callable[[int], bytes],
    identities: str | Sequence[str],
    passphrase: str | None,
    max_work_factor: int,
) -> Iterator[bytes]:
    keys = [_parse_identity(i) for i in _as_list(identities, "identities")]
    source = _open_source(read)
    header = _read_header(source)
    nonce = source.read_exact(_NONCE_SIZE)
    if len(nonce) < _NONCE_SIZE:
        raise AgeHeaderError(
            "the file is truncated: it ends right after its header, without the payload nonce"
        )
    file_key = _unwrap_file_key(header, keys, passphrase, max_work_factor)
    if len(file_key) != _FILE_KEY_SIZE:
        raise AgeHeaderError("the unwrapped file key is not 16 bytes")
    _verify_mac(header, file_key)
    return _open_payload(source, file_key, nonce)


def decrypt(
    data: bytes,
    *,
    identities: str | Sequence[str] = (),
    passphrase: str | None = None,
    max_work_factor: int = DEFAULT_MAX_WORK_FACTOR,
) -> bytes:
    """The plaintext of an age file (binary or armored), or an AgeError saying why not.

    Tries every identity (`AGE-SECRET-KEY-1...`) and the passphrase. Passphrase files whose
    scrypt work factor exceeds `max_work_factor` are refused before any work is done.
    Nothing is returned unless the whole file authenticates.
    """
    chunks = _begin_decryption(io.BytesIO(data).read, identities, passphrase, max_work_factor)
    return b"".join(list(chunks))


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    identities: str | Sequence[str] = (),
    passphrase: str | None = None,
    max_work_factor: int = DEFAULT_MAX_WORK_FACTOR,
) -> int:
    """Decrypt `src` into `dst` one authenticated 64 KiB chunk at a time; bytes written.

    Each chunk is written only after it authenticates, but a damaged or truncated file is
    only detected when its bad chunk is reached: on AgeError, `dst` holds a prefix that must
    be discarded. A seekable `dst` is truncated back to where it started; otherwise write to
    a temporary object and keep it only when this returns.
    """
    seekable = getattr(dst, "seekable", None)
    start = dst.tell() if seekable is not None and seekable() else None
    written = 0
    try:
        for chunk in _begin_decryption(src.read, identities, passphrase, max_work_factor):
            dst.write(chunk)
            written += len(chunk)
    except AgeError:
        if start is not None:
            dst.seek(start)
            dst.truncate()
        raise
    return written
