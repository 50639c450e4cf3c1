"""`goalport check`: run the data-quality suites on demand and print what fails, where.

The same suites that gate every export (assets.quality.suites), over the users named or over
everyone, a batch at a time. Exit status 1 when any rule fails, so scripts and CI can use
it as a gate too.
"""

from __future__ import annotations

import json
import sys

import click

from pipelines.cli.common import (
    UserError,
    friendly_errors,
    open_database,
    since_option,
    split_csv,
    until_option,
)

LISTED_USERS = 20


@click.command("check")
@click.option(
    "--users", "users", multiple=True, help="user ids (repeat or comma-separate); default everyone"
)
@click.option(
    "--modules", multiple=True, help="check only what an export of these module kinds holds"
)
@since_option
@until_option
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="users validated together (one great-expectations run per table per batch)",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@friendly_errors
def check(users, modules, since, until, batch_size, as_json) -> None:
    """Run the data-quality suites and report every failing rule (exit 1 if any fails)."""
    from assets.exports.batches import make_filter
    from assets.quality.report import merge_reports
    from assets.quality.suites import run_quality_suites

    filters = make_filter(split_csv(modules) or None, since, until)
    database = open_database()
    user_ids = split_csv(users)
    if user_ids:
        unknown = sorted(set(user_ids) - database.existing_user_ids(user_ids))
        if unknown:
            raise UserError(f"unknown user id: {', '.join(unknown)}")
    else:
        user_ids = database.all_user_ids()
    if not user_ids:
        raise UserError("the database has no users to check")
    reports = []
    batches = [user_ids[i : i + batch_size] for i in range(0, len(user_ids), batch_size)]
    with click.progressbar(batches, label="checking", file=sys.stderr) as bar:
        for chunk in bar:
            batch = database.extract(chunk, filters)
            reports.append(run_quality_suites(batch.tables, filters=filters.as_dict()))
    report = merge_reports(reports)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(format_report(report))
    if not report.passed:
        raise SystemExit(1)


def format_report(report) -> str:
    """The report as a person reads it: a line per table, then each failing rule, then
    the users who cannot be exported and why."""
    by_table = report.by_table()
    lines = [
        f"data-quality check of {len(report.user_ids)} users: {len(report.results)} rules "
        f"on {len(by_table)} tables ({report.engine}, {report.seconds:.1f} s)",
        "",
    ]
    width = max(len(name) for name in by_table)
    for table, results in by_table.items():
        failed = [r for r in results if not r.passed]
        rows = max((r.checked_rows for r in results), default=0)
        verdict = (
            f"FAILED {len(failed)} of {len(results)} rules"
            if failed
            else f"ok ({len(results)} rules)"
        )
        lines.append(f"  {table:<{width}}  {rows:>9,} rows  {verdict}")
    for r in report.failures:
        lines += [
            "",
            f"FAILED {r.key}: {r.description}",
            f"  {r.unexpected_count} of {r.checked_rows} rows; ids {', '.join(r.example_ids)}"
            + (" ..." if r.unexpected_count > len(r.example_ids) else ""),
            f"  users: {_listed(sorted(r.user_ids))}",
        ]
    skipped = [r for r in report.results if r.skipped]
    if skipped:
        lines += ["", "not checked: " + ", ".join(f"{r.key} ({r.skipped})" for r in skipped)]
    affected = sorted(report.affected_user_ids)
    lines.append("")
    if not affected:
        checked = len(report.results) - len(skipped)
        lines.append(f"all {checked} rules checked pass: every user can be exported")
        return "\n".join(lines)
    lines.append(
        f"{len(affected)} of {len(report.user_ids)} users cannot be exported until their rows are fixed:"
    )
    for user_id in affected[:LISTED_USERS]:
        lines.append(f"  {user_id}: " + "; ".join(_user_failures(report, user_id)))
    if len(affected) > LISTED_USERS:
        lines.append(f"  ... and {len(affected) - LISTED_USERS} more (--json lists them all)")
    return "\n".join(lines)


def _user_failures(report, user_id: str) -> list[str]:
    parts = []
    for r in report.failures_of_user(user_id):
        count, ids = r.rows_by_user.get(user_id, (0, ()))
        parts.append(f"{r.key} ({count} {'row' if count == 1 else 'rows'}, e.g. {ids[0]})")
    return parts


def _listed(user_ids: list[str]) -> str:
    shown = ", ".join(user_ids[:LISTED_USERS])
    return shown + (
        f" and {len(user_ids) - LISTED_USERS} more" if len(user_ids) > LISTED_USERS else ""
    )
