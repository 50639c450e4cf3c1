"""`goalport backup ...` and `goalport keys ...`: backup configuration, backups now, their
list, restores, passphrase-encrypted exports, and custody of the keys they are encrypted to.

Secrets never travel on the command line (where `ps` and shell history would keep them):
passphrases and new master keys are read from a named environment variable, from stdin, or
from a prompt that does not echo.
"""

from __future__ import annotations

import os
import sys

import click

from pipelines.cli.common import (
    UserError,
    errors_as_user_errors,
    friendly_errors,
    identities_from,
    identity_option,
    open_database,
    open_storage,
    passphrase_env_option,
    passphrase_from,
    read_file,
    split_csv,
    utc_minute,
)
from pipelines.cli.import_preview import (
    import_errors,
    mode_option,
    on_conflict_option,
    preview_then_apply,
)
from resources.storage_layout import BACKUPS_PREFIX


def _backup_error_types() -> tuple[type[Exception], ...]:
    from assets.backups.config import BackupError
    from resources.age import AgeError
    from resources.destinations.errors import DestinationError
    from resources.keys import KeyCustodyError

    return (BackupError, KeyCustodyError, AgeError, DestinationError)


# Backup, key and age errors end as one clear line and exit status 1.
backup_errors = errors_as_user_errors(_backup_error_types)


def _out_file_option(help_text: str):
    """`--out FILE`: a local file a secret is written to, readable by its owner only."""
    return click.option("--out", "out_path", type=click.Path(dir_okay=False), help=help_text)


def _key_vault():
    from resources.keys import KeyVault

    return KeyVault()


def _echo_config(config) -> None:
    include = ", ".join(config.include) if config.include else "everything"
    next_at = config.next_backup_at
    if config.enabled and next_at is None:
        next_due = "at the next hourly tick (no backup yet)"
    elif config.enabled:
        next_due = utc_minute(next_at)
    else:
        next_due = "- (disabled)"
    lines = [
        ("user", config.user_id),
        ("enabled", "yes" if config.enabled else "no"),
        ("frequency", f"{config.frequency}, at 02:00 {config.timezone}"),
        ("include", include),
        ("format", config.format),
        ("destination", config.destination_url or f"main storage ({BACKUPS_PREFIX}/<user>/)"),
        ("encryption", "age, to the user's goalport key" if config.encrypt else "OFF"),
        ("own recipients", ", ".join(config.recipients) or "-"),
        ("retention", config.retention.describe()),
        ("last backup", utc_minute(config.last_backup_at)),
        (
            "last verified",
            f"{utc_minute(config.last_verified_at)} {config.last_verified_url or ''}",
        ),
        ("next backup", next_due),
    ]
    for name, value in lines:
        click.echo(f"{name + ':':16}{value}".rstrip())


# ---------------------------------------------------------------- goalport backup


@click.group()
def backup() -> None:
    """Scheduled, encrypted, verified backups (age format) and restores."""


