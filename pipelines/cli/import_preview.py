"""An import as a person sees it at the CLI: a job, its preview printed as a table with the
field-level changes, and the question before applying. `goalport import FILE` and
`goalport backup restore` (a restore is an import of the backup) both end here.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipelines.cli.common import UserError, errors_as_user_errors

# The choices of `assets.imports` (staging.MODES, diff.POLICIES, diff.COUNT_KEYS), repeated
# because importing those modules costs about a second (pyarrow, sqlalchemy) and the
# options are built when `goalport --help` runs; tests/test_cli.py keeps them equal.
MODES = ("merge", "replace", "append")
POLICIES = ("keep-existing", "take-incoming", "newest-wins", "fail")
COLUMNS = ("create", "update", "unchanged", "conflict", "delete", "refused", "invalid")
SHOWN = 10


def _import_error_types() -> tuple[type[Exception], ...]:
    from assets.imports.jobs import ImportJobError
    from assets.imports.parsers.base import ImportFormatError
    from assets.imports.plan import ImportPlanError

    return (ImportFormatError, ImportJobError, ImportPlanError)


import_errors = errors_as_user_errors(_import_error_types)
"""Import errors (format, job, plan) become one line on stderr and exit status 1."""


def mode_option(default: str, help_text: str):
    """`--mode`, one of MODES: how the file's rows land on the user's (import, restore)."""
    return click.option(
        "--mode", type=click.Choice(MODES), default=default, show_default=True, help=help_text
    )


def on_conflict_option(default: str, help_text: str):
    """`--on-conflict`, one of POLICIES, for rows changed on both sides (import, restore)."""
    return click.option(
        "--on-conflict",
        "policy",
        type=click.Choice(POLICIES),
        default=default,
        show_default=True,
        help=help_text,
    )


def preview_then_apply(
    database,
    storage,
    *,
    user_id: str,
    location: str,
    data: bytes,
    mode: str,
    policy: str,
    requested_by: str,
    yes: bool,
    modules: list[str] | None = None,
    **preview_options,
) -> None:
    """Make an import job for the file at `location` holding `data`, print its preview, and
    apply it when the person says so (or `yes`); a declined preview waits on its job."""
    from assets.imports.jobs import create_import_job
    from assets.imports.preview import preview_import

    job_id = create_import_job(
        database.engine,
        user_id=user_id,
        file_name=location.rstrip("/").rsplit("/", 1)[-1],
        file_url=location if "://" in location else str(Path(location).resolve()),
        mode=mode,
        conflict_policy=policy,
        modules=modules,
        requested_by=requested_by,
    )
    click.echo(f"import job {job_id}", err=True)
    result = preview_import(database, storage, job_id, data, **preview_options)
    print_preview(result.plan.preview())
    _apply_if_wanted(database, storage, job_id, result.plan, yes)


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


# ---------------------------------------------------------------- printing


def print_table(header: tuple[str, ...], rows: list[tuple]) -> None:
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=True)]
    for line in [header, tuple("-" * w for w in widths), *rows]:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _short(value, width: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    text = text.replace("\\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"


def print_preview(preview: dict) -> None:
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
        print_table(("table", *COLUMNS), rows)
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
    if mapping.get("unmappable"):
        extra += f" ({mapping['unmappable']} could not be mapped)"
    if mapping["flattened"]:
        extra += f", {mapping['flattened']} moved up (the app keeps 3 goal levels)"
    if mapping.get("adjusted"):
        extra += f", {mapping['adjusted']} adjusted to fit the app's rules"
    click.echo(f"mapping: {summary}{extra}")
    for note in mapping.get("decoded") or []:
        click.echo(f"  note: {note}")
    report = file.get("report") or []
    for action in ("skipped", "flattened", "adjusted"):
        entries = [e for e in report if e["action"] == action]
        for entry in entries[:SHOWN]:
            count = f" ({entry['count']})" if entry.get("count", 1) > 1 else ""
            reason = "; ".join(entry.get("adjustments") or [entry["reason"]])
            click.echo(f"  {action} {entry['source']}{count}: {reason}")
        if len(entries) > SHOWN:
            click.echo(f"  ... and {len(entries) - SHOWN} more {action} (goalport import show JOB)")
