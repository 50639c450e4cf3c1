"""Goal templates in the database: create, version, import, read, list, export and rate.

Every version of a template is its own `GoalTemplate` row (same `templateKey`, version
n+1); its `content` is the validated template file (`assets.templates.template_file`: the
format, the personal-data check, planning and diffs). Creating, versioning, importing and
rating each write an audit row. Applying a template is `assets.templates.apply`; the
public catalog in object storage is `assets.templates.catalog`. No Dagster here: the CLI
and the Dagster assets call these functions with a SQLAlchemy engine.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from assets.formats.common import full_name
from assets.templates.template_file import (
    PersonalDataError,
    TemplateDiff,
    TemplateFormatError,
    build_catalog_index,
    build_template_document,
    check_no_personal_data,
    diff_templates,
    dump_template,
    filter_templates,
    load_template,
    make_document,
    validate_template,
)
from resources import schema
from resources.audit import new_id, record_audit, utc_now
from resources.database import transaction

AUDIT_OPERATION = "template"


_t = schema.goal_template


class TemplateError(ValueError):
    """A template request cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class TemplateRecord:
    """One version of a template: its GoalTemplate row with the parsed document."""

    id: str
    template_key: str
    version: int
    author_id: str | None
    name: str
    description: str | None
    category: str | None
    tags: list[str]
    visibility: str
    download_count: int
    rating_sum: int
    rating_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    document: dict

    @property
    def is_public(self) -> bool:
        return self.visibility == "public"

    @property
    def rating(self) -> float | None:
        return round(self.rating_sum / self.rating_count, 2) if self.rating_count else None

    def as_row(self) -> dict:
        """The shape `build_catalog_index` takes."""
        return {
            "id": self.id,
            "templateKey": self.template_key,
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "tags": self.tags,
            "visibility": self.visibility,
            "downloadCount": self.download_count,
            "ratingSum": self.rating_sum,
            "ratingCount": self.rating_count,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "content": self.document,
        }


def record_from_row(row: Mapping[str, Any] | sa.RowMapping) -> TemplateRecord:
    return TemplateRecord(
        id=row["id"],
        template_key=row["templateKey"],
        version=row["version"],
        author_id=row["authorId"],
        name=row["name"],
        description=row["description"],
        category=row["category"],
        tags=json.loads(row["tags"] or "[]"),
        visibility=row["visibility"],
        download_count=row["downloadCount"],
        rating_sum=row["ratingSum"],
        rating_count=row["ratingCount"],
        created_at=row["createdAt"],
        updated_at=row["updatedAt"],
        document=json.loads(row["content"]),
    )


# ---------------------------------------------------------------- creating


def create_template(
    engine: sa.Engine | sa.Connection,
    user_id: str,
    goal_ids: Sequence[str],
    *,
    name: str,
    description: str | None = None,
    category: str | None = None,
    tags: Sequence[str] = (),
    public: bool = False,
    start: dt.date | None = None,
    actor: str | None = None,
) -> TemplateRecord:
    """Version 1 of a new template made from the trees of the user's goals `goal_ids`."""
    with transaction(engine) as conn:
        creator = require_user(conn, user_id)
        document = _document_from_goals(
            conn,
            user_id,
            goal_ids,
            template_key=new_id("tk_"),
            version=1,
            name=name,
            description=description,
            category=category,
            tags=tags,
            start=start,
        )
        return _insert_version(
            conn, document, creator, public=public, operation_type="create", actor=actor
        )


def create_version(
    engine: sa.Engine,
    template_ref: str,
    user_id: str,
    *,
    goal_ids: Sequence[str] = (),
    name: str | None = None,
    description: str | None = None,
    category: str | None = None,
    tags: Sequence[str] | None = None,
    public: bool | None = None,
    start: dt.date | None = None,
    actor: str | None = None,
) -> TemplateRecord:
    """Version n+1 of the author's template: from other goals when `goal_ids` are given,
    else the latest version's goals; details not given are kept from the latest version.
    `public` publishes or unpublishes the template, all its versions."""
    with engine.begin() as conn:
        creator = require_user(conn, user_id)
        latest = _latest_version(conn, resolve_template(conn, template_ref).template_key)
        if latest.author_id != user_id:
            raise TemplateError(
                f"template {template_ref} belongs to another user; only its author can add "
                "versions (import it to make your own copy)"
            )
        details: dict[str, Any] = {
            "template_key": latest.template_key,
            "version": latest.version + 1,
            "name": name if name is not None else latest.name,
            "description": description if description is not None else latest.description,
            "category": category if category is not None else latest.category,
            "tags": tags if tags is not None else latest.tags,
        }
        if goal_ids:
            document = _document_from_goals(conn, user_id, goal_ids, start=start, **details)
        else:
            document = make_document(latest.document["goals"], **details)
        visible = latest.is_public if public is None else public
        record = _insert_version(
            conn, document, creator, public=visible, operation_type="version", actor=actor
        )
        # Visibility belongs to the template: publishing or unpublishing covers every version.
        conn.execute(
            _t.update()
            .where(_t.c.templateKey == record.template_key, _t.c.visibility != record.visibility)
            .values(visibility=record.visibility, updatedAt=record.updated_at)
        )
        return record


