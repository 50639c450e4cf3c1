"""`goalport import FILE --user USER`, `goalport import confirm|undo|show JOB`,
`goalport imports list USER`: bring a file in, see what it would change, apply, take back.

`goalport import FILE` previews first (a table of what would be created, updated, left
unchanged, in conflict, deleted, refused or invalid, with field-level changes), then asks
before applying; `--yes` applies without asking, and a declined preview stays on its job
for `goalport import confirm JOB`. The work is `assets.imports.apply`, the code Dagster runs.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import click

from pipelines.cli import UserError, friendly_errors, open_database, open_storage, split_csv

MODES = ("merge", "replace", "append")
POLICIES = ("keep-existing", "take-incoming", "newest-wins", "fail")
COLUMNS = ("create", "update", "unchanged", "conflict", "delete", "refused", "invalid")
SHOWN = 10


def import_errors(command):
    """Import errors become one line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from assets.imports.detect import ImportFormatError
        from assets.imports.jobs import ImportJobError
        from assets.imports.plan import ImportPlanError

        try:
            return command(*args, **kwargs)
        except (ImportFormatError, ImportJobError, ImportPlanError) as exc:
            raise UserError(str(exc)) from exc

    return friendly_errors(wrapper)


class _ImportGroup(click.Group):
    """`goalport import FILE ...` and `goalport import confirm JOB` under one name: a first
    argument that is not a subcommand is the file to import."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["file", *args]
        return super().parse_args(ctx, args)


@click.group("import", cls=_ImportGroup)
def import_group() -> None:
    """Import a file (goalport's own exports and backups, or another app's export):
    `goalport import FILE --user USER`; then `confirm`, `undo` or `show` a job."""


@import_group.command("file", hidden=True)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--user", "user_id", required=True, help="the user to import into")
@click.option("--mode", type=click.Choice(MODES), default="merge", show_default=True)
@click.option(
    "--on-conflict",
    "policy",
    type=click.Choice(POLICIES),
    default="fail",
    show_default=True,
    help="rows changed both in the file and in the database since the file was made",
)
@click.option("--modules", multiple=True, help="only these module kinds, e.g. fitness,bible")
@click.option(
    "--passphrase-env",
    metavar="VAR",
    help="the environment variable holding the passphrase of an age-encrypted file",
)
@click.option(
    "--max-bad-rows",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="share of invalid rows above which the import stops",
)
@click.option("--yes", is_flag=True, help="apply without asking")
@import_errors
def import_file(file, user_id, mode, policy, modules, passphrase_env, max_bad_rows, yes) -> None:
    """Preview FILE for USER, then apply it when you say so."""
    from assets.imports.jobs import create_import_job
    from assets.imports.preview import preview_import

    passphrase = _passphrase(passphrase_env)
    path = Path(file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror or exc}") from exc
    database = open_database()
    storage = open_storage()
    job_id = create_import_job(
        database.engine,
        user_id=user_id,
        file_name=path.name,
        file_url=str(path.resolve()),
        mode=mode,
        conflict_policy=policy,
        modules=split_csv(modules) or None,
        requested_by="cli",
    )
    click.echo(f"import job {job_id}", err=True)
    result = preview_import(
        database, storage, job_id, data, passphrase=passphrase, max_bad_share=max_bad_rows
    )
    _print_preview(result.plan.preview())
    _apply_if_wanted(database, storage, job_id, result.plan, yes)


def _passphrase(variable: str | None) -> str | None:
    if not variable:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise UserError(f"--passphrase-env {variable}: that environment variable is not set")
    return value


def _apply_if_wanted(database, storage, job_id: str, plan, yes: bool) -> None:
    from assets.imports.apply import apply_import

    if plan.unresolved_conflicts:
        raise UserError(
            f"{plan.unresolved_conflicts} rows are in conflict and --on-conflict is 'fail': "
            "nothing was applied; import again with --on-conflict keep-existing, "
            "take-incoming or newest-wins"
        )
    if not plan.has_changes:
        click.echo("nothing to change: the database already holds what the file holds")
        if yes:
            apply_import(database, storage, job_id, actor="cli")
        return
    if not yes and not click.confirm("apply these changes?", default=False, err=True):
        click.echo(f"not applied; apply it later with: goalport import confirm {job_id}")
        return
    result = apply_import(database, storage, job_id, actor="cli")
    click.echo(
        f"applied import {job_id}: {result.rows_written} rows written in "
        f"{result.seconds:.2f}s; undo with: goalport import undo {job_id}"
    )


@import_group.command("confirm")
@click.argument("job_id")
@import_errors
def import_confirm(job_id: str) -> None:
    """Apply a previewed import job (the plan that was previewed, or nothing)."""
    from assets.imports.apply import apply_import

    database = open_database()
    result = apply_import(database, open_storage(), job_id, actor="cli")
    click.echo(
        f"applied import {job_id}: {result.rows_written} rows written; "
        f"undo with: goalport import undo {job_id}"
    )


@import_group.command("undo")
@click.argument("job_id")
@import_errors
def import_undo(job_id: str) -> None:
    """Put back every row an applied import changed (refused if they changed since)."""
    from assets.imports.undo import undo_import

    result = undo_import(open_database(), job_id, actor="cli")
    click.echo(f"undid import {job_id}: {result.rows_restored} rows restored")


@import_group.command("show")
@click.argument("job_id")
@import_errors
def import_show(job_id: str) -> None:
    """Print a job's stored preview."""
    from assets.imports.jobs import get_import_job

    job = get_import_job(open_database().engine, job_id)
    click.echo(f"import job {job_id}: {job['status']} ({job['fileName']}, user {job['userId']})")
    if job["errorMessage"]:
        click.echo(f"error: {job['errorMessage']}")
    if job["previewData"]:
        _print_preview(json.loads(job["previewData"]))