@backup.command("config")
@click.argument("user_id")
@click.option("--enable/--disable", "enabled", default=None, help="turn scheduled backups on/off")
@click.option("--frequency", type=click.Choice(["daily", "weekly", "monthly"]))
@click.option("--timezone", help="IANA zone for the local 02:00 backup time, e.g. Europe/Berlin")
@click.option("--include", multiple=True, help="module kinds to back up (e.g. fitness,bible); all")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "xlsx", "parquet"]))
@click.option(
    "--destination",
    help="s3://, az://, gs://, webdav+https://, sftp://user@host/... (see README); "
    "'default' = main storage. Tested before it is saved",
)
@click.option(
    "--credentials-stdin",
    is_flag=True,
    help='read the destination\'s secrets as JSON from stdin ({"password": "..."})',
)
@click.option("--key-file", type=click.Path(dir_okay=False), help="sftp: SSH key; gs: key JSON")
@click.option("--host-key-fingerprint", help="sftp: the SHA256:... the server's key must have")
@click.option("--encrypt/--no-encrypt", "encrypt", default=None, help="age encryption (default on)")
@click.option("--recipient", "recipients", multiple=True, help="your own age1... public key")
@click.option("--clear-recipients", is_flag=True, help="remove your own recipients")
@click.option("--keep-last", type=click.IntRange(min=1), help="retention: keep the last N")
@click.option("--keep-daily", type=click.IntRange(min=0), help="retention tier: N days")
@click.option("--keep-weekly", type=click.IntRange(min=0), help="retention tier: N weeks")
@click.option("--keep-monthly", type=click.IntRange(min=0), help="retention tier: N months")
@friendly_errors
@backup_errors
def backup_config(
    user_id,
    enabled,
    frequency,
    timezone,
    include,
    fmt,
    destination,
    credentials_stdin,
    key_file,
    host_key_fingerprint,
    encrypt,
    recipients,
    clear_recipients,
    keep_last,
    keep_daily,
    keep_weekly,
    keep_monthly,
) -> None:
    """Show or change USER_ID's backup configuration (creating it on first use)."""
    from assets.backups.config import get_backup_config, save_backup_config

    database = open_database()
    changes = {}
    for name, value in (
        ("enabled", enabled),
        ("frequency", frequency),
        ("timezone", timezone),
        ("format", fmt),
        ("encrypt", encrypt),
    ):
        if value is not None:
            changes[name] = value
    if include:
        kinds = split_csv(include)
        changes["include"] = None if [k.lower() for k in kinds] == ["all"] else kinds
    if destination is not None and destination not in ("", "default"):
        changes["destination_url"] = _connect(
            database.engine,
            user_id,
            destination,
            credentials_stdin=credentials_stdin,
            key_file=key_file,
            host_key_fingerprint=host_key_fingerprint,
        )
    elif destination is not None:
        changes["destination_url"] = None
    current = get_backup_config(database.engine, user_id)
    if clear_recipients or recipients:
        kept = () if clear_recipients or current is None else current.recipients
        changes["recipients"] = [*kept, *recipients]
    tiers = {"daily": keep_daily, "weekly": keep_weekly, "monthly": keep_monthly}
    if keep_last is not None and any(v is not None for v in tiers.values()):
        raise UserError("give --keep-last or --keep-daily/--keep-weekly/--keep-monthly, not both")
    if keep_last is not None:
        changes["retention"] = {"keep_last": keep_last}
    elif any(v is not None for v in tiers.values()):
        changes["retention"] = {k: v for k, v in tiers.items() if v}
    if not changes:
        if current is None:
            raise UserError(
                f"user {user_id} has no backup configuration; create one with "
                f"`goalport backup config {user_id} --enable`"
            )
        _echo_config(current)
        return
    config = save_backup_config(database.engine, user_id, actor="cli", **changes)
    if not config.encrypt:
        click.echo("warning: backups are stored UNENCRYPTED (--encrypt turns it back on)", err=True)
    _echo_config(config)


def _connect(
    engine,
    user_id: str,
    url: str,
    *,
    credentials_stdin: bool,
    key_file: str | None,
    host_key_fingerprint: str | None,
) -> str:
    """Check `url`, take its secrets, test it, store them: the URL to save in the config."""
    from assets.backups.config import check_destination
    from pipelines.cli.destination_setup import gather_secrets, sftp_host_key_secret
    from resources.destinations.credentials import load_destination_credentials
    from resources.destinations.errors import DestinationError
    from resources.destinations.storage import connect_destination

    checked = check_destination(url)
    assert checked is not None, "not empty"
    scheme = checked.split("://", 1)[0]
    vault = _key_vault()
    stored = load_destination_credentials(engine, vault, user_id, checked)
    secrets = gather_secrets(scheme, from_stdin=credentials_stdin, key_file=key_file, stored=stored)
    if scheme == "sftp" and "host_key" not in secrets:
        secrets["host_key"] = sftp_host_key_secret(checked, host_key_fingerprint, stored)
    try:
        connect_destination(engine, vault, user_id, checked, secrets)
    except DestinationError as exc:
        raise UserError(f"the destination test failed, nothing was saved: {exc}") from None
    click.echo("destination tested: a test file was written, read back and deleted", err=True)
    return checked


@backup.command("run")
@click.argument("user_ids", nargs=-1, required=True)
@friendly_errors
@backup_errors
def backup_run(user_ids) -> None:
    """Back up users now (same path as the schedule): write, verify, apply retention."""
    from assets.backups.due import queue_backup_now
    from assets.backups.runner import run_backup_batch

    database = open_database()
    storage = open_storage()
    queued = queue_backup_now(database.engine, user_ids, requested_by="cli")
    with click.progressbar(length=len(queued.user_ids), label="backing up", file=sys.stderr) as bar:
        outcome = run_backup_batch(
            database,
            storage,
            _key_vault(),
            queued.job_ids,
            queued.batch_id,
            on_user_done=lambda *_: bar.update(1),
        )
    for result in outcome.completed:
        click.echo(
            f"{result.user_id}\tverified\t{result.records} records\t{result.size} bytes\t"
            f"{result.url}"
        )
        for url in result.retention_deleted:
            click.echo(f"{result.user_id}\tretention deleted\t{url}", err=True)
    for user_id, message in outcome.failed.items():
        click.echo(f"{user_id}\tFAILED\t{message}", err=True)
    if outcome.failed:
        raise UserError(f"{len(outcome.failed)} of {len(queued.user_ids)} backups failed")


