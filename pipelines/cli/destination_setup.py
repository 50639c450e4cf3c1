"""Giving a backup destination its credentials once, from the command line: asked at a
prompt that does not echo, or a JSON object on stdin (`--credentials-stdin`), or read from
a key file a person names; never from the command line itself. The destination is tested
(write, read back, delete) before anything is saved.
"""

from __future__ import annotations

import json
import sys

import click

from pipelines.cli.common import UserError

# What each scheme asks for: (secret name, prompt, hidden)
_PROMPTS = {
    "s3": [
        ("access_key_id", "access key id", False),
        ("secret_access_key", "secret access key", True),
    ],
    "az": [("account_key", "storage account key (or a SAS token starting with ?)", True)],
    "gs": [
        ("access_token", "OAuth access token (or give --key-file with a service account)", True)
    ],
    "webdav+https": [("password", "password (an app password is best)", True)],
    "webdav+http": [("password", "password", True)],
    "sftp": [("password", "password (or give --key-file with an SSH private key)", True)],
}


def gather_secrets(
    scheme: str,
    *,
    from_stdin: bool,
    key_file: str | None,
    stored: dict[str, str],
) -> dict[str, str]:
    """The secrets of a destination of `scheme`, from stdin, a key file and prompts, or the
    ones stored already (the destination is being tested again)."""
    if from_stdin:
        return _stdin_secrets()
    secrets: dict[str, str] = {}
    if key_file:
        secrets.update(_key_file_secrets(scheme, key_file))
    elif stored:
        click.echo("using the credentials stored for this destination", err=True)
        return dict(stored)
    if scheme in ("dropbox", "gdrive", "onedrive"):
        if not secrets:
            raise UserError(
                f"{scheme}:// destinations are connected by signing in with the provider "
                "(the OAuth connect flow); connect it first, then choose it here"
            )
        return secrets
    for name, prompt, hidden in _PROMPTS.get(scheme, []):
        if name in secrets or (key_file and name in ("password", "access_token")):
            continue
        value = click.prompt(prompt, hide_input=hidden, err=True).strip()
        if scheme == "az" and value.startswith("?"):
            name = "sas_token"
        secrets[name] = value
    return secrets


def _stdin_secrets() -> dict[str, str]:
    text = sys.stdin.read()
    try:
        values = json.loads(text)
    except ValueError:
        raise UserError(
            '--credentials-stdin: stdin is not a JSON object such as {"password": "..."}'
        ) from None
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise UserError("--credentials-stdin: give a JSON object of text values")
    return values


def _key_file_secrets(scheme: str, path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--key-file {path}: cannot read it ({type(exc).__name__})") from None
    if scheme == "sftp":
        secrets = {"private_key": text}
        if "ENCRYPTED" in text or _needs_passphrase(text):
            secrets["private_key_passphrase"] = click.prompt(
                "passphrase of the SSH key", hide_input=True, err=True
            )
        return secrets
    if scheme == "gs":
        return {"service_account_json": text}
    raise UserError(f"--key-file is for sftp:// and gs:// destinations, not {scheme}://")


def _needs_passphrase(text: str) -> bool:
    import asyncssh

    try:
        asyncssh.import_private_key(text)
    except asyncssh.KeyEncryptionError:
        return True
    except (asyncssh.KeyImportError, ValueError):
        return False
    return False


def sftp_host_key_secret(url: str, fingerprint: str | None, stored: dict[str, str]) -> str:
    """The SSH host key to trust for `url`: the stored one, else the one the server shows
    now, which must match `--host-key-fingerprint` when given and is printed either way."""
    from resources.destinations.filesystems import host_key_fingerprint, sftp_host_key

    host_key = stored.get("host_key") or sftp_host_key(url)
    shown = host_key_fingerprint(host_key)
    if fingerprint and fingerprint.strip() != shown:
        raise UserError(
            f"the server's host key is {shown}, not {fingerprint.strip()}: not trusted, "
            "nothing was saved"
        )
    click.echo(f"SSH host key {shown} trusted for this destination", err=True)
    return host_key
