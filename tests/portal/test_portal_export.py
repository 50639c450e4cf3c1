"""Export in the browser: choose formats, watch the progress while the export path runs,
download the file (its bytes are storage's), and open the offline report."""

from __future__ import annotations

import threading
from pathlib import Path

from assets.exports.expiry import storage_key_of
from assets.exports.progress import process_pending_exports
from assets.exports.queue import get_export
from tests.portal.conftest import small_targets


def _process_later(portal, delay: float = 1.5) -> threading.Thread:
    """What the export sensor does, a moment after the page started watching."""
    config = portal.live.config

    def run() -> None:
        threading.Event().wait(delay)
        process_pending_exports(config.database, config.storage, workers=1)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_export_progress_download_and_offline_report(portal, user_ids):
    page = portal.open(user_ids[0])
    portal.check_page(page, "overview")
    assert small_targets(page) == []
    page.get_by_role("link", name="Export").first.click()
    page.get_by_label("JSON (for other apps and programs)").uncheck()
    page.get_by_label("CSV for spreadsheets (zip)").check()
    page.get_by_label("Offline report (a web page)").check()
    page.get_by_role("button", name="Export", exact=True).click()

    assert page.get_by_role("status").first.is_visible()
    jobs = page.locator("li.job")
    assert jobs.count() == 2
    assert page.locator("progress").count() == 2  # both wait, with a progress bar each
    portal.check_page(page, "export-progress")
    worker = _process_later(portal)
    # The page's script polls the progress and reloads itself when the exports are done.
    page.get_by_role("link", name="Open the offline report").wait_for(timeout=60_000)
    worker.join()
    assert page.locator("progress").count() == 0
    assert small_targets(page) == []
    portal.check_page(page, "export-done")

    csv_job = page.locator("li.job", has_text="CSV for spreadsheets")
    job_id = csv_job.get_attribute("data-job")
    with page.expect_download() as download_info:
        csv_job.get_by_role("link", name="Download").click()
    download = download_info.value
    downloaded = Path(download.path()).read_bytes()
    config = portal.live.config
    job = get_export(config.database.engine, job_id)
    assert job.user_id == user_ids[0]
    stored = config.storage.read_bytes(storage_key_of(config.storage, job.file_url))
    assert downloaded == stored and len(stored) == job.file_size_bytes
    assert download.suggested_filename.endswith(".csv.zip")

    with page.expect_popup() as popup_info:
        page.get_by_role("link", name="Open the offline report").click()
    report = popup_info.value
    report.wait_for_load_state()
    assert report.url.endswith("/report")
    assert report.locator("h1").count() >= 1
    # Shown in the browser, sandboxed (no script, no same-origin access), never as a page of ours.
    answer = page.request.get(report.url)
    assert answer.headers["content-security-policy"].startswith("sandbox;")
    assert answer.headers["content-type"].startswith("text/html")
    assert report.evaluate("window.origin") == "null"


def test_export_without_a_format_says_so(portal, user_ids):
    page = portal.open(user_ids[1])
    page.goto("/portal/export")
    page.get_by_label("JSON (for other apps and programs)").uncheck()
    page.get_by_role("button", name="Export", exact=True).click()
    assert page.get_by_role("alert").inner_text() == "Choose at least one format."
    assert page.locator("li.job").count() == 0


def test_export_by_keyboard_alone(desktop_portal, user_ids):
    """The skip link leads to the content; a format is ticked with Space and the export
    asked for with Enter, without a pointer."""
    page = desktop_portal.open(user_ids[2])
    page.goto("/portal/export")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    focused = []
    for _ in range(12):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.value || ''"))
        if focused[-1] == "xlsx":
            break
    assert focused[0] == "json" and focused[-1] == "xlsx"  # the formats, in order
    page.keyboard.press("Space")
    assert page.get_by_label("Excel workbook").is_checked()
    page.keyboard.press("Enter")  # submits the form from the checkbox
    page.wait_for_url("**/portal/export?done=export")
    formats = page.locator("li.job strong").all_inner_texts()
    assert sorted(formats) == ["Excel workbook", "JSON (for other apps and programs)"]
