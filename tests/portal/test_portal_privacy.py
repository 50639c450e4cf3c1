"""Privacy and Backups in the browser: backup settings saved and shown again, "back up
now" queued, the GDPR bundle prepared then downloaded (the stored bytes, verified), the backup key only after the e-mail address is typed again (with the
warning), a deletion requested with its grace period and then cancelled, and the audit
trail showing what the portal did."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import sqlalchemy as sa

from assets.backups.due import claim_requested_backups
from assets.backups.runner import run_backup_batch
from assets.exports.expiry import storage_key_of
from assets.exports.queue import get_export
from assets.gdpr.requests import process_pending_gdpr_exports
from assets.gdpr.verify import verify_bundle
from assets.imports.preview import preview_job_file
from resources import keys, schema
from resources.audit import utc_now
from tests.portal.conftest import small_targets


def _email(engine, user_id: str) -> str:
    with engine.connect() as conn:
        return conn.scalar(sa.select(schema.user.c.email).where(schema.user.c.id == user_id))


def test_backup_settings_saved_and_shown_back_up_now_and_restore(portal, user_ids, monkeypatch):
    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys.new_master_key())
    config = portal.live.config
    page = portal.open(user_ids[0])
    page.get_by_role("link", name="Backups").first.click()
    portal.check_page(page, "backups")
    assert small_targets(page) == []
    page.get_by_label("Back up automatically").check()
    page.get_by_label("How often").select_option("weekly")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Keep the last (backups)").fill("7")
    page.get_by_role("button", name="Save settings").click()
    assert page.get_by_role("status").first.inner_text() == "Your backup settings are saved."
    # Shown again from the database on a fresh load.
    page.goto("/portal/backups")
    assert page.get_by_label("How often").input_value() == "weekly"
    assert page.get_by_label("Time zone").input_value() == "Europe/Berlin"
    assert page.get_by_label("Keep the last (backups)").input_value() == "7"
    assert page.get_by_label("Back up automatically").is_checked()
    state = page.locator("dl.facts").inner_text()
    assert state.startswith("Back up automatically\nYes") and "Last verified backup" in state
    with portal.engine.connect() as conn:
        saved = conn.execute(
            sa.select(schema.backup_config).where(schema.backup_config.c.userId == user_ids[0])
        ).one()
    assert (saved.frequency, saved.timezone, saved.enabled) == ("weekly", "Europe/Berlin", True)

    page.get_by_label("Time zone").fill("Mars/Olympus_Mons")
    page.get_by_role("button", name="Save settings").click()
    assert "Mars/Olympus_Mons" in page.get_by_role("alert").inner_text()

    page.goto("/portal/backups")
    page.get_by_role("button", name="Back up now").click()
    assert "A backup was requested" in page.get_by_role("status").first.inner_text()
    assert "Waiting" in page.get_by_role("list", name="Latest backup requests").inner_text()
    portal.check_page(page, "backups-requested")

    # What backup_request_sensor's run does: claim the request, write and verify the backup.
    (batch,) = claim_requested_backups(config.database.engine, utc_now()).batches
    outcome = run_backup_batch(
        config.database, config.storage, config.key_vault, batch.job_ids, batch.batch_id, workers=1
    )
    assert not outcome.failed, outcome
    page.goto("/portal/backups")
    state = page.locator("dl.facts").inner_text()
    assert "Last verified backup\nnot yet" not in state
    backup = page.get_by_role("list", name="Your backups").locator("li")
    assert backup.count() == 1 and "verified" in backup.inner_text()
    portal.check_page(page, "backups-done")
    backup.get_by_role("button", name="Restore (preview first)").click()
    assert "/portal/import/jobs/imp_api_" in page.url
    job_id = page.url.split("/jobs/")[1]
    preview_job_file(config.database, config.storage, job_id)  # the staging run's work
    page.get_by_role("heading", name="What would change").wait_for(timeout=20_000)
    facts = page.locator("dl.facts").inner_text()
    assert "Ready to review" in facts and "encrypted" in facts
    assert "Replace my data" in facts


def test_deletion_requested_then_cancelled_and_the_backup_key(portal, user_ids, monkeypatch):
    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys.new_master_key())
    alice = user_ids[0]
    page = portal.open(alice)
    page.get_by_role("link", name="Privacy").first.click()
    portal.check_page(page, "privacy")
    assert small_targets(page) == []
    assert "unreadable" in page.locator("#key ~ .warning").first.inner_text()

    page.get_by_role("button", name="Request deletion").click()  # the dialog is accepted
    assert page.get_by_role("status").first.inner_text() == "Your deletion request is recorded."
    pending = page.locator("#erasure-pending").inner_text()
    assert pending.startswith("Your account will be deleted on")
    with portal.engine.connect() as conn:
        (status,) = conn.execute(
            sa.select(schema.erasure_request.c.status).where(
                schema.erasure_request.c.userId == alice
            )
        ).one()
    assert status == "pending"
    portal.check_page(page, "privacy-deletion-pending")
    page.get_by_role("button", name="Cancel the deletion").click()
    assert "cancelled" in page.get_by_role("status").first.inner_text()
    assert page.get_by_role("button", name="Request deletion").is_visible()
    with portal.engine.connect() as conn:
        statuses = conn.scalars(
            sa.select(schema.erasure_request.c.status).where(
                schema.erasure_request.c.userId == alice
            )
        ).all()
    assert statuses == ["cancelled"]

    # The backup key: refused for another address, handed out for the account's own.
    page.get_by_label("Type your account's e-mail address to confirm").fill("someone@else.test")
    page.get_by_label("I understand that anyone with this key can read my backups").check()
    page.get_by_role("button", name="Download my backup key").click()
    assert "not your account's e-mail address" in page.get_by_role("alert").inner_text()
    page.get_by_label("Type your account's e-mail address to confirm").fill(
        _email(portal.engine, alice).upper()
    )
    page.get_by_label("I understand that anyone with this key can read my backups").check()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download my backup key").click()
    key_file = Path(download_info.value.path()).read_text()
    assert "AGE-SECRET-KEY-1" in key_file
    assert download_info.value.suggested_filename == "goalport-backup-key.txt"

    page.goto("/portal/privacy")
    trail = page.get_by_role("region", name="Your activity").inner_text()
    for operation in ("gdpr-erasure-request", "gdpr-erasure-cancel", "backup-key-export"):
        assert operation in trail
    assert "portal" in trail


def test_gdpr_bundle_prepared_then_downloaded(desktop_portal, user_ids):
    portal = desktop_portal
    alice, bob, carol = user_ids
    config = portal.live.config
    page = portal.open(alice)
    page.goto("/portal/privacy")
    page.get_by_role("button", name="Prepare my data bundle").click()
    assert page.url.endswith("/portal/export?done=gdpr-requested#history")
    bundle = page.locator("li.job", has_text="Your data bundle (GDPR, zip)")
    assert bundle.locator("progress").count() == 1
    job_id = bundle.get_attribute("data-job")

    process_pending_gdpr_exports(config.database, config.storage, workers=1)  # the sensor's run
    bundle.get_by_role("link", name="Download").wait_for(timeout=30_000)
    with page.expect_download() as download_info:
        bundle.get_by_role("link", name="Download").click()
    data = Path(download_info.value.path()).read_bytes()
    job = get_export(config.database.engine, job_id)
    assert data == config.storage.read_bytes(storage_key_of(config.storage, job.file_url))
    report = verify_bundle(data)
    assert report.ok, report.problems
    with zipfile.ZipFile(io.BytesIO(data)) as opened:
        assert json.loads(opened.read("manifest.json"))["userId"] == alice
        for name in opened.namelist():
            assert bob.encode() not in opened.read(name) and carol.encode() not in opened.read(name)
