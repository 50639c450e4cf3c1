"""Applying a goal template: the template's goals created for a user, customised first.

`preview_apply` shows the goals (and the modules to add) without writing; `apply_template`
creates them in one transaction, counts a download, and records which template version was
applied: an audit row, plus an `ExternalRef` with sourceApp "template" per goal created,
so that `applied_templates` can later show the user what changed in newer versions.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.templates.template_file import (
    PlannedGoal,
    TemplateDiff,
    TemplateFormatError,
    diff_templates,
    plan_goals,
)
from assets.templates.versions import (
    AUDIT_OPERATION,
    TemplateError,
    TemplateRecord,
    record_from_row,
    require_user,
    resolve_template,
)
from resources import schema
from resources.audit import new_id, record_audit, utc_now
from resources.database import transaction

TEMPLATE_SOURCE_APP = "template"
MODULE_KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


_t = schema.goal_template


@dataclass(frozen=True)
class ApplyOptions:
    """How a user customises a template before it becomes their goals."""

    start: dt.date
    rename: str | Mapping[str, str] | None = None
    module_kind: str | None = None
    keep_subgoals: bool = True
    only: Collection[str] | None = None  # the template goal keys to create; None: all


@dataclass
class ApplyPlan:
    """What applying would do: the goals it creates and the modules it must add."""

    template: TemplateRecord
    goals: list[PlannedGoal]
    modules_to_create: list[str]


@dataclass
class ApplyResult:
    plan: ApplyPlan
    application_id: str
    goal_ids: dict[str, str] = field(default_factory=dict)  # template key -> new Goal.id
    module_ids_created: dict[str, str] = field(default_factory=dict)  # kind -> new Module.id


def preview_apply(
    engine: sa.Engine, template_ref: str, user_id: str, options: ApplyOptions
) -> ApplyPlan:
    """The goals applying would create, changing nothing."""
    with engine.connect() as conn:
        require_user(conn, user_id)
        return _plan(conn, resolve_template(conn, template_ref, user_id=user_id), user_id, options)


def apply_template(
    engine: sa.Engine | sa.Connection,
    template_ref: str,
    user_id: str,
    options: ApplyOptions,
    *,
    actor: str | None = None,
) -> ApplyResult:
    """Create the template's goals for the user in one transaction and count a download.
    Every application is a new, independent plan."""
    with transaction(engine) as conn:
        require_user(conn, user_id)
        record = resolve_template(conn, template_ref, user_id=user_id)
        plan = _plan(conn, record, user_id, options)
        result = ApplyResult(plan=plan, application_id=new_id("app_"))
        now = utc_now()
        module_ids = _module_ids_by_kind(conn, user_id)
        for kind in plan.modules_to_create:
            module_id = new_id()
            conn.execute(
                schema.module.insert().values(
                    id=module_id,
                    userId=user_id,
                    kind=kind,
                    name=kind.replace("_", " ").replace("-", " ").capitalize(),
                    isActive=True,
                    createdAt=now,
                )
            )
            module_ids[kind] = result.module_ids_created[kind] = module_id
        goal_rows, ref_rows = [], []
        for planned in plan.goals:
            goal_id = result.goal_ids[planned.key] = new_id()
            goal_rows.append(
                {
                    "id": goal_id,
                    "userId": user_id,
                    "moduleId": module_ids.get(planned.module_kind)
                    if planned.module_kind
                    else None,
                    "parentGoalId": result.goal_ids.get(planned.parent_key)
                    if planned.parent_key
                    else None,
                    "title": planned.title,
                    "description": planned.description,
                    "priority": planned.priority,
                    "difficulty": planned.difficulty,
                    "targetDate": planned.target_date,
                    "isCompleted": False,
                    "completedAt": None,
                    "createdAt": now,
                    "updatedAt": now,
                }
            )
            ref_rows.append(
                {
                    "id": new_id("xr_"),
                    "userId": user_id,
                    "sourceApp": TEMPLATE_SOURCE_APP,
                    "externalId": f"{record.template_key}/v{record.version}/{result.application_id}/{planned.key}",
                    "tableName": "Goal",
                    "localId": goal_id,
                    "extra": json.dumps(
                        {
                            "templateKey": record.template_key,
                            "version": record.version,
                            "applicationId": result.application_id,
                            "key": planned.key,
                        }
                    ),
                    "createdAt": now,
                    "updatedAt": now,
                }
            )
        conn.execute(schema.goal.insert(), goal_rows)
        conn.execute(schema.external_ref.insert(), ref_rows)
        conn.execute(
            _t.update().where(_t.c.id == record.id).values(downloadCount=_t.c.downloadCount + 1)
        )
        record_audit(
            conn,
            user_id=user_id,
            operation=AUDIT_OPERATION,
            operation_type="apply",
            data_types=["Goal", "Module"] if plan.modules_to_create else ["Goal"],
            record_count=len(goal_rows),
            actor=actor,
            details={
                "templateId": record.id,
                "templateKey": record.template_key,
                "version": record.version,
                "applicationId": result.application_id,
                "start": options.start.isoformat(),
                "modulesCreated": plan.modules_to_create,
            },
        )
    return result


def _plan(
    conn: sa.Connection, record: TemplateRecord, user_id: str, options: ApplyOptions
) -> ApplyPlan:
    kind = options.module_kind.strip().lower() if options.module_kind else None
    if kind is not None and not MODULE_KIND_PATTERN.match(kind):
        raise TemplateError(
            f"module kind {options.module_kind!r} is not valid: use a lowercase word such as "
            "fitness, learning, bible, work or personal"
        )
    try:
        goals = plan_goals(
            record.document,
            start=options.start,
            rename=options.rename,
            keep_subgoals=options.keep_subgoals,
            module_kind=kind,
            only=options.only,
        )
    except TemplateFormatError as exc:
        raise TemplateError(str(exc)) from exc
    existing = _module_ids_by_kind(conn, user_id)
    wanted = dict.fromkeys(g.module_kind for g in goals if g.module_kind)
    return ApplyPlan(
        template=record, goals=goals, modules_to_create=[k for k in wanted if k not in existing]
    )


def _module_ids_by_kind(conn: sa.Connection, user_id: str) -> dict[str, str]:
    """The user's module of each kind: an active one first, then the oldest."""
    m = schema.module
    rows = conn.execute(
        sa.select(m.c.id, m.c.kind)
        .where(m.c.userId == user_id)
        .order_by(m.c.isActive.desc(), m.c.createdAt, m.c.id)
    ).all()
    result: dict[str, str] = {}
    for module_id, kind in rows:
        result.setdefault(kind, module_id)
    return result


