"""Templates in the browser: the catalog filtered by category and tag, a template's goal
tree, customised (one goal left out, one renamed, a start date) and applied, rated; and
the user's own goals published, refused first by the personal-data check."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from assets.templates.versions import create_template
from resources import schema
from tests.portal.conftest import small_targets

goal = schema.goal
NOW = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)


def _add_goals(engine, user_id: str, tree) -> None:
    with engine.begin() as conn:
        for goal_id, parent, title, target in tree:
            conn.execute(
                goal.insert().values(
                    id=goal_id,
                    userId=user_id,
                    parentGoalId=parent,
                    title=title,
                    priority=3,
                    targetDate=target,
                    isCompleted=False,
                    createdAt=NOW,
                    updatedAt=NOW,
                )
            )


def _goals(engine, user_id: str) -> dict[str, dt.date | None]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(goal.c.title, goal.c.targetDate).where(goal.c.userId == user_id)
        ).all()
    return dict(rows)


def test_browse_preview_customise_apply_rate_and_publish(portal, user_ids):
    alice, bob = user_ids[0], user_ids[1]
    suffix = portal.viewport
    _add_goals(
        portal.engine,
        bob,
        [
            (f"bg_root_{suffix}", None, "Run a marathon", dt.date(2026, 12, 31)),
            (f"bg_base_{suffix}", f"bg_root_{suffix}", "Build a base", dt.date(2026, 11, 30)),
            (f"bg_race_{suffix}", f"bg_root_{suffix}", "Race week", dt.date(2026, 12, 28)),
        ],
    )
    create_template(
        portal.engine,
        bob,
        [f"bg_root_{suffix}"],
        name="Marathon in 2 months",
        category="Running",
        tags=["endurance"],
        public=True,
        start=dt.date(2026, 11, 1),
    )
    create_template(
        portal.engine,
        bob,
        [f"bg_base_{suffix}"],
        name="Bob's private base",
        category="Running",
        public=False,
    )
    before = _goals(portal.engine, alice)
    page = portal.open(alice)
    page.get_by_role("link", name="Templates").first.click()
    catalog = page.get_by_role("list", name="Templates")
    assert "Marathon in 2 months" in catalog.inner_text()
    assert "Bob's private base" not in page.content()
    page.get_by_label("Tag", exact=True).select_option("endurance")
    page.get_by_role("button", name="Show").click()
    assert "tag=endurance" in page.url
    assert page.locator("li.job").count() == 1
    portal.check_page(page, "templates")
    assert small_targets(page) == []
    page.get_by_role("link", name="Preview Marathon in 2 months").click()
    tree = page.get_by_role("list", name="The plan").inner_text()
    assert tree.index("Run a marathon") < tree.index("Build a base")
    portal.check_page(page, "template-preview")

    page.get_by_label("Start date").fill("2027-03-01")
    page.get_by_label("Include: Race week").uncheck()
    page.get_by_label("Title (Build a base)").fill("Build my base slowly")
    page.get_by_role("button", name="Add to my goals").click()
    applied = page.locator("#applied").inner_text()
    assert "Build my base slowly" in applied and "Race week" not in applied
    portal.check_page(page, "template-applied")
    after = _goals(portal.engine, alice)
    added = {title: target for title, target in after.items() if title not in before}
    assert set(added) == {"Run a marathon", "Build my base slowly"}
    # Dates move with the start: the base was due 29 days after the plan's day 0.
    assert added["Build my base slowly"] == dt.date(2027, 3, 1) + dt.timedelta(days=29)

    page.get_by_role("link", name="View the template").click()
    page.get_by_label("Stars").select_option("4")
    page.get_by_role("button", name="Rate", exact=True).click()
    assert page.get_by_role("status").first.inner_text() == "Thank you for your rating."
    assert "4.0 (1)" in page.locator("main").inner_text()
    page.get_by_role("button", name="Rate", exact=True).click()  # a second rating is refused
    assert page.get_by_role("alert").is_visible()

    # Publish: a goal holding alice's e-mail address is refused by the check, then a clean one.
    with portal.engine.connect() as conn:
        email = conn.scalar(sa.select(schema.user.c.email).where(schema.user.c.id == alice))
    _add_goals(
        portal.engine,
        alice,
        [
            (f"ag_mail_{suffix}", None, f"Write to {email} weekly", None),
            (f"ag_read_{suffix}", None, "Read twelve books", dt.date(2027, 12, 31)),
        ],
    )
    page.goto("/portal/templates")
    page.get_by_label(f"Write to {email} weekly").check()
    page.get_by_label("Template name").fill("My letters")
    page.get_by_role("button", name="Check and publish").click()
    refused = page.get_by_role("alert").inner_text()
    assert refused.startswith("Not published: the template holds personal data.")
    portal.check_page(page, "template-publish-refused")
    page.goto("/portal/templates")
    page.get_by_label("Read twelve books").check()
    page.get_by_label("Template name").fill("A book a month")
    page.get_by_label("Show it in the public catalog").check()
    page.get_by_role("button", name="Check and publish").click()
    passed = page.get_by_role("status").inner_text()
    assert passed.startswith("Passed: the template holds none of: name, e-mail address")
    page.get_by_role("link", name="View the template").click()
    assert page.get_by_role("heading", name="A book a month").is_visible()
    assert page.get_by_role("heading", name="Rate this template").count() == 0  # not your own
