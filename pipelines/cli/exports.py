"""`goalport export` (now), `goalport request export` (queued), `goalport exports ...` and
`goalport serve-downloads`.

Requests go into the same queue the Dagster sensor reads; `goalport exports process` runs
them in this process with the same batch code, for installs without the Dagster daemon.
"""

from __future__ import annotations

import json
import sys
import time

import click

from pipelines.cli.common import (
    UserError,
    friendly_errors,
    modules_option,
    open_database,
    open_storage,
    out_option,
    since_option,
    split_csv,
    until_option,
)


@click.command()
@click.argument("user_ids", nargs=-1, required=True)
@click.option(
    "--format",
    "formats",
    multiple=True,
    default=("json",),
    show_default=True,
    help="json, csv (spreadsheet-safe), csv-machine, xlsx, parquet, xml or report; repeat or "
    "separate with commas",
)
@modules_option
@since_option
@until_option
@out_option
@friendly_errors
def export(user_ids, formats, modules, since, until, out_url) -> None:
    """Export users' data now, in one batch, and print where each file went."""
    from assets.exports.batches import ExportRequestError, check_formats, export_users, make_filter

    chosen = check_formats(split_csv(formats))
    filters = make_filter(split_csv(modules) or None, since, until)
    database = open_database()
    unknown = sorted(set(user_ids) - database.existing_user_ids(user_ids))
    if unknown:
        raise ExportRequestError(f"unknown user id: {', '.join(unknown)}")
    storage = open_storage(out_url)
    storage.check_writable()
    with click.progressbar(length=len(set(user_ids)), label="exporting", file=sys.stderr) as bar:
        result = export_users(
            database,
            storage,
            user_ids,
            chosen,
            filters,
            on_user_done=lambda _uid, _files: bar.update(1),
        )
    given = {"modules": split_csv(modules) or None, "since": since, "until": until}
    _audit_exports(database, result.files, {k: v for k, v in given.items() if v})
    for f in result.files:
        click.echo(f"{f.user_id}\t{f.format}\t{f.stored.size}\t{f.stored.url}")
    for user_id, reason in sorted(result.failed_users.items()):
        click.echo(f"{user_id}\tFAILED\t{reason}", err=True)
    if result.failed_users:
        raise UserError(
            f"{len(result.failed_users)} of {len(set(user_ids))} users not exported (see above)"
        )


def _audit_exports(database, files, filters: dict) -> None:
    """One audit row per file written, as the request path writes (assets/exports/progress.py),
    so that a user's processing record (the GDPR bundle) lists the exports made here too."""
    from resources.audit import record_audit

    with database.engine.begin() as conn:
        for f in files:
            record_audit(
                conn,
                user_id=f.user_id,
                operation="export",
                operation_type="selective" if filters else "full",
                data_types=[t for t, n in f.row_counts.items() if n],
                record_count=f.records,
                actor="cli",
                details={
                    "via": "goalport export",
                    "format": f.format,
                    "filters": filters or None,
                    "fileUrl": f.stored.url,
                    "fileSizeBytes": f.stored.size,
                    "checksum": "sha256:" + f.stored.sha256,
                },
            )


@click.group()
def request() -> None:
    """Ask for work to be done later (by the sensor or `goalport exports process`)."""


@request.command("export")
@click.argument("user_id")
@click.option(
    "--format",
    "fmt",
    default="json",
    show_default=True,
    help="json, csv, csv-machine, xlsx, parquet, xml or report (one per request)",
)
@modules_option
@since_option
@until_option
@click.option(
    "--type",
    "export_type",
    help="full, selective, template, backup or gdpr (default: full, or selective with filters)",
)
@click.option("--requested-by", help="who asked (kept in the audit log)")
@friendly_errors
def request_export_command(user_id, fmt, modules, since, until, export_type, requested_by):
    """Queue an export of USER_ID's data; prints the new job id on the last line."""
    from assets.exports.queue import request_export

    database = open_database()
    job_id = request_export(
        database.engine,
        user_id,
        fmt,
        modules=split_csv(modules) or None,
        since=since,
        until=until,
        export_type=export_type,
        requested_by=requested_by or "cli",
    )
    click.echo(f"queued {fmt} export of {user_id}", err=True)
    click.echo(job_id)


@click.group()
def exports() -> None:
    """Export requests: process, list, show, retry, clean up."""