@backup.command("list")
@click.argument("user_id")
@friendly_errors
@backup_errors
def backup_list(user_id) -> None:
    """USER_ID's backup configuration and backup files, newest first."""
    from assets.backups.config import get_backup_config
    from assets.backups.retention import list_backup_files

    database = open_database()
    config = get_backup_config(database.engine, user_id)
    if config is not None:
        _echo_config(config)
        click.echo("")
    listing = list_backup_files(database.engine, open_storage(), user_id, config, _key_vault())
    for url, why in listing.unreachable.items():
        click.echo(f"UNREACHABLE	{url}	{why}", err=True)
    files = listing.files
    if not files:
        click.echo(f"no backups of {user_id}")
        return
    for f in files:
        state = "verified" if f.verified else "UNVERIFIED"
        lock = "age" if f.encrypted else "plain"
        click.echo(f"{utc_minute(f.created_at)}\t{state}\t{lock}\t{f.size}\t{f.url}")


@backup.command("restore")
@click.argument("file")
@click.option("--user", "user_id", required=True, help="whose backup it is (their key opens it)")
@identity_option("an age identity file to decrypt with instead of the key goalport holds")
@passphrase_env_option(
    "read the passphrase of a passphrase-encrypted file from this variable", metavar="NAME"
)
@click.option("--ask-passphrase", is_flag=True, help="prompt for the passphrase")
@mode_option(
    "replace",
    "replace: the user's data becomes the backup's; merge: bring back what is missing",
)
@on_conflict_option("take-incoming", "rows changed in the database since the backup was made")
@click.option("--yes", is_flag=True, help="apply without asking")
@click.option("--verify-only", is_flag=True, help="decrypt and verify; change nothing")
@_out_file_option("also save the decrypted, verified archive here")
@friendly_errors
@backup_errors
@import_errors
def backup_restore(
    file: str,
    user_id: str | None,
    identity_file: str | None,
    passphrase_env: str | None,
    ask_passphrase: bool,
    mode: str,
    policy: str,
    yes: bool,
    verify_only: bool,
    out_path: str | None,
) -> None:
    """Decrypt FILE (a path or URL), verify it, then restore it through the import path.

    Nothing is decrypted to disk or imported unless the whole file decrypts and matches its
    manifest. The import previews what would change and asks before applying (`--yes` does
    not ask); `goalport import undo JOB` takes a restore back.
    """
    from assets.backups.archive import open_backup
    from resources import age

    data, name = _read_backup(file, user_id)
    passphrase = None
    if passphrase_env:
        passphrase = passphrase_from(passphrase_env)
    elif ask_passphrase:
        passphrase = click.prompt("passphrase", hide_input=True, err=True)
    identities = identities_from(identity_file)
    if not identity_file and passphrase is None and age.is_age_file(data[:64]):
        identities = [_key_vault().identity(user_id)]
    opened = open_backup(data, file_name=name, identities=identities, passphrase=passphrase)
    if opened.user_id != user_id:
        raise UserError(
            f"{name} is a backup of user {opened.user_id}, not {user_id}: restore it with "
            f"--user {opened.user_id}"
        )
    manifest = opened.manifest
    click.echo(
        f"{name}: verified backup of {opened.user_id} made {manifest['createdAt']} "
        f"({manifest['exportFormat']}, {opened.records} records, "
        f"{'encrypted' if opened.encrypted else 'not encrypted'})"
    )
    if out_path:
        _write_private(out_path, opened.archive)
        click.echo(f"decrypted archive written to {out_path}", err=True)
    if verify_only:
        for table, count in sorted(opened.row_counts.items()):
            if count:
                click.echo(f"  {table}\t{count}")
        return
    # the verified, decrypted archive (a goalport export bundle) goes the import's way
    preview_then_apply(
        open_database(),
        open_storage(),
        user_id=user_id,
        location=name,
        data=opened.archive,
        mode=mode,
        policy=policy,
        requested_by="cli backup restore",
        yes=yes,
    )