@click.group("imports")
def imports_group() -> None:
    """Import jobs."""


@imports_group.command("list")
@click.argument("user_id")
@import_errors
def imports_list(user_id: str) -> None:
    """A user's import jobs, newest first."""
    from assets.imports.jobs import list_import_jobs

    jobs = list_import_jobs(open_database().engine, user_id)
    if not jobs:
        click.echo(f"no imports for user {user_id}")
        return
    rows = [
        (
            j["id"],
            j["status"],
            j["createdAt"].strftime("%Y-%m-%d %H:%M"),
            j["mode"],
            j["sourceApp"] or "-",
            j["fileName"] or "-",
            str(j["recordsImported"]),
            str(j["conflictsDetected"]),
        )
        for j in jobs
    ]
    header = ("job", "status", "created (UTC)", "mode", "source", "file", "written", "conflicts")
    _print_table(header, rows)


def add_import_commands(main: click.Group) -> None:
    main.add_command(import_group)
    main.add_command(imports_group)


# ---------------------------------------------------------------- printing


def _print_table(header: tuple[str, ...], rows: list[tuple]) -> None:
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=True)]
    for line in [header, tuple("-" * w for w in widths), *rows]:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _short(value, width: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    text = text.replace("\\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_preview(preview: dict) -> None:
    file = preview.get("file") or {}
    if file:
        encrypted = ", encrypted" if file.get("encrypted") else ""
        click.echo(
            f"{file.get('name')}: {file.get('format')} from {file.get('sourceApp')}{encrypted}, "
            f"{preview.get('rowsInFile')} rows; mode {preview.get('mode')}, "
            f"conflicts: {preview.get('conflictPolicy')}"
            + (f", modules {', '.join(preview['modules'])}" if preview.get("modules") else "")
        )
    _print_mapping(file)
    counts = preview.get("counts") or {}
    rows = [
        (table, *(str(c.get(k, 0)) for k in COLUMNS))
        for table, c in counts.items()
        if any(c.values())
    ]
    totals = preview.get("totals") or {}
    if rows:
        rows.append(("total", *(str(totals.get(k, 0)) for k in COLUMNS)))
        _print_table(("table", *COLUMNS), rows)
    for table, entries in (preview.get("changes") or {}).items():
        updates = [e for e in entries if e["action"] == "update"][:SHOWN]
        for entry in updates:
            fields = "; ".join(
                f"{k}: {_short(old, 30)} → {_short(new, 30)}"
                for k, (old, new) in entry["fields"].items()
            )
            click.echo(f"  update {table} {entry['id']}: {fields}")
        for entry in [e for e in entries if e["action"] == "delete"][:SHOWN]:
            click.echo(f"  delete {table} {entry['id']}")
    for conflict in (preview.get("conflicts") or [])[:SHOWN]:
        click.echo(
            f"  conflict {conflict['table']} {conflict['id']} ({conflict['resolution']}): "
            f"database changed {conflict['existingUpdatedAt']}, file has "
            f"{conflict['incomingUpdatedAt']}; fields {', '.join(conflict['fields'])}"
        )
    for refused in (preview.get("refused") or [])[:SHOWN]:
        click.echo(f"  refused {refused['table']} {refused['id']}: {refused['reason']}")
    invalid = preview.get("invalidRows") or []
    for issue in invalid[:SHOWN]:
        where = f"{issue['table']} row {issue['row']}" + (
            f" ({issue['id']})" if issue.get("id") else ""
        )
        field = f", field {issue['field']}" if issue.get("field") else ""
        click.echo(f"  invalid {where}{field}: {issue['reason']}")
    more = (preview.get("invalidRowCount") or len(invalid)) - min(len(invalid), SHOWN)
    if more > 0:
        click.echo(f"  ... and {more} more invalid rows (goalport import show JOB)")
    for warning in preview.get("warnings") or []:
        click.echo(f"  note: {warning}")


def _print_mapping(file: dict) -> None:
    """Another app's file: what became what, and every item left out with its reason."""
    mapping = file.get("mapping")
    if not mapping:
        return
    parts = [
        f"{count} items imported as {table}" if i == 0 else f"{count} as {table}"
        for i, (table, count) in enumerate(mapping["imported"].items())
    ]
    summary = ", ".join(parts) or "nothing imported"
    extra = f"; {mapping['skipped']} skipped"
    if mapping["flattened"]:
        extra += f", {mapping['flattened']} moved up (the app keeps 3 goal levels)"
    click.echo(f"mapping: {summary}{extra}")
    report = file.get("report") or []
    for action in ("skipped", "flattened"):
        entries = [e for e in report if e["action"] == action]
        for entry in entries[:SHOWN]:
            count = f" ({entry['count']})" if entry.get("count", 1) > 1 else ""
            click.echo(f"  {action} {entry['source']}{count}: {entry['reason']}")
        if len(entries) > SHOWN:
            click.echo(f"  ... and {len(entries) - SHOWN} more {action} (goalport import show JOB)")
