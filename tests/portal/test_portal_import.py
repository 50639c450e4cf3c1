"""Import in the browser: Todoist's guide, the upload of a Todoist CSV, the detection and
mapping report, the preview's counts and per-row changes paged, confirm, the goals appear,
undo from the history; and a conflicting goalport file shows its conflicts marked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from assets.imports.apply import apply_import
from assets.imports.preview import preview_job_file
from resources import schema
from tests.imports.import_support import export_user
from tests.portal.conftest import small_targets

TODOIST = Path(__file__).parents[1] / "imports" / "fixtures" / "todoist" / "Home [2203306141].csv"


def _titles(engine, user_id: str) -> set[str]:
    goal = schema.goal
    with engine.connect() as conn:
        return set(conn.scalars(sa.select(goal.c.title).where(goal.c.userId == user_id)))


def _job_id(page) -> str:
    return page.url.rstrip("/").split("/jobs/")[1].split("?")[0]


def test_todoist_csv_guided_upload_preview_confirm_undo(portal, user_ids):
    alice = user_ids[0]
    config = portal.live.config
    before = _titles(portal.engine, alice)
    page = portal.open(alice)
    page.get_by_role("link", name="Import").first.click()
    portal.check_page(page, "import")
    page.get_by_role("link", name="Todoist").click()
    # The guide in Todoist's own words of menu items.
    guide = page.get_by_role("region", name="How to get your file")
    assert "Export as template" in guide.inner_text()
    assert guide.locator("strong", has_text="Settings → Backups").count() == 1
    portal.check_page(page, "import-todoist")
    assert small_targets(page) == []
    page.get_by_label("Your file", exact=True).set_input_files(str(TODOIST))
    page.get_by_role("button", name="Upload and preview").click()
    assert "/portal/import/jobs/imp_api_" in page.url
    assert page.get_by_role("status").first.inner_text().startswith("We are reading your file")
    job_id = _job_id(page)

    preview_job_file(config.database, config.storage, job_id)  # the staging run's work
    page.get_by_role("heading", name="What would change").wait_for(timeout=20_000)
    facts = page.locator("dl.facts").inner_text()
    assert "Todoist" in facts and "Ready to review" in facts
    counts = page.get_by_role("region", name="What would change")
    assert "Goal" in counts.inner_text()
    mapping = page.get_by_role("region", name="How your file was read")
    assert "flattened" in mapping.inner_text()
    creates = int(counts.locator("tbody tr", has_text="Goal").locator("td").first.inner_text())
    assert creates >= 5
    all_creates = sum(int(c) for c in counts.locator("tbody tr td:nth-child(2)").all_inner_texts())
    portal.check_page(page, "import-preview")
    # The per-row changes, four to a page, each row once, until there are no more.
    page.goto(f"/portal/import/jobs/{job_id}?per_page=4")
    rows: list[str] = []
    while True:
        changes = page.get_by_role("region", name="Row by row")
        shown = changes.locator("tbody tr td:nth-child(3)").all_inner_texts()
        assert 1 <= len(shown) <= 4
        rows += shown
        more = page.get_by_role("link", name="More changes")
        if not more.count():
            break
        more.click()
    assert "Renew passport" in rows and len(rows) == all_creates
    page.goto(f"/portal/import/jobs/{job_id}")
    assert _titles(portal.engine, alice) == before  # nothing written by the preview

    page.get_by_role("button", name="Import these changes").click()
    assert "Confirmed" in page.get_by_role("status").first.inner_text()
    apply_import(config.database, config.storage, job_id, actor="dagster")  # the sensor's run
    page.get_by_role("button", name="Undo this import").wait_for(timeout=20_000)
    assert "Renew passport" in _titles(portal.engine, alice)
    portal.check_page(page, "import-applied")

    page.goto("/portal/import")
    history = page.locator("li.job", has_text="Home [2203306141].csv")
    assert "Imported" in history.inner_text()
    history.get_by_role("link", name="View").click()
    page.get_by_role("button", name="Undo this import").click()
    assert "Undone" in page.get_by_role("status").first.inner_text()
    assert _titles(portal.engine, alice) == before


def test_conflicts_are_marked_and_stop_the_import_until_a_policy_wins(desktop_portal, user_ids):
    """A goalport export of alice, a goal renamed here after the export was taken: with
    "Stop and show me" the preview says so and offers no confirm; with "Take the file's
    version" the goal's update is listed with its conflict marked."""
    portal = desktop_portal
    alice = user_ids[0]
    config = portal.live.config
    exported_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    exported = export_user(config.database, alice, "json", exported_at=exported_at)
    goal = schema.goal
    with portal.engine.begin() as conn:
        goal_id = conn.scalar(
            sa.select(goal.c.id).where(goal.c.userId == alice).order_by(goal.c.id).limit(1)
        )
        conn.execute(
            goal.update()
            .where(goal.c.id == goal_id)
            .values(title="Renamed since", updatedAt=dt.datetime.now(dt.UTC))
        )
    page = portal.open(alice)
    for policy in ("Stop and show me", "Take the file's version"):
        page.goto("/portal/import/app/goalport")
        page.get_by_label("Your file", exact=True).set_input_files(
            {"name": "export.json", "mimeType": "application/json", "buffer": exported}
        )
        page.get_by_label(policy).check()
        page.get_by_role("button", name="Upload and preview").click()
        preview_job_file(config.database, config.storage, _job_id(page))
        page.get_by_role("heading", name="Changed in both places").wait_for(timeout=20_000)
        assert goal_id in page.locator("li.conflict").inner_text()
        if policy == "Stop and show me":
            assert "Nothing can be imported" in page.get_by_role("alert").inner_text()
            assert page.get_by_role("button", name="Import these changes").count() == 0
        else:
            marked = page.locator("tr.conflict")
            assert marked.count() == 1 and "title: Renamed since →" in marked.inner_text()
            assert marked.locator(".tag.conflict").inner_text() == "conflict"
            assert page.get_by_role("button", name="Import these changes").is_visible()
            portal.check_page(page, "import-conflict")
