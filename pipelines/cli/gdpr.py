"""`goalport gdpr ...` (bundles for users or everyone, erasure requests) and `goalport verify`.

The same code paths as the Dagster GDPR job and erasure sensor (`assets.gdpr.bulk`,
`assets.gdpr.erasure`), for operators and for installs without the daemon. Passphrases are read
from a named environment variable, never from the command line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import click

from pipelines.cli.common import (
    UserError,
    dagster_instance,
    errors_as_user_errors,
    friendly_errors,
    identities_from,
    identity_option,
    open_database,
    open_storage,
    out_option,
    passphrase_env_option,
    passphrase_from,
    read_file,
    utc_minute,
)
from resources.storage_layout import gdpr_folder

BY_HELP = "who asks, for the audit log (default: the operator's login, via the CLI)"


def _operator() -> str:
    import getpass

    return f"operator {getpass.getuser()} (goalport CLI)"


def _run_history(engine=None):
    """The Dagster instance's runs (DAGSTER_HOME's), searched and cleaned by erasures: the
    runs of the users (found through `engine`'s rows; the erasure remembers them before it
    deletes those rows).
    None without DAGSTER_HOME: a throwaway instance would be searched for nothing, so the
    receipt says the run history was not searched instead."""
    from assets.gdpr.defs import DagsterRunHistory
    from resources.settings import dagster_home

    if not dagster_home():
        return None
    return DagsterRunHistory(dagster_instance(), engine=engine)


def _gdpr_error_types() -> tuple[type[Exception], ...]:
    from assets.gdpr.erasure import ErasureError
    from assets.gdpr.texts import GdprTextsError
    from resources.age import AgeError

    return (ErasureError, GdprTextsError, AgeError)


# Erasure, texts and age errors end as one clear line and exit status 1.
gdpr_errors = errors_as_user_errors(_gdpr_error_types)


@click.group()
def gdpr() -> None:
    """GDPR: data-portability bundles (Art. 15/20) and erasure (Art. 17)."""


@gdpr.command("export")
@click.argument("user_ids", nargs=-1)
@click.option("--all", "everyone", is_flag=True, help="every user, bucket by bucket")
@out_option
@click.option("--workers", type=click.IntRange(min=1), help="rendering processes (default: cores)")
@friendly_errors
@gdpr_errors
def gdpr_export(user_ids, everyone, out_url, workers) -> None:
    """Write a GDPR bundle for each USER_ID (or --all users) to gdpr/<user>/<time>.zip."""
    from assets.gdpr.bulk import BUCKET_COUNT, GdprBundleExporter, bucket_user_ids
    from assets.gdpr.texts import load_gdpr_texts

    if bool(user_ids) == everyone:
        raise UserError("name the users to export, or give --all (not both)")
    texts = load_gdpr_texts()
    database = open_database()
    groups: Iterable[list[str]]
    if user_ids:
        unknown = sorted(set(user_ids) - database.existing_user_ids(user_ids))
        if unknown:
            raise UserError(f"unknown user id: {', '.join(unknown)}")
        groups = [list(dict.fromkeys(user_ids))]
        total = len(groups[0])
    else:  # bucket by bucket, each read when the workers are about to need it
        groups = (bucket_user_ids(database.engine, b) for b in range(BUCKET_COUNT))
        total = len(database.all_user_ids())
    storage = open_storage(out_url)
    storage.check_writable()
    with (
        GdprBundleExporter(
            database, storage, texts=texts, workers=workers, actor="cli"
        ) as exporter,
        click.progressbar(length=total, label="bundles", file=sys.stderr) as bar,
    ):
        written = {"bundles": 0, "bytes": 0}

        def done(bundle) -> None:
            written["bundles"] += 1
            written["bytes"] += bundle.stored.size
            bar.update(1)

        result = exporter.export_groups(groups, on_user_done=done, keep_bundles=bool(user_ids))
    failed, incomplete = result.failed, result.incomplete_user_ids
    for bundle in result.bundles:
        click.echo(f"{bundle.user_id}\t{bundle.stored.size}\t{bundle.stored.url}")
    click.echo(
        f"{written['bundles']} bundles, {written['bytes']} bytes, "
        f"under {storage.object_url('gdpr')}",
        err=not user_ids,
    )
    problems = [f"{u}: {why}" for u, why in failed.items()]
    problems += [f"{u}: incomplete (rows changed while it was made; run again)" for u in incomplete]
    if problems:
        raise UserError("; ".join(problems))


@gdpr.command("erase")
@click.argument("user_id")
@click.option("--now", "right_now", is_flag=True, help="skip the grace period and erase now")
@click.option(
    "--grace-days",
    type=click.FloatRange(min=0),
    help="days before the erasure runs (default GOALPORT_ERASURE_GRACE_DAYS, else 7)",
)
@click.option("--by", "requested_by", help=BY_HELP)
@friendly_errors
@gdpr_errors
def gdpr_erase(user_id, right_now, grace_days, requested_by) -> None:
    """Request the erasure of USER_ID: after a grace period (cancellable), or --now."""
    import datetime as dt

    from assets.gdpr.erasure import execute_erasure, holds_data, request_erasure

    database = open_database()
    with database.engine.connect() as conn:
        held = holds_data(conn, user_id)
    if not held:
        click.echo(
            f"no table row names {user_id}; the erasure still sweeps every storage location "
            "and record goalport knows, and its receipt says what it found"
        )
    grace = (
        dt.timedelta(0)
        if right_now
        else (dt.timedelta(days=grace_days) if grace_days is not None else None)
    )
    request = request_erasure(
        database.engine, user_id, grace=grace, requested_by=requested_by or _operator()
    )
    if not right_now:
        click.echo(
            f"erasure of {user_id} requested ({request.id}); it runs after "
            f"{utc_minute(request.not_before)}. Cancel before then with `goalport gdpr cancel {user_id}`."
        )
        return
    outcome = execute_erasure(
        database.engine,
        open_storage(),
        request.id,
        force=True,
        run_history=_run_history(database.engine),
    )
    receipt = outcome.receipt
    click.echo(
        f"erased {user_id} ({outcome.request.id}, now {outcome.request.subject_ref}): "
        f"{sum(receipt['rowsDeleted'].values())} rows, "
        f"{sum(receipt['storageObjectsDeleted'].values())} files, "
        f"key {'destroyed' if receipt['keyDestroyed'] else 'none held'}"
    )
    verification = receipt["verification"]
    if not outcome.verified:
        raise UserError(f"erasure of {user_id} NOT verified: {outcome.request.error_message}")
    if receipt.get("nothingWasHeld"):
        click.echo("nothing of theirs was left to erase")
    dagster = receipt["dagsterRecords"]
    click.echo(
        "verified: nothing of theirs in "
        + "; ".join(verification["searched"])
        + (
            f"; Dagster: {dagster['runsSearched']} of their runs searched, "
            f"{dagster['runsDeleted']} that named them deleted"
            if dagster is not None
            else ""
        )
    )


@gdpr.command("cancel")
@click.argument("user_id")
@click.option("--by", "cancelled_by", help=BY_HELP)
@friendly_errors
@gdpr_errors
def gdpr_cancel(user_id, cancelled_by) -> None:
    """Cancel USER_ID's pending erasure request (possible during the grace period)."""
    from assets.gdpr.erasure import cancel_erasure

    request = cancel_erasure(
        open_database().engine, user_id, cancelled_by=cancelled_by or _operator()
    )
    click.echo(f"erasure request {request.id} of {user_id} cancelled")