def import_template(
    engine: sa.Engine,
    data: bytes,
    user_id: str,
    *,
    where: str = "template file",
    actor: str | None = None,
) -> TemplateRecord:
    """A template file as a new private template of the user (its own key, version 1)."""
    try:
        source = load_template(data, where)
    except TemplateFormatError as exc:
        raise TemplateError(str(exc)) from exc
    with engine.begin() as conn:
        owner = require_user(conn, user_id)
        document = make_document(
            source["goals"],
            template_key=new_id("tk_"),
            version=1,
            name=source["name"],
            description=source.get("description"),
            category=source.get("category"),
            tags=source.get("tags") or (),
        )
        return _insert_version(
            conn,
            document,
            owner,
            public=False,
            operation_type="import",
            actor=actor,
            details={
                "sourceTemplateKey": source["templateKey"],
                "sourceVersion": source["version"],
            },
        )


def require_user(conn: sa.Connection, user_id: str) -> sa.RowMapping:
    """The user's row; TemplateError when there is no such user."""
    row = conn.execute(sa.select(schema.user).where(schema.user.c.id == user_id)).mappings().first()
    if row is None:
        raise TemplateError(f"no user with id {user_id!r}")
    return row


def _document_from_goals(
    conn: sa.Connection, user_id: str, goal_ids: Sequence[str], **details: Any
) -> dict:
    if not goal_ids:
        raise TemplateError("name at least one goal to make the template from")
    g, m = schema.goal, schema.module
    goals = conn.execute(sa.select(g).where(g.c.userId == user_id)).mappings().all()
    owned = {row["id"] for row in goals}
    foreign = [gid for gid in dict.fromkeys(goal_ids) if gid not in owned]
    if foreign:
        raise TemplateError(
            f"user {user_id} has no goal with id {', '.join(foreign)}; a template is made from "
            "the user's own goals"
        )
    kinds = dict(conn.execute(sa.select(m.c.id, m.c.kind).where(m.c.userId == user_id)).all())
    return build_template_document(goals, selected_ids=goal_ids, module_kinds=kinds, **details)


def _insert_version(
    conn: sa.Connection,
    document: dict,
    author: Mapping[str, Any] | sa.RowMapping,
    *,
    public: bool,
    operation_type: str,
    actor: str | None,
    details: dict | None = None,
) -> TemplateRecord:
    try:
        validate_template(document, "the new template")
        check_no_personal_data(
            document, name=full_name(author["firstName"], author["lastName"]), email=author["email"]
        )
    except (TemplateFormatError, PersonalDataError) as exc:
        raise TemplateError(str(exc)) from exc
    now = utc_now()
    row = {
        "id": new_id("tpl_"),
        "templateKey": document["templateKey"],
        "version": document["version"],
        "authorId": author["id"],
        "name": document["name"],
        "description": document["description"],
        "category": document["category"],
        "tags": json.dumps(document["tags"], ensure_ascii=False),
        "visibility": "public" if public else "private",
        "content": dump_template(document).decode("utf-8"),
        "downloadCount": 0,
        "ratingSum": 0,
        "ratingCount": 0,
        "createdAt": now,
        "updatedAt": now,
    }
    try:
        conn.execute(_t.insert().values(**row))
    except sa.exc.IntegrityError as exc:
        raise TemplateError(
            f"version {document['version']} of template {document['templateKey']} was created "
            "at the same time by another request; try again"
        ) from exc
    record_audit(
        conn,
        user_id=author["id"],
        operation=AUDIT_OPERATION,
        operation_type=operation_type,
        data_types=["Goal", "GoalTemplate"],
        record_count=len(document["goals"]),
        actor=actor,
        details={
            "templateId": row["id"],
            "templateKey": row["templateKey"],
            "version": row["version"],
            "visibility": row["visibility"],
            **(details or {}),
        },
    )
    return record_from_row(row)


# ---------------------------------------------------------------- reading


def get_template(
    engine: sa.Engine, template_ref: str, *, user_id: str | None = None
) -> TemplateRecord:
    """A version by its id, or the latest version of a template by its key. With `user_id`,
    only what that user may see: public templates and their own."""
    with engine.connect() as conn:
        return resolve_template(conn, template_ref, user_id=user_id)


