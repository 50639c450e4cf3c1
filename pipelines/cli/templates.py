"""`goalport template ...`: make goal plans shareable, browse them, and start from one.

Thin wrappers over `assets.templates` (versions, apply, catalog); the commands that create something print the
new template id on their last line, so scripts can take it with `tail -n1`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from pipelines.cli.common import (
    UserError,
    errors_as_user_errors,
    friendly_errors,
    open_database,
    open_storage,
    split_csv,
    utc_minute,
)

_DATE = click.DateTime(formats=["%Y-%m-%d"])
_RENAME_BY_KEY = re.compile(r"^(n[1-9][0-9]*)=(.+)$", re.DOTALL)


def _template_error_types() -> tuple[type[Exception], ...]:
    from assets.templates.versions import TemplateError

    return (TemplateError,)


def template_errors(command):
    """TemplateError (and goalport's own errors) become one line on stderr and exit 1."""
    return friendly_errors(errors_as_user_errors(_template_error_types)(command))


@click.group()
def template() -> None:
    """Goal templates: reusable goal plans to share, version, browse and apply."""


def _echo_record(record, verb: str) -> None:
    tags = ", ".join(record.tags) or "-"
    click.echo(
        f"{verb} template {record.template_key} version {record.version} "
        f"({record.visibility}, {len(record.document['goals'])} goals, "
        f"category {record.category or '-'}, tags {tags}): {record.name}"
    )
    click.echo(record.id)


@template.command("create")
@click.argument("user_id")
@click.argument("goal_ids", nargs=-1, required=True)
@click.option("--name", required=True, help="the template's name")
@click.option("--description", help="what the plan is for and how it works")
@click.option("--category", help="e.g. fitness, learning, faith, career")
@click.option("--tag", "tags", multiple=True, help="repeat or separate with commas")
@click.option("--public", is_flag=True, help="list it in the public catalog")
@click.option("--start", type=_DATE, help="day 0 of the plan (default: its first day)")
@template_errors
def create(user_id, goal_ids, name, description, category, tags, public, start) -> None:
    """Make a template from USER's goals GOAL_ID... (each with its whole sub-goal tree)."""
    from assets.templates.versions import create_template

    record = create_template(
        open_database().engine,
        user_id,
        goal_ids,
        name=name,
        description=description,
        category=category,
        tags=split_csv(tags),
        public=public,
        start=start.date() if start else None,
        actor="cli",
    )
    _echo_record(record, "created")


@template.command("update")
@click.argument("template_id")
@click.argument("goal_ids", nargs=-1)
@click.option("--user", "user_id", required=True, help="the template's author")
@click.option("--name")
@click.option("--description")
@click.option("--category")
@click.option("--tag", "tags", multiple=True, help="replaces the tags; repeat or use commas")
@click.option("--public/--private", default=None, help="default: as the latest version")
@click.option("--start", type=_DATE, help="day 0 of the plan when GOAL_IDs are given")
@template_errors
def update(template_id, goal_ids, user_id, name, description, category, tags, public, start):
    """Make version n+1 of a template, from GOAL_IDs or from the latest version's goals."""
    from assets.templates.versions import create_version

    record = create_version(
        open_database().engine,
        template_id,
        user_id,
        goal_ids=goal_ids,
        name=name,
        description=description,
        category=category,
        tags=split_csv(tags) if tags else None,
        public=public,
        start=start.date() if start else None,
        actor="cli",
    )
    _echo_record(record, "updated")


@template.command("export")
@click.argument("template_id")
@click.option("--out", "out", required=True, help="file to write, or - for standard output")
@template_errors
def export_(template_id, out) -> None:
    """Write a template (a version id, or a key for its latest version) to a JSON file."""
    from assets.templates.versions import export_template

    record, data = export_template(open_database().engine, template_id)
    if out == "-":
        sys.stdout.buffer.write(data)
        return
    try:
        Path(out).write_bytes(data)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {record.template_key} version {record.version} to {out} ({len(data)} bytes)")


@template.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--user", "user_id", required=True, help="who gets the (private) template")
@template_errors
def import_(file, user_id) -> None:
    """Add a template file as a private template of USER."""
    from assets.templates.versions import import_template, read_template_file

    record = import_template(
        open_database().engine, read_template_file(file), user_id, where=str(file), actor="cli"
    )
    _echo_record(record, "imported")


@template.command("list")
@click.option("--category")
@click.option("--tag")
@click.option("--search", help="words that must all appear in name, description or tags")
@click.option("--user", "user_id", help="also list this user's private templates")
@click.option(
    "--catalog", "from_catalog", is_flag=True, help="browse the published catalog in storage"
)
@click.option("--json", "as_json", is_flag=True, help="print the entries as JSON")
@template_errors
def list_(category, tag, search, user_id, from_catalog, as_json) -> None:
    """Browse templates: id, key, latest version, downloads, rating, category, tags, name."""
    from assets.templates.catalog import search_catalog
    from assets.templates.versions import list_templates

    if from_catalog:
        if user_id:
            raise UserError("--user lists private templates, which the public catalog has not")
        entries = search_catalog(open_storage(), category=category, tag=tag, search=search)
    else:
        entries = list_templates(
            open_database().engine, category=category, tag=tag, search=search, user_id=user_id
        )
    if as_json:
        click.echo(json.dumps(entries, ensure_ascii=False, indent=2))
        return
    if not entries:
        click.echo("no templates match", err=True)
    for e in entries:
        rating = f"{e['rating']:.1f}/5 ({e['ratingCount']})" if e["rating"] is not None else "-"
        click.echo(
            "\t".join(
                [
                    e["templateId"],
                    e["templateKey"],
                    f"v{e['latestVersion']}",
                    f"{e['downloadCount']} downloads",
                    rating,
                    e["category"] or "-",
                    ",".join(e["tags"]) or "-",
                    e["name"],
                ]
            )
        )


def _rename_option(values: tuple[str, ...], document: dict) -> str | dict[str, str] | None:
    """`--rename TITLE` for a one-goal-tree template, `--rename n3=TITLE` for any goal."""
    keys = {g["key"] for g in document["goals"]}
    by_key, plain = {}, []
    for value in values:
        match = _RENAME_BY_KEY.match(value)
        if match and match.group(1) in keys:
            by_key[match.group(1)] = match.group(2)
        else:
            plain.append(value)
    if len(plain) > 1:
        raise UserError("give one plain --rename TITLE; rename other goals with --rename KEY=TITLE")
    if plain and by_key:
        root = next(g["key"] for g in document["goals"] if g["parentKey"] is None)
        return {root: plain[0], **by_key}
    return plain[0] if plain else (by_key or None)


@template.command("apply")
@click.argument("template_id")
@click.option("--user", "user_id", required=True)
@click.option("--start", type=_DATE, required=True, help="the plan's day 0 (YYYY-MM-DD)")
@click.option(
    "--rename", multiple=True, help="new title of the top-level goal, or KEY=TITLE (repeatable)"
)
@click.option("--module", "module_kind", help="put every goal in this kind of module")
@click.option("--without-subgoals", is_flag=True, help="create only the top-level goals")
@click.option("--preview", is_flag=True, help="show the goals it would create; change nothing")
@template_errors
def apply(template_id, user_id, start, rename, module_kind, without_subgoals, preview) -> None:
    """Create USER's own goals from a template (a new, independent plan every time)."""
    from assets.templates.apply import ApplyOptions, apply_template, preview_apply
    from assets.templates.versions import get_template

    engine = open_database().engine
    record = get_template(engine, template_id, user_id=user_id)
    options = ApplyOptions(
        start=start.date(),
        rename=_rename_option(rename, record.document),
        module_kind=module_kind,
        keep_subgoals=not without_subgoals,
    )
    if preview:
        plan = preview_apply(engine, record.id, user_id, options)
    else:
        plan = apply_template(engine, record.id, user_id, options, actor="cli").plan
    click.echo(f"{record.name} (template {record.template_key} version {record.version}):")
    for g in plan.goals:
        click.echo(
            f"{'  ' * (g.depth + 1)}{g.key} {g.title}  [{g.module_kind or 'no module'}; "
            f"priority {g.priority}; difficulty {g.difficulty or '-'}; "
            f"target {g.target_date.isoformat() if g.target_date else '-'}]"
        )
    if plan.modules_to_create:
        click.echo(f"new modules: {', '.join(plan.modules_to_create)}")
    if preview:
        click.echo(f"preview only: {len(plan.goals)} goals would be created; nothing was changed")
    else:
        click.echo(f"created {len(plan.goals)} goals for {user_id}")


@template.command("versions")
@click.argument("template_id")
@template_errors
def versions(template_id) -> None:
    """Every version of a template: id, version, visibility, goals, downloads, created."""
    from assets.templates.versions import template_versions

    for r in template_versions(open_database().engine, template_id):
        click.echo(
            "\t".join(
                [
                    r.id,
                    f"v{r.version}",
                    r.visibility,
                    f"{len(r.document['goals'])} goals",
                    f"{r.download_count} downloads",
                    utc_minute(r.created_at),
                    r.name,
                ]
            )
        )


@template.command("diff")
@click.argument("template_id")
@click.option("--from", "from_version", type=click.IntRange(min=1), required=True)
@click.option("--to", "to_version", type=click.IntRange(min=1), required=True)
@template_errors
def diff(template_id, from_version, to_version) -> None:
    """What changed between two versions: + added, - removed, ~ changed goals."""
    from assets.templates.versions import version_diff

    result = version_diff(open_database().engine, template_id, from_version, to_version)
    for line in result.describe():
        click.echo(line)


@template.command("applied")
@click.option("--user", "user_id", required=True)
@template_errors
def applied(user_id) -> None:
    """Templates USER applied, and what changed in them since."""
    from assets.templates.apply import applied_templates

    found = applied_templates(open_database().engine, user_id)
    if not found:
        click.echo(f"{user_id} has not applied any template", err=True)
    for a in found:
        state = "up to date" if a.changes is None else f"version {a.latest_version} is out"
        click.echo(f"{a.template_key}  {a.name}: applied version {a.applied_version}, {state}")
        if a.changes is not None:
            for line in a.changes.describe():
                click.echo(f"  {line}")


@template.command("rate")
@click.argument("template_id")
@click.option("--user", "user_id", required=True)
@click.option("--stars", type=click.IntRange(1, 5), required=True)
@template_errors
def rate(template_id, user_id, stars) -> None:
    """Rate a template version 1-5 stars (once per user)."""
    from assets.templates.versions import rate_template

    record = rate_template(open_database().engine, template_id, user_id, stars, actor="cli")
    click.echo(f"{record.name}: {record.rating:.2f}/5 from {record.rating_count} ratings")


@template.command("catalog")
@template_errors
def catalog() -> None:
    """Rebuild the public catalog in storage now (what the template_catalog asset does)."""
    from assets.templates.catalog import rebuild_catalog

    storage = open_storage()
    result = rebuild_catalog(open_database().engine, storage)
    click.echo(
        f"{result.templates} public templates, {result.versions} versions "
        f"({len(result.files_written)} files written, {len(result.files_deleted)} removed)"
    )
    click.echo(result.index_url)