@gdpr.command("status")
@click.argument("user_id")
@friendly_errors
@gdpr_errors
def gdpr_status(user_id) -> None:
    """Show USER_ID's erasure requests (found by pseudonym once erased) and bundles."""
    from assets.gdpr.erasure import erasure_requests
    from resources.audit import subject_ref

    database = open_database()
    exists = bool(database.existing_user_ids([user_id]))
    click.echo(f"user {user_id}: {'exists' if exists else 'not in the database'}")
    click.echo(f"pseudonym: {subject_ref(user_id)}")
    if exists:
        bundles = open_storage().list(gdpr_folder(user_id))
        click.echo(
            f"GDPR bundles in storage: {len(bundles)}"
            + (f", latest {bundles[-1]}" if bundles else "")
        )
    requests = erasure_requests(database.engine, user_id)
    if not requests:
        click.echo("erasure: never requested")
    for request in requests:
        line = (
            f"erasure {request.id}: {request.status}; requested {utc_minute(request.requested_at)}, "
            f"not before {utc_minute(request.not_before)}"
        )
        if request.completed_at:
            line += f", finished {utc_minute(request.completed_at)}"
        click.echo(line)
        if request.error_message:
            click.echo(f"  {request.error_message}")
        if request.receipt and "verification" in request.receipt:
            receipt = request.receipt
            click.echo(
                f"  receipt: {sum(receipt['rowsDeleted'].values())} rows in "
                f"{', '.join(receipt['tablesTouched']) or 'no tables'}; "
                f"{sum(receipt['storageObjectsDeleted'].values())} files; "
                f"verified: {'yes' if receipt['verification']['passed'] else 'NO'}"
            )


@gdpr.command("run-due")
@friendly_errors
@gdpr_errors
def gdpr_run_due() -> None:
    """Carry out every erasure request past its grace period (what the sensor does)."""
    from assets.gdpr.erasure import due_erasure_requests, execute_due_erasures

    database = open_database()
    due = due_erasure_requests(database.engine, limit=100)
    history = _run_history(database.engine)
    outcomes = execute_due_erasures(
        database.engine, open_storage(), [r.id for r in due], run_history=history
    )
    for outcome in outcomes:
        click.echo(f"{outcome.request.id}\t{outcome.request.status}\t{outcome.request.subject_ref}")
    click.echo(f"{len(outcomes)} erasure requests carried out")
    failed = [o for o in outcomes if not o.verified]
    if failed:
        raise UserError("; ".join(f"{o.request.id}: {o.request.error_message}" for o in failed))


@click.command("verify")
@click.argument("bundle")
@identity_option("age identity file, for an encrypted bundle")
@passphrase_env_option(
    "name of the environment variable holding the passphrase of an encrypted bundle"
)
@friendly_errors
@gdpr_errors
def verify(bundle, identity_file, passphrase_env) -> None:
    """Check a GDPR bundle (file or URL; age-encrypted too): every hash, the manifest, the
    JSON against its schema, the counts. Names each file that is wrong; exit status 1 then."""
    from assets.gdpr.verify import verify_bundle

    identities = identities_from(identity_file)
    passphrase = passphrase_from(passphrase_env) if passphrase_env else None
    report = verify_bundle(read_file(bundle).data, identities=identities, passphrase=passphrase)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(1)
