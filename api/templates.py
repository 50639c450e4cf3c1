"""Goal templates over HTTP: the public catalog plus the caller's own
(`GET /api/v1/templates`), one template (`GET .../{id}`), a new one from the caller's goals
(`POST /api/v1/templates`, refused with where when it holds the caller's name or e-mail),
applied with customisation (`POST .../{id}/apply`), rated (`POST .../{id}/rating`).

A private template of another user is answered 404, as a missing one is. The work is
`assets.templates` (the code `goalport template` runs); the author's id is never shown.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.auth import Caller, ConfigDep, TemplatesCaller
from api.errors import ApiError, error_responses, not_found
from api.exports import IsoDate
from assets.templates.apply import ApplyOptions, apply_template, preview_apply
from assets.templates.template_file import PersonalDataError
from assets.templates.versions import (
    TemplateError,
    TemplateRecord,
    create_template,
    get_template,
    list_templates,
    rate_template,
)

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])
TemplateId = Annotated[str, Path(max_length=200)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TemplateSummary(BaseModel):
    templateId: str  # noqa: N815 (the API's field names are camelCase)
    templateKey: str  # noqa: N815
    name: str
    description: str | None
    category: str | None
    tags: list[str]
    visibility: str
    latestVersion: int  # noqa: N815
    goalCount: int  # noqa: N815
    durationDays: int | None  # noqa: N815
    downloadCount: int  # noqa: N815
    rating: float | None
    ratingCount: int  # noqa: N815


class TemplateList(BaseModel):
    items: list[TemplateSummary]


class TemplateBody(BaseModel):
    templateId: str  # noqa: N815
    templateKey: str  # noqa: N815
    version: int
    name: str
    description: str | None
    category: str | None
    tags: list[str]
    visibility: str
    mine: bool = Field(description="the caller made it")
    downloadCount: int  # noqa: N815
    rating: float | None
    ratingCount: int  # noqa: N815
    createdAt: dt.datetime  # noqa: N815
    goals: list[dict[str, Any]] = Field(description="key, parentKey, title, targetOffsetDays...")


class PersonalDataCheck(BaseModel):
    passed: bool
    checked: list[str] = Field(description="what the template's texts were searched for")


class CreatedTemplate(TemplateBody):
    personalDataCheck: PersonalDataCheck  # noqa: N815


class NewTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    goalIds: list[Text] = Field(min_length=1, max_length=200)  # noqa: N815
    name: Text
    description: str | None = Field(default=None, max_length=2000)
    category: Text | None = None
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=20
    )
    public: bool = False
    start: IsoDate | None = Field(default=None, description="the plan's day 0 (YYYY-MM-DD)")


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: IsoDate = Field(description="the day the plan starts (YYYY-MM-DD)")
    goals: list[Text] | None = Field(
        default=None, max_length=500, description="the template goal keys to create (all if absent)"
    )
    titles: dict[Text, Text] | None = Field(
        default=None, max_length=500, description="new titles by template goal key"
    )
    moduleKind: Annotated[str, StringConstraints(max_length=40)] | None = None  # noqa: N815
    keepSubgoals: bool = True  # noqa: N815
    preview: bool = Field(default=False, description="show what would be created, change nothing")


class AppliedGoal(BaseModel):
    key: str
    goalId: str | None  # noqa: N815
    title: str
    parentKey: str | None  # noqa: N815
    targetDate: dt.date | None  # noqa: N815
    moduleKind: str | None  # noqa: N815


class ApplyResultBody(BaseModel):
    applicationId: str | None  # noqa: N815
    templateId: str  # noqa: N815
    version: int
    goals: list[AppliedGoal]
    modulesCreated: list[str]  # noqa: N815


class RatingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stars: int = Field(ge=1, le=5)


def _body(record: TemplateRecord, caller: Caller) -> dict[str, Any]:
    return {
        "templateId": record.id,
        "templateKey": record.template_key,
        "version": record.version,
        "name": record.name,
        "description": record.description,
        "category": record.category,
        "tags": record.tags,
        "visibility": record.visibility,
        "mine": record.author_id == caller.user_id,
        "downloadCount": record.download_count,
        "rating": record.rating,
        "ratingCount": record.rating_count,
        "createdAt": record.created_at,
        "goals": record.document.get("goals", []),
    }


def _visible(config, template_id: str, caller: Caller) -> TemplateRecord:
    try:
        return get_template(config.database.engine, template_id, user_id=caller.user_id)
    except TemplateError as exc:
        raise not_found("template") from exc


def _audited(config, caller: Caller, operation: str, **details: Any):
    return caller.audited(
        config.database.engine, operation, operation_type="template", details=details
    )


def _record_read(config, caller: Caller, operation: str, **details: Any) -> None:
    caller.record_read(
        config.database.engine, operation, operation_type="template", details=details
    )


@router.get(
    "",
    response_model=TemplateList,
    responses=error_responses(401, 403, 404, 422, 429),
    summary="The public template catalog and the caller's own templates",
)
def get_templates(
    caller: TemplatesCaller,
    config: ConfigDep,
    category: str | None = Query(default=None, max_length=200),
    tag: str | None = Query(default=None, max_length=200),
    q: str | None = Query(default=None, max_length=200, description="words of the text"),
) -> TemplateList:
    entries = list_templates(
        config.database.engine, category=category, tag=tag, search=q, user_id=caller.user_id
    )
    _record_read(config, caller, "template-list", count=len(entries))
    fields = TemplateSummary.model_fields
    return TemplateList(
        items=[TemplateSummary(**{k: v for k, v in e.items() if k in fields}) for e in entries]
    )


@router.get(
    "/{templateId}",
    response_model=TemplateBody,
    responses=error_responses(401, 403, 404, 429),
    summary="One template (a version id, or a template key for its latest version)",
)
def get_one_template(
    templateId: TemplateId,  # noqa: N803
    caller: TemplatesCaller,
    config: ConfigDep,
) -> TemplateBody:
    record = _visible(config, templateId, caller)
    _record_read(config, caller, "template-read", templateId=record.id)
    return TemplateBody(**_body(record, caller))


@router.post(
    "",
    status_code=201,
    response_model=CreatedTemplate,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429),
    summary="Make a template from the caller's goals (refused if it holds their name/e-mail)",
)
def post_template(body: NewTemplate, caller: TemplatesCaller, config: ConfigDep) -> CreatedTemplate:
    try:
        with _audited(config, caller, "template-create") as entry:
            record = create_template(
                entry.conn,
                caller.user_id,
                body.goalIds,
                name=body.name,
                description=body.description,
                category=body.category,
                tags=body.tags,
                public=body.public,
                start=body.start,
                actor=caller.actor,
            )
            entry.details["templateId"] = record.id
    except TemplateError as exc:
        if isinstance(exc.__cause__, PersonalDataError):
            raise ApiError(422, "personal_data", str(exc)) from exc
        raise ApiError(422, "invalid", str(exc), field="goalIds") from exc
    check = PersonalDataCheck(passed=True, checked=["name", "e-mail address", "e-mail user name"])
    return CreatedTemplate(**_body(record, caller), personalDataCheck=check)


@router.post(
    "/{templateId}/apply",
    status_code=201,
    response_model=ApplyResultBody,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429),
    summary="Create the template's goals for the caller, customised",
)
def post_apply(
    templateId: TemplateId,  # noqa: N803
    body: ApplyRequest,
    caller: TemplatesCaller,
    config: ConfigDep,
) -> ApplyResultBody:
    record = _visible(config, templateId, caller)
    options = ApplyOptions(
        start=body.start,
        rename=body.titles,
        module_kind=body.moduleKind,
        keep_subgoals=body.keepSubgoals,
        only=body.goals,
    )
    engine = config.database.engine
    details = {"templateId": record.id, "preview": body.preview}
    try:
        if body.preview:
            plan, application_id, goal_ids = (
                preview_apply(engine, record.id, caller.user_id, options),
                None,
                {},
            )
            _record_read(config, caller, "template-apply", **details)
        else:
            with _audited(config, caller, "template-apply", **details) as entry:
                result = apply_template(
                    entry.conn, record.id, caller.user_id, options, actor=caller.actor
                )
            plan, application_id, goal_ids = result.plan, result.application_id, result.goal_ids
    except TemplateError as exc:
        raise ApiError(422, "invalid", str(exc)) from exc
    return ApplyResultBody(
        applicationId=application_id,
        templateId=record.id,
        version=record.version,
        goals=[
            AppliedGoal(
                key=g.key,
                goalId=goal_ids.get(g.key),
                title=g.title,
                parentKey=g.parent_key,
                targetDate=g.target_date,
                moduleKind=g.module_kind,
            )
            for g in plan.goals
        ],
        modulesCreated=plan.modules_to_create,
    )


@router.post(
    "/{templateId}/rating",
    response_model=TemplateBody,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
    summary="Rate a template version, 1 to 5 stars (once; not your own)",
)
def post_rating(
    templateId: TemplateId,  # noqa: N803
    body: RatingRequest,
    caller: TemplatesCaller,
    config: ConfigDep,
) -> TemplateBody:
    record = _visible(config, templateId, caller)
    try:
        with _audited(config, caller, "template-rate", templateId=record.id) as entry:
            rated = rate_template(
                entry.conn, record.id, caller.user_id, body.stars, actor=caller.actor
            )
    except TemplateError as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
    return TemplateBody(**_body(rated, caller))
