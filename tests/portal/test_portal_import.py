"""Import in the browser: Todoist's guide, the upload of a Todoist CSV, the detection and
mapping report, the preview's counts and per-row changes paged, confirm, the goals appear,
undo from the history; and a conflicting goalport file shows its conflicts marked."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from assets.imports.apply import apply_import
from assets.imports.preview import preview_job_file
from resources import schema
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
