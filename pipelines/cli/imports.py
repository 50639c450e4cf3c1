"""`goalport import FILE --user USER`, `goalport import confirm|undo|show JOB`,
`goalport import guide [APP]`, `goalport imports list USER`: bring a file in, see what it
would change, apply, take back; how to export from another app.

`goalport import FILE` previews first (a table of what would be created, updated, left
unchanged, in conflict, deleted, refused or invalid, with field-level changes), then asks
before applying; `--yes` applies without asking, and a declined preview stays on its job
for `goalport import confirm JOB`. The work is `assets.imports.apply`, the code Dagster runs.
"""

from __future__ import annotations

import json

import click

from pipelines.cli.common import (
    friendly_errors,
    modules_option,
    open_database,
    open_storage,
    passphrase_env_option,
    passphrase_from,
    read_file,
    split_csv,
)
from pipelines.cli.import_preview import (
    import_errors,
    mode_option,
    on_conflict_option,
    preview_then_apply,
    print_preview,
    print_table,
)

FILE_USAGE = "FILE --user USER [options]"


class _ImportGroup(click.Group):
    """`goalport import FILE ...` and `goalport import confirm JOB` under one name: a first
    argument that is not a subcommand is the file to import (the hidden `file` command).
    The group's help is that command's: how to import a file, every option, and the
    subcommands (click would show only the subcommands)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["file", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, FILE_USAGE)
        formatter.write_usage(ctx.command_path, "confirm|undo|show JOB_ID", prefix="   or: ")
        formatter.write_usage(ctx.command_path, "guide [APP]", prefix="   or: ")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        params = self.commands["file"].get_params(ctx)
        records = [p.get_help_record(ctx) for p in params if isinstance(p, click.Option)]
        with formatter.section("Options"):
            formatter.write_dl([r for r in records if r is not None])
        self.format_commands(ctx, formatter)


class _ImportFileCommand(click.Command):
    """The hidden `file` command, whose usage reads as it is typed: without `file`."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.parent.command_path if ctx.parent else "import", FILE_USAGE)


@click.group(
    "import", cls=_ImportGroup, short_help="Import a file; confirm, undo or show an import."
)
def import_group() -> None:
    """Import FILE into USER's data, or confirm, undo or show an import job.

    FILE is a local path or a file:// or s3:// URL: goalport's own export or backup
    (age-encrypted too) or another app's export, recognised from its content. The import
    previews what would change (created, updated, unchanged, in conflict, deleted, refused,
    invalid), then asks before applying; a declined preview waits on its job for
    `goalport import confirm JOB_ID`."""


@import_group.command("file", cls=_ImportFileCommand, hidden=True)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--user", "user_id", metavar="USER", required=True, help="the user to import into")
@mode_option(
    "merge",
    "merge: create and update, never delete; replace: also delete the user's rows the "
    "file does not hold; append: every row gets a new id, nothing is updated",
)
@on_conflict_option(
    "fail", "rows changed both in the file and in the database since the file was made"
)
@modules_option
@passphrase_env_option("the environment variable holding the passphrase of an age-encrypted file")
@click.option(
    "--max-bad-rows",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="share of invalid rows above which the import stops",
)
@click.option("--yes", is_flag=True, help="apply without asking")
@friendly_errors
@import_errors
def import_file(file, user_id, mode, policy, modules, passphrase_env, max_bad_rows, yes) -> None:
    """Preview FILE for USER, then apply it when you say so."""
    passphrase = passphrase_from(passphrase_env) if passphrase_env else None
    source = read_file(file)
    preview_then_apply(
        open_database(),
        open_storage(),
        user_id=user_id,
        location=source.location,
        data=source.data,
        mode=mode,
        policy=policy,
        modules=split_csv(modules) or None,
        requested_by="cli",
        yes=yes,
        passphrase=passphrase,
        max_bad_share=max_bad_rows,
    )


@import_group.command("confirm")
@click.argument("job_id")
@friendly_errors
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
@friendly_errors
@import_errors
def import_undo(job_id: str) -> None:
    """Put back every row an applied import changed (refused if they changed since)."""
    from assets.imports.undo import undo_import

    result = undo_import(open_database(), job_id, actor="cli")
    click.echo(f"undid import {job_id}: {result.rows_restored} rows restored")


@import_group.command("show")
@click.argument("job_id")
@friendly_errors
@import_errors
def import_show(job_id: str) -> None:
    """Print a job's stored preview."""
    from assets.imports.jobs import get_import_job

    job = get_import_job(open_database().engine, job_id)
    click.echo(f"import job {job_id}: {job['status']} ({job['fileName']}, user {job['userId']})")
    if job["errorMessage"]:
        click.echo(f"error: {job['errorMessage']}")
    if job["previewData"]:
        print_preview(json.loads(job["previewData"]))


@import_group.command("guide")
@click.argument("app", required=False)
@friendly_errors
def import_guide(app: str | None) -> None:
    """How to export from APP (every supported app when none is named), and what goalport
    keeps of its export and what it cannot. The text is Markdown."""
    from assets.imports.parsers.detect import export_guides

    guides = export_guides()
    if app is None:
        click.echo("\n".join(guides.values()), nl=False)
        return
    wanted = "_".join(app.casefold().replace("-", " ").split())
    if wanted not in guides:
        raise click.BadParameter(
            f"no guide for {app!r}; supported apps: {', '.join(guides)}", param_hint="APP"
        )
    click.echo(guides[wanted], nl=False)


@click.group("imports")
def imports_group() -> None:
    """Import jobs."""


@imports_group.command("list")
@click.argument("user_id")
@friendly_errors
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
    print_table(header, rows)