def _read_backup(location: str, user_id: str | None) -> tuple[bytes, str]:
    """The bytes of a backup file: at one of the user's destinations (current or earlier,
    opened with their credentials), else a path or URL goalport reads itself."""
    from resources.destinations.storage import is_user_destination

    if user_id and is_user_destination(location):
        from assets.backups.config import BackupConfig, get_backup_config
        from assets.backups.places import backup_places

        engine = open_database().engine
        config = get_backup_config(engine, user_id) or BackupConfig(user_id=user_id)
        places = backup_places(engine, _key_vault(), open_storage(), config)
        for place in places.all:
            key = place.key_of(location)
            if key is not None and place.root != open_storage().root:
                return place.read_bytes(key), location
        if places.unreachable:
            raise UserError(
                f"{location}: not at a destination of user {user_id} that could be reached ("
                + "; ".join(places.unreachable.values())
                + ")"
            )
    source = read_file(location)
    return source.data, source.location


def _write_private(path: str, data: bytes) -> None:
    """Write `data` to `path` readable by its owner only, atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


@backup.command("export")
@click.argument("user_id")
@passphrase_env_option(
    "read the passphrase from this variable (else you are asked for it)", metavar="NAME"
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "xlsx", "parquet"]),
    default="json",
    show_default=True,
)
@click.option("--include", multiple=True, help="only these module kinds")
@click.option("--out", "out_url", help="folder or s3://bucket/prefix (default main storage)")
@click.option(
    "--work-factor",
    type=click.IntRange(10, 22),
    default=18,
    show_default=True,
    help="scrypt log2(N); 18 is what `age -p` uses",
)
@friendly_errors
@backup_errors
def backup_export(user_id, passphrase_env, fmt, include, out_url, work_factor) -> None:
    """A passphrase-encrypted copy of USER_ID's data now (opens with `age -d`)."""
    from assets.backups.passphrase_export import write_passphrase_export

    if passphrase_env:
        passphrase = passphrase_from(passphrase_env)
    else:
        passphrase = click.prompt("passphrase", hide_input=True, confirmation_prompt=True, err=True)
    database = open_database()
    result = write_passphrase_export(
        database,
        open_storage(out_url),
        user_id,
        passphrase,
        fmt=fmt,
        include=split_csv(include) or None,
        work_factor=work_factor,
    )
    click.echo(f"verified, {result.records} records, {result.size} bytes", err=True)
    click.echo(result.url)


# ---------------------------------------------------------------- goalport keys


@click.group()
def keys() -> None:
    """The master key and the per-user keys backups are encrypted to."""


@keys.command("new-master")
def keys_new_master() -> None:
    """Print a new master key (base64 of 32 random bytes) for GOALPORT_MASTER_KEY."""
    from resources.keys import decode_master_key, master_key_id, new_master_key

    key = new_master_key()
    click.echo(key)
    click.echo(
        f"key id {master_key_id(decode_master_key(key))}: keep the key secret and safe; "
        "losing it makes every encrypted backup unreadable",
        err=True,
    )


@keys.command("export")
@click.argument("user_id")
@_out_file_option("write the identity file here (mode 600) instead of printing it")
@friendly_errors
@backup_errors
def keys_export(user_id, out_path) -> None:
    """Print USER_ID's backup identity as an age identity file (`age -d -i FILE`)."""
    open_database()
    identity_file = _key_vault().identity_file(user_id)
    if out_path:
        _write_private(out_path, identity_file.encode())
        click.echo(f"identity of {user_id} written to {out_path}", err=True)
    else:
        click.echo(identity_file, nl=False)


@keys.command("rotate-master")
@friendly_errors
@backup_errors
def keys_rotate_master() -> None:
    """Rewrap every user key under a new master key, read from stdin or a prompt.

    Run it with the current key in GOALPORT_MASTER_KEY; then set the new one.
    """
    from resources.keys import decode_master_key, master_key_id

    if sys.stdin.isatty():
        new_key = click.prompt(
            "new master key", hide_input=True, confirmation_prompt=True, err=True
        )
    else:
        new_key = sys.stdin.readline().strip()
    if not new_key:
        raise UserError("no new master key given (pipe it on stdin, or type it at the prompt)")
    open_database()
    vault = _key_vault()
    count = vault.rotate_master(new_key)
    new_id = master_key_id(decode_master_key(new_key, "the new master key"))
    click.echo(
        f"rewrapped {count} user keys under master key {new_id}; "
        "now set GOALPORT_MASTER_KEY to the new key"
    )
