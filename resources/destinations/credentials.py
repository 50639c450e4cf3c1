"""The credentials of users' own destinations (passwords, keys, OAuth tokens), stored only
wrapped under the master key.

One `DestinationCredential` row per (user, destination URL): the secrets, a JSON object of
strings, sealed with AES-256-GCM under the master key (`KeyVault.wrap_secret`), with the
user's pseudonym and the URL bound as associated data so a row cannot be moved to another
user or place; `masterKeyId` says which master key (`goalport keys rotate-master` rewraps
these rows too). Rows are keyed by the pseudonym (`subject_ref`), not the user id, like
`FileLocation`: an erasure deletes the user's rows first and only then empties their
destinations, and it needs the credentials for that. It deletes them afterwards
(`forget_subject_credentials`).

Nothing here logs or returns a secret except `load_destination_credentials`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import sqlalchemy as sa

from resources.audit import new_id, subject_ref, utc_now
from resources.destinations.errors import DestinationError
from resources.keys import KeyVault, destination_secret_context
from resources.schema import destination_credential as credential_table


def _check_secrets(secrets: Mapping[str, str]) -> dict[str, str]:
    checked = {}
    for name, value in secrets.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise DestinationError(
                f"destination credentials must be text: {name!r} is not"
            )  # the name only, never the value
        checked[name] = value
    return checked


def save_destination_credentials(
    engine: sa.Engine,
    keys: KeyVault,
    user_id: str,
    destination_url: str,
    secrets: Mapping[str, str],
) -> None:
    """Store (or replace) the user's secrets for `destination_url`, wrapped."""
    save_subject_credentials(engine, keys, subject_ref(user_id), destination_url, secrets)


def save_subject_credentials(
    engine: sa.Engine,
    keys: KeyVault,
    subject: str,
    destination_url: str,
    secrets: Mapping[str, str],
) -> None:
    """As `save_destination_credentials`, by pseudonym (a token refreshed during erasure)."""
    plain = json.dumps(_check_secrets(secrets), sort_keys=True).encode()
    wrapped, master_id = keys.wrap_secret(
        destination_secret_context(subject, destination_url), plain
    )
    now = utc_now()
    with engine.begin() as conn:
        place = (credential_table.c.subjectRef == subject) & (
            credential_table.c.destinationUrl == destination_url
        )
        updated = conn.execute(
            credential_table.update()
            .where(place)
            .values(wrappedSecrets=wrapped, masterKeyId=master_id, updatedAt=now)
        ).rowcount
        if not updated:
            conn.execute(
                credential_table.insert().values(
                    id=new_id("dcr_"),
                    subjectRef=subject,
                    destinationUrl=destination_url,
                    wrappedSecrets=wrapped,
                    masterKeyId=master_id,
                    createdAt=now,
                    updatedAt=now,
                )
            )


def load_destination_credentials(
    engine: sa.Engine, keys: KeyVault, user_id: str, destination_url: str
) -> dict[str, str]:
    """The user's secrets for `destination_url`, unwrapped; {} when none are stored."""
    return load_subject_credentials(engine, keys, subject_ref(user_id), destination_url)


def load_subject_credentials(
    engine: sa.Engine, keys: KeyVault, subject: str, destination_url: str
) -> dict[str, str]:
    """As `load_destination_credentials`, by pseudonym (for an erasure, after the user's rows
    are gone)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(credential_table.c.wrappedSecrets, credential_table.c.masterKeyId).where(
                credential_table.c.subjectRef == subject,
                credential_table.c.destinationUrl == destination_url,
            )
        ).first()
    if row is None:
        return {}
    plain = keys.unwrap_secret(
        destination_secret_context(subject, destination_url), row.wrappedSecrets, row.masterKeyId
    )
    return dict(json.loads(plain))


def delete_destination_credentials(engine: sa.Engine, user_id: str, destination_url: str) -> None:
    """Forget the user's secrets for `destination_url` (nothing happens if there are none)."""
    with engine.begin() as conn:
        conn.execute(
            credential_table.delete().where(
                credential_table.c.subjectRef == subject_ref(user_id),
                credential_table.c.destinationUrl == destination_url,
            )
        )


def credential_destinations(conn: sa.Connection, subject: str) -> list[str]:
    """The destination URLs a user (by pseudonym) has stored credentials for."""
    return list(
        conn.execute(
            sa.select(credential_table.c.destinationUrl)
            .where(credential_table.c.subjectRef == subject)
            .order_by(credential_table.c.destinationUrl)
        ).scalars()
    )


def forget_subject_credentials(
    conn: sa.Connection, subject: str, keep: set[str] | frozenset[str] = frozenset()
) -> int:
    """Erasure's last word on destinations: delete the user's credentials except for the
    URLs in `keep` (places that still hold their files); returns how many went."""
    statement = credential_table.delete().where(credential_table.c.subjectRef == subject)
    if keep:
        statement = statement.where(credential_table.c.destinationUrl.not_in(sorted(keep)))
    return conn.execute(statement).rowcount


def forget_place_credentials(conn: sa.Connection, subject: str, destination_url: str) -> int:
    """Delete the user's (by pseudonym) credentials for one place; how many rows went."""
    return conn.execute(
        credential_table.delete().where(
            credential_table.c.subjectRef == subject,
            credential_table.c.destinationUrl == destination_url,
        )
    ).rowcount