def resolve_template(
    conn: sa.Connection, template_ref: str, *, user_id: str | None = None
) -> TemplateRecord:
    """`get_template` in the caller's transaction."""
    query = sa.select(_t).where(sa.or_(_t.c.id == template_ref, _t.c.templateKey == template_ref))
    if user_id is not None:
        query = query.where(sa.or_(_t.c.visibility == "public", _t.c.authorId == user_id))
    rows = conn.execute(query).mappings().all()
    exact = [r for r in rows if r["id"] == template_ref]
    if exact:
        return record_from_row(exact[0])
    if rows:
        return record_from_row(max(rows, key=lambda r: r["version"]))
    hint = " (or it is private to another user)" if user_id is not None else ""
    raise TemplateError(
        f"no template with id or key {template_ref!r}{hint}; `goalport template list` shows them"
    )


def _latest_version(conn: sa.Connection, template_key: str) -> TemplateRecord:
    row = (
        conn.execute(
            sa.select(_t).where(_t.c.templateKey == template_key).order_by(_t.c.version.desc())
        )
        .mappings()
        .first()
    )
    assert row is not None, "the key was just resolved in this transaction: it has versions"
    return record_from_row(row)


def template_versions(engine: sa.Engine, template_ref: str) -> list[TemplateRecord]:
    """Every version of the template `template_ref` belongs to, oldest first."""
    with engine.connect() as conn:
        key = resolve_template(conn, template_ref).template_key
        rows = conn.execute(
            sa.select(_t).where(_t.c.templateKey == key).order_by(_t.c.version)
        ).mappings()
        return [record_from_row(r) for r in rows]


def version_diff(
    engine: sa.Engine, template_ref: str, from_version: int, to_version: int
) -> TemplateDiff:
    """What changed in the template between two of its versions."""
    versions = {r.version: r for r in template_versions(engine, template_ref)}
    for v in (from_version, to_version):
        if v not in versions:
            raise TemplateError(
                f"template {template_ref} has no version {v} (it has {', '.join(map(str, versions))})"
            )
    return diff_templates(versions[from_version].document, versions[to_version].document)


def list_templates(
    engine: sa.Engine,
    *,
    category: str | None = None,
    tag: str | None = None,
    search: str | None = None,
    user_id: str | None = None,
) -> list[dict]:
    """Public templates (and `user_id`'s own private ones), one entry per template in the
    catalog's shape plus `visibility`, filtered by category, tag and words of text."""
    query = sa.select(_t).where(_t.c.visibility == "public")
    if user_id is not None:
        query = sa.select(_t).where(sa.or_(_t.c.visibility == "public", _t.c.authorId == user_id))
    with engine.connect() as conn:
        records = [record_from_row(r) for r in conn.execute(query).mappings()]
    visibility = {}
    for r in sorted(records, key=lambda r: r.version):
        visibility[r.template_key] = r.visibility
    index = build_catalog_index([r.as_row() for r in records], generated_at=utc_now())
    entries = [{**e, "visibility": visibility[e["templateKey"]]} for e in index["templates"]]
    return filter_templates(entries, category=category, tag=tag, text=search)


def export_template(engine: sa.Engine, template_ref: str) -> tuple[TemplateRecord, bytes]:
    """The template file of a version (its stored, validated document)."""
    record = get_template(engine, template_ref)
    return record, dump_template(record.document)


def rate_template(
    engine: sa.Engine | sa.Connection,
    template_ref: str,
    user_id: str,
    stars: int,
    *,
    actor: str | None = None,
) -> TemplateRecord:
    """One rating (1-5 stars) per user per template version; not for the author."""
    if not 1 <= stars <= 5:
        raise TemplateError(f"a rating is 1 to 5 stars, not {stars}")
    a = schema.data_audit_log
    with transaction(engine) as conn:
        require_user(conn, user_id)
        record = resolve_template(conn, template_ref, user_id=user_id)
        if record.author_id == user_id:
            raise TemplateError("authors cannot rate their own templates")
        earlier = conn.execute(
            sa.select(a.c.details).where(
                a.c.userId == user_id,
                a.c.operation == AUDIT_OPERATION,
                a.c.operationType == "rate",
            )
        ).scalars()
        if any(json.loads(d).get("templateId") == record.id for d in earlier):
            raise TemplateError(f"user {user_id} has already rated version {record.version}")
        conn.execute(
            _t.update()
            .where(_t.c.id == record.id)
            .values(ratingSum=_t.c.ratingSum + stars, ratingCount=_t.c.ratingCount + 1)
        )
        record_audit(
            conn,
            user_id=user_id,
            operation=AUDIT_OPERATION,
            operation_type="rate",
            data_types=["GoalTemplate"],
            record_count=1,
            actor=actor,
            details={"templateId": record.id, "templateKey": record.template_key, "stars": stars},
        )
        return resolve_template(conn, record.id)


def read_template_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TemplateError(f"cannot read {path}: {exc.strerror or exc}") from exc