# ---------------------------------------------------------------- after applying


@dataclass(frozen=True)
class AppliedTemplate:
    """The last version of a template a user applied, and the newest they could have."""

    template_key: str
    name: str
    applied_version: int
    applied_at: dt.datetime
    latest_version: int
    changes: TemplateDiff | None  # None when the applied version is the latest


def applied_templates(engine: sa.Engine, user_id: str) -> list[AppliedTemplate]:
    """Each template the user applied, with what changed since the version they applied."""
    a = schema.data_audit_log
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.details, a.c.createdAt)
            .where(
                a.c.userId == user_id,
                a.c.operation == AUDIT_OPERATION,
                a.c.operationType == "apply",
            )
            .order_by(a.c.createdAt, a.c.id)
        ).all()
        last: dict[str, tuple[int, dt.datetime]] = {}
        for details, created in rows:
            d = json.loads(details)
            last[d["templateKey"]] = (d["version"], created)
        result = []
        for key, (applied_version, applied_at) in last.items():
            versions = {
                r["version"]: r
                for r in conn.execute(
                    sa.select(_t).where(
                        _t.c.templateKey == key,
                        sa.or_(_t.c.visibility == "public", _t.c.authorId == user_id),
                    )
                ).mappings()
            }
            if not versions:
                continue
            latest = record_from_row(versions[max(versions)])
            changes = None
            if latest.version > applied_version and applied_version in versions:
                changes = diff_templates(
                    record_from_row(versions[applied_version]).document, latest.document
                )
            result.append(
                AppliedTemplate(
                    template_key=key,
                    name=latest.name,
                    applied_version=applied_version,
                    applied_at=applied_at,
                    latest_version=latest.version,
                    changes=changes,
                )
            )
    return result
