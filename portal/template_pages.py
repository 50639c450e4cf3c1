"""Templates: browse the catalog by category, tag and words; preview a template's goal
tree; customise it (which goals, their titles, the start date) and apply it; rate it;
publish one's own goals as a template, showing the personal-data check's result. Every
action is one of `api.templates`' route functions."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api import templates
from api.errors import ApiError
from portal import texts
from portal.web import PortalPageError, SignedIn, Visitor, api_call, check_csrf, render, see_other
from resources import schema

router = APIRouter(prefix="/portal/templates", include_in_schema=False)
Filter = Annotated[str | None, Query(max_length=200)]


def goal_tree(goals: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Goals in tree order with their depth (a parent before its children)."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    keys = {g["key"] for g in goals}
    for g in goals:
        parent = g.get("parentKey") if g.get("parentKey") in keys else None
        children.setdefault(parent, []).append(g)
    ordered: list[tuple[dict[str, Any], int]] = []

    def walk(parent: str | None, depth: int) -> None:
        for g in children.get(parent, []):
            ordered.append((g, depth))
            walk(g["key"], depth + 1)

    walk(None, 0)
    return ordered


def own_goals(visitor: Visitor) -> list[tuple[dict[str, Any], int]]:
    """The signed-in user's goals as a tree, for choosing what to publish."""
    goal = schema.goal
    with visitor.config.database.engine.connect() as conn:
        rows = conn.execute(
            sa.select(goal.c.id, goal.c.parentGoalId, goal.c.title)
            .where(goal.c.userId == visitor.caller.user_id)
            .order_by(goal.c.createdAt, goal.c.id)
        ).all()
    return goal_tree([{"key": r.id, "parentKey": r.parentGoalId, "title": r.title} for r in rows])


def _facets(visitor: Visitor) -> tuple[list[str], list[str]]:
    everything = api_call(
        templates.get_templates, visitor.caller, visitor.config, category=None, tag=None, q=None
    )
    categories = sorted({i.category for i in everything.items if i.category})
    tags = sorted({tag for i in everything.items for tag in i.tags})
    return categories, tags


@router.get("")
def catalog_page(
    request: Request,
    visitor: SignedIn,
    category: Filter = None,
    tag: Filter = None,
    q: Filter = None,
) -> Response:
    found = api_call(
        templates.get_templates,
        visitor.caller,
        visitor.config,
        category=category or None,
        tag=tag or None,
        q=q or None,
    )
    categories, tags = _facets(visitor)
    return render(
        request,
        "templates.html.j2",
        visitor,
        found=found.items,
        categories=categories,
        tags=tags,
        chosen={"category": category or "", "tag": tag or "", "q": q or ""},
        goals=own_goals(visitor),
    )


def _template_page(
    request: Request, visitor: Visitor, template_id: str, *, error: str = "", status: int = 200
) -> Response:
    template = api_call(templates.get_one_template, template_id, visitor.caller, visitor.config)
    return render(
        request,
        "template.html.j2",
        visitor,
        status=status,
        template=template,
        tree=goal_tree(template.goals),
        today=dt.datetime.now(dt.UTC).date().isoformat(),
        error=error,
    )


@router.get("/{template_id}")
def template_page(request: Request, visitor: SignedIn, template_id: str) -> Response:
    return _template_page(request, visitor, template_id)


@router.post("/{template_id}/apply")
async def apply(request: Request, visitor: SignedIn, template_id: str) -> Response:
    form = await request.form()
    check_csrf(request, visitor, str(form.get("csrf_token") or ""))
    template = api_call(templates.get_one_template, template_id, visitor.caller, visitor.config)
    chosen = [str(k) for k in form.getlist("goals")]
    titles = {}
    for goal in template.goals:
        new = str(form.get(f"title-{goal['key']}") or "").strip()
        if new and new != goal["title"]:
            titles[goal["key"]] = new
    try:
        body = templates.ApplyRequest.model_validate(
            {"start": form.get("start") or "", "goals": chosen, "titles": titles or None}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _template_page(
            request, visitor, template_id, error=f"{where}: {first['msg']}", status=422
        )
    if not chosen:
        return _template_page(
            request, visitor, template_id, error=texts.T["template_choose_goal"], status=422
        )
    result = api_call(templates.post_apply, template_id, body, visitor.caller, visitor.config)
    return render(
        request,
        "template_applied.html.j2",
        visitor,
        template=template,
        result=result,
        tree=goal_tree(
            [
                {
                    "key": g.key,
                    "parentKey": g.parentKey,
                    "title": g.title,
                    "targetDate": g.targetDate,
                }
                for g in result.goals
            ]
        ),
    )


@router.post("/{template_id}/rating")
def rate(
    request: Request,
    visitor: SignedIn,
    template_id: str,
    csrf_token: Annotated[str, Form()] = "",
    stars: Annotated[int, Form(ge=1, le=5)] = 5,
) -> Response:
    check_csrf(request, visitor, csrf_token)
    try:
        templates.post_rating(
            template_id, templates.RatingRequest(stars=stars), visitor.caller, visitor.config
        )
    except ApiError as exc:
        if exc.status == 404:
            raise PortalPageError(404, texts.T["not_found_title"], exc.message) from exc
        return _template_page(request, visitor, template_id, error=exc.message, status=exc.status)
    return see_other(f"/portal/templates/{template_id}?done=template-rated")


@router.post("")
async def publish(request: Request, visitor: SignedIn) -> Response:
    form = await request.form()
    check_csrf(request, visitor, str(form.get("csrf_token") or ""))
    tags = [t.strip() for t in str(form.get("tags") or "").split(",") if t.strip()]
    check: dict[str, Any]
    try:
        body = templates.NewTemplate.model_validate(
            {
                "goalIds": [str(g) for g in form.getlist("goal_ids")],
                "name": str(form.get("name") or "").strip(),
                "description": str(form.get("description") or "").strip() or None,
                "category": str(form.get("category") or "").strip() or None,
                "tags": tags,
                "public": bool(form.get("public")),
            }
        )
        created = templates.post_template(body, visitor.caller, visitor.config)
        check = {"passed": True, "checked": created.personalDataCheck.checked, "message": ""}
        template_id = created.templateId
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        check = {"passed": None, "checked": [], "message": f"{where}: {first['msg']}"}
        template_id = None
    except ApiError as exc:
        passed = False if exc.code == "personal_data" else None
        check = {"passed": passed, "checked": [], "message": exc.message}
        template_id = None
    return render(
        request,
        "template_published.html.j2",
        visitor,
        status=201 if template_id else 422,
        check=check,
        template_id=template_id,
    )
