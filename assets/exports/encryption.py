"""Encrypted export requests: the file a user downloads is an age file, encrypted to their
own age public key (`recipient`) or with a passphrase (age's scrypt recipient).

The request's encryption is kept beside its `DataExportJob` row in `ExportEncryption`
(written in the same transaction as the row). A recipient is a public key and is kept as
it is. A passphrase is never stored in clear: it is wrapped with AES-256-GCM under the
operator's master key (`GOALPORT_MASTER_KEY`, the key that wraps the users' backup keys in
`resources.keys`), with a random nonce and the job id as associated data, so a wrapped
passphrase opens only for its own job. It is unwrapped once, by the run that renders the
file, and wiped (set to NULL) in the transaction that ends the job, whatever the end:
completed, failed or expired (`assets.exports.job_status`). A job retried after that has no
passphrase to use and fails saying so: it is never exported unencrypted.

The file is encrypted after the completeness check has read the plaintext back
(`assets.exports.batches.write_batch`); the stored copy is then compared byte for byte with
the encrypted file, and its checksum and size are those of the encrypted file (what the
user downloads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from resources import age
from resources.audit import utc_now
from resources.keys import KeyCustodyError, decode_master_key, master_key_id
from resources.schema import export_encryption as encryption_table
from resources.settings import configured_master_key

PASSPHRASE, RECIPIENT = "passphrase", "recipient"
MIN_PASSPHRASE, MAX_PASSPHRASE = 10, 1024
_NONCE = 12


class ExportEncryptionError(ValueError):
    """An encryption that cannot be asked for or used; `field` names the request field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Encryption:
    """How one job's file is encrypted (the passphrase is kept out of every repr)."""

    kind: str
    recipient: str | None = None
    passphrase: str | None = field(default=None, repr=False)

    def seal(self, data: bytes) -> bytes:
        if self.kind == RECIPIENT:
            assert self.recipient is not None
            return age.encrypt(data, recipients=[self.recipient])
        assert self.passphrase is not None
        return age.encrypt(data, passphrase=self.passphrase)


def check_encryption(passphrase: str | None, recipient: str | None) -> Encryption:
    """The encryption a request asks for: exactly one of a passphrase or an age recipient."""
    if (passphrase is None) == (recipient is None):
        raise ExportEncryptionError(
            "give either a passphrase or a recipient (an age public key), not both", "encryption"
        )
    if recipient is not None:
        try:
            return Encryption(RECIPIENT, recipient=age.validate_recipient(recipient))
        except age.AgeKeyError as exc:
            raise ExportEncryptionError(
                f"not an age public key (age1...): {exc}", "encryption.recipient"
            ) from None
    assert passphrase is not None
    if not passphrase.strip() or not MIN_PASSPHRASE <= len(passphrase) <= MAX_PASSPHRASE:
        raise ExportEncryptionError(
            f"a passphrase has {MIN_PASSPHRASE} to {MAX_PASSPHRASE} characters",
            "encryption.passphrase",
        )
    return Encryption(PASSPHRASE, passphrase=passphrase)


def _master() -> bytes:
    text = configured_master_key()
    if not text:
        raise ExportEncryptionError(
            "exports encrypted with a passphrase are not available: the operator has not set "
            "a master key to protect it (use a recipient, an age public key, instead)",
            "encryption.passphrase",
        )
    try:
        return decode_master_key(text)
    except KeyCustodyError as exc:
        raise ExportEncryptionError(str(exc), "encryption.passphrase") from None


def _associated(job_id: str) -> bytes:
    return f"goalport export passphrase {job_id}".encode()


def store_encryption(
    conn: sa.Connection, job_id: str, user_id: str, encryption: Encryption
) -> None:
    """The job's encryption row, in the caller's transaction (the job's own)."""
    values: dict = {"recipient": encryption.recipient}
    if encryption.kind == PASSPHRASE:
        assert encryption.passphrase is not None
        master = _master()
        nonce = os.urandom(_NONCE)
        values["wrappedPassphrase"] = nonce + AESGCM(master).encrypt(
            nonce, encryption.passphrase.encode("utf-8"), _associated(job_id)
        )
        values["masterKeyId"] = master_key_id(master)
    conn.execute(
        encryption_table.insert().values(
            jobId=job_id, userId=user_id, kind=encryption.kind, createdAt=utc_now(), **values
        )
    )


def load_encryptions(
    engine: sa.Engine, job_ids: Iterable[str]
) -> tuple[dict[str, Encryption], dict[str, str]]:
    """The encryptions of these jobs, passphrases unwrapped; and, by job id, why a job's
    encryption cannot be used (its passphrase was wiped, or does not open)."""
    job_ids = list(job_ids)
    if not job_ids:
        return {}, {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(encryption_table).where(encryption_table.c.jobId.in_(job_ids))
        ).all()
    ready: dict[str, Encryption] = {}
    problems: dict[str, str] = {}
    for row in rows:
        if row.kind == RECIPIENT:
            ready[row.jobId] = Encryption(RECIPIENT, recipient=row.recipient)
            continue
        if row.wrappedPassphrase is None:
            problems[row.jobId] = (
                "the passphrase of this encrypted export was deleted when it ended: "
                "ask for a new export with the passphrase"
            )
            continue
        try:
            master = _master()
            wrapped = bytes(row.wrappedPassphrase)
            plain = AESGCM(master).decrypt(
                wrapped[:_NONCE], wrapped[_NONCE:], _associated(row.jobId)
            )
        except ExportEncryptionError as exc:
            problems[row.jobId] = str(exc)
            continue
        except InvalidTag:
            problems[row.jobId] = (
                f"the passphrase was protected by master key {row.masterKeyId}, which is not "
                "the one configured: ask for a new export with the passphrase"
            )
            continue
        ready[row.jobId] = Encryption(PASSPHRASE, passphrase=plain.decode("utf-8"))
    return ready, problems