@exports.command("process")
@click.option("--once", is_flag=True, help="process what is pending now, then exit")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="seconds between looks at the queue (without --once)",
)
@click.option("--workers", type=click.IntRange(min=1), help="render processes (default: cores)")
@friendly_errors
def exports_process(once: bool, batch_size: int, interval: float, workers: int | None) -> None:
    """Claim pending export requests (GDPR bundles asked for too) and export them here,
    batch by batch."""
    from assets.exports.claims import claim_pending_exports
    from assets.exports.progress import process_claimed_batch, requeue_dead_claims
    from assets.gdpr.requests import process_pending_gdpr_exports
    from assets.gdpr.texts import load_gdpr_texts

    database = open_database()
    storage = open_storage()
    storage.check_writable()
    total_done = total_failed = 0
    while True:
        stale = requeue_dead_claims(database, storage)
        for job_id in stale.requeued:
            click.echo(f"{job_id}\trequeued\tits earlier worker stopped", err=True)
        batches = claim_pending_exports(database.engine, batch_size=batch_size)
        for batch in batches:
            with click.progressbar(
                length=len(batch.job_ids),
                label=f"{batch.batch_id} ({batch.format})",
                file=sys.stderr,
            ) as bar:
                outcome = process_claimed_batch(
                    database, storage, batch, workers=workers, on_user_done=lambda _u: bar.update(1)
                )
            total_done += len(outcome.completed)
            total_failed += len(outcome.failed)
            for job_id in outcome.completed:
                click.echo(f"{job_id}\tcompleted")
            for job_id, message in outcome.failed.items():
                click.echo(f"{job_id}\tfailed\t{message}")
        gdpr_outcomes = process_pending_gdpr_exports(
            database, storage, texts=load_gdpr_texts(), workers=workers
        )
        for outcome in gdpr_outcomes:
            total_done += len(outcome.completed)
            total_failed += len(outcome.failed)
            for job_id in outcome.completed:
                click.echo(f"{job_id}\tcompleted")
            for job_id, message in outcome.failed.items():
                click.echo(f"{job_id}\tfailed\t{message}")
        worked = bool(batches or gdpr_outcomes)
        if once and not worked:
            break
        if not worked:
            time.sleep(interval)
    click.echo(f"{total_done} exports completed, {total_failed} failed", err=True)
    if total_failed:
        sys.exit(1)


@exports.command("list")
@click.argument("user_id")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@friendly_errors
def exports_list(user_id: str, limit: int) -> None:
    """USER_ID's export requests, newest first, with their status."""
    from assets.exports.queue import list_exports

    jobs = list_exports(open_database().engine, user_id, limit=limit)
    if not jobs:
        click.echo(f"no export requests for {user_id}", err=True)
        return
    click.echo("id\tstatus\tformat\ttype\trequested\trecords\tbytes\texpires")
    for job in jobs:
        records = (
            f"{job.records_processed}/{job.records_total}"
            if job.records_total is not None
            else str(job.records_processed)
        )
        click.echo(
            "\t".join(
                [
                    job.id,
                    job.status,
                    job.format,
                    job.export_type,
                    f"{job.created_at:%Y-%m-%d %H:%M:%S}",
                    records,
                    str(job.file_size_bytes or ""),
                    f"{job.expires_at:%Y-%m-%d %H:%M}" if job.expires_at else "",
                ]
            )
        )


@exports.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print the row as JSON")
@friendly_errors
def exports_show(job_id: str, as_json: bool) -> None:
    """Everything about one export request, and a download link while it is valid."""
    from assets.exports.downloads import DownloadError, export_download_link
    from assets.exports.job_status import ExportStatus
    from assets.exports.queue import get_export

    job = get_export(open_database().engine, job_id)
    values = job.as_dict()
    if job.status == ExportStatus.COMPLETED:
        try:
            values["downloadUrl"] = export_download_link(open_storage(), job).url
        except DownloadError as exc:
            values["downloadUrl"] = None
            values["downloadProblem"] = str(exc)
    if as_json:
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        return
    for name, value in values.items():
        if value is None or value == {}:
            continue
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        click.echo(f"{name}: {shown}")


@exports.command("retry")
@click.argument("job_ids", nargs=-1, required=True)
@friendly_errors
def exports_retry(job_ids: tuple[str, ...]) -> None:
    """Put failed (or expired) export requests back in the queue."""
    from assets.exports.queue import retry_exports

    for job in retry_exports(open_database().engine, list(job_ids)):
        click.echo(f"{job.id}\t{job.status}")


@exports.command("cleanup")
@friendly_errors
def exports_cleanup() -> None:
    """Delete export files past their expiry, mark them expired, resend failed webhooks."""
    from assets.exports.expiry import expire_exports
    from assets.exports.notifications import deliver_notifications

    database = open_database()
    storage = open_storage()
    outcome = expire_exports(database.engine, storage)
    for job_id in outcome.expired:
        click.echo(f"{job_id}\texpired")
    for job_id, url in outcome.not_in_storage.items():
        click.echo(f"{job_id}\tleft alone: {url} is not under {storage.root}", err=True)
    delivery = deliver_notifications(database.engine)
    click.echo(
        f"{len(outcome.expired)} exports expired, {outcome.files_deleted} files deleted; "
        f"{len(delivery.sent)} notifications sent, {len(delivery.failed)} failed",
        err=True,
    )


@click.command("serve-downloads")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8765, show_default=True)
@friendly_errors
def serve_downloads(host: str, port: int) -> None:
    """Serve download links of a local storage folder (`/download/<token>`) over HTTP."""
    from assets.exports.downloads import make_download_server

    storage = open_storage()
    if not storage.is_local:
        raise UserError(
            f"{storage.root} is object storage: its download links are presigned URLs, "
            "served by the storage itself"
        )
    server = make_download_server(storage, host, port)
    click.echo(f"serving downloads from {storage.root} on http://{host}:{server.server_port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
