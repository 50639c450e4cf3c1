"""The portal's guards: signed in as A nothing of B's is reachable (direct URLs, changed
ids); a form without its CSRF token (or with another session's) is refused; an expired,
reused or forged sign-in link gets a clear page; the cookie's flags; the CSP and its
nonce; sign-out; and erasure removes the user's sign-in links and sessions."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import httpx
import sqlalchemy as sa

from assets.exports.queue import request_export
from assets.gdpr.erasure import execute_erasure, request_erasure
from assets.imports.jobs import create_import_job
from assets.templates.versions import create_template
from portal.sessions import COOKIE_NAME, create_sign_in_link
from resources import schema
from tests.gdpr.scan import scan_tables


def _bobs_things(engine, bob: str) -> dict[str, str]:
    goal_id = "bob_goal_isolation"
    now = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            schema.goal.insert().values(
                id=goal_id,
                userId=bob,
                title="Bob's secret plan",
                priority=3,
                isCompleted=False,
                createdAt=now,
                updatedAt=now,
            )
        )
    template = create_template(engine, bob, [goal_id], name="Bob private", public=False)
    return {
        "export": request_export(engine, bob, "report"),
        "import": create_import_job(engine, user_id=bob, file_name="bob.csv", requested_by="t"),
        "template": template.id,
    }


def test_signed_in_as_alice_nothing_of_bobs_is_reachable(desktop_portal, user_ids):
    portal = desktop_portal
    alice, bob = user_ids[0], user_ids[1]
    bobs = _bobs_things(portal.engine, bob)
    page = portal.open(alice)
    for path in (
        f"/portal/export/jobs/{bobs['export']}/progress",
        f"/portal/export/jobs/{bobs['export']}/report",
        f"/portal/import/jobs/{bobs['import']}",
        f"/portal/import/jobs/{bobs['import']}/progress",
        f"/portal/templates/{bobs['template']}",
    ):
        answer = page.goto(path)
        assert answer.status == 404, path
        assert "Bob" not in page.content() and bob not in page.content()
    portal.check_page(page, "not-found")
    # Changed ids in forms, posted with alice's own valid CSRF token.
    page.goto("/portal/export")
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    for path in (
        f"/portal/import/jobs/{bobs['import']}/confirm",
        f"/portal/import/jobs/{bobs['import']}/undo",
        f"/portal/templates/{bobs['template']}/rating",
        f"/portal/backups/{bobs['export']}/restore",
    ):
        answer = page.request.post(path, form={"csrf_token": csrf, "stars": "5"})
        assert answer.status == 404, (path, answer.status)
    answer = page.request.post(
        f"/portal/templates/{bobs['template']}/apply",
        form={"csrf_token": csrf, "start": "2027-01-01", "goals": "n1"},
    )
    assert answer.status == 404
    # Nothing of bob's in alice's lists either.
    for path in ("/portal/export", "/portal/import", "/portal/templates", "/portal/privacy"):
        page.goto(path)
        assert bobs["export"] not in page.content() and "Bob private" not in page.content()
    with portal.engine.connect() as conn:
        status = conn.scalar(
            sa.select(schema.data_import_job.c.status).where(
                schema.data_import_job.c.id == bobs["import"]
            )
        )
    assert status == "pending"


def test_forms_without_the_csrf_token_are_refused(desktop_portal, user_ids):
    portal = desktop_portal
    alice, bob = user_ids[0], user_ids[1]
    page = portal.open(alice)
    bob_page = portal.open(bob)
    bob_page.goto("/portal/privacy")
    bobs_token = bob_page.locator("input[name=csrf_token]").first.get_attribute("value")
    for form in ({}, {"csrf_token": ""}, {"csrf_token": bobs_token}):
        answer = page.request.post("/portal/privacy/erasure", form=form)
        assert answer.status == 403
        assert "This form could not be sent" in answer.text()
    answer = page.request.post("/portal/export", form={"formats": "json"})
    assert answer.status == 403
    with portal.engine.connect() as conn:
        erasures = conn.scalar(sa.select(sa.func.count()).select_from(schema.erasure_request))
        exports = conn.scalar(sa.select(sa.func.count()).select_from(schema.data_export_job))
    assert erasures == 0 and exports == 0
    # Every form of every page carries the token in a hidden field named csrf_token.
    for path in ("/portal/export", "/portal/privacy", "/portal/backups", "/portal/templates"):
        page.goto(path)
        for form in page.locator("form[method=post]").all():
            assert form.locator("input[type=hidden][name=csrf_token]").count() == 1, path


def test_sign_in_links_expired_reused_forged(desktop_portal, user_ids):
    portal = desktop_portal
    alice = user_ids[0]
    key = portal.live.app.state.portal_key
    expired = create_sign_in_link(
        portal.engine, key, alice, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    page = portal.new_page()
    answer = page.goto(expired)
    assert answer.status == 410
    assert page.get_by_role("heading").inner_text() == "This sign-in link has expired"
    assert COOKIE_NAME not in {c["name"] for c in page.context.cookies()}
    portal.check_page(page, "link-expired")

    link = portal.link(alice)
    assert page.goto(link).url.endswith("/portal")
    other = portal.new_page()
    answer = other.goto(link)
    assert answer.status == 410
    assert other.get_by_role("heading").inner_text() == "This sign-in link was already used"

    payload, signature = link.rsplit("/", 1)[1].split(".")
    forged = f"/portal/sign-in/{payload}.{signature[:-2]}AA"
    answer = other.goto(forged)
    assert answer.status == 400
    assert other.get_by_role("heading").inner_text() == "This sign-in link is not valid"
    assert other.goto("/portal/export").status == 401  # never signed in


def test_cookie_flags_csp_nonce_and_sign_out(desktop_portal, user_ids, start_api, api_config):
    portal = desktop_portal
    alice = user_ids[0]
    with httpx.Client(base_url=portal.live.base_url) as client:
        answer = client.get(portal.link(alice))
        assert answer.status_code == 303 and answer.headers["location"] == "/portal"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        assert "Path=/portal;" in cookie  # never sent to the API
        first = client.get("/portal/export")
        second = client.get("/portal/export")
    policy = first.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert (
        "unsafe-inline" not in policy.split("style-src")[0] and "frame-ancestors 'none'" in policy
    )
    assert f'nonce="{nonce}"' in first.text and nonce not in second.text
    assert re.findall(r"<script[^>]*>", first.text) == [
        f'<script src="/portal/static/portal.js" nonce="{nonce}" defer>'
    ]
    assert (
        first.headers["x-frame-options"] == "DENY" and first.headers["cache-control"] == "no-store"
    )

    https = start_api(replace(api_config, public_url="https://goals.example"))
    link = create_sign_in_link(
        https.config.database.engine,
        https.app.state.portal_key,
        alice,
        public_url=https.config.public_url,
    )
    assert link.startswith("https://goals.example/portal/sign-in/")
    with httpx.Client(base_url=https.base_url) as client:
        answer = client.get(link.removeprefix("https://goals.example"))
        assert "Secure" in answer.headers["set-cookie"]

    page = portal.open(alice)
    old_cookie = {c["name"]: c["value"] for c in page.context.cookies()}[COOKIE_NAME]
    page.get_by_role("button", name="Sign out").click()
    assert page.get_by_role("heading").inner_text() == "You are signed out"
    portal.check_page(page, "signed-out")
    assert page.goto("/portal").status == 401
    with httpx.Client(base_url=portal.live.base_url, cookies={COOKIE_NAME: old_cookie}) as client:
        assert client.get("/portal/privacy").status_code == 401


def test_erasure_removes_sign_in_links_and_sessions(desktop_portal, user_ids):
    portal = desktop_portal
    alice, bob = user_ids[0], user_ids[1]
    page = portal.open(alice)
    unused = portal.link(alice)
    portal.open(bob)
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}[COOKIE_NAME]
    sessions = schema.portal_session
    with portal.engine.connect() as conn:
        ids = conn.scalars(sa.select(sessions.c.id).where(sessions.c.userId == alice)).all()
    assert len(ids) == 3  # two links (one used) and a session

    request = request_erasure(portal.engine, alice, grace=dt.timedelta(0))
    outcome = execute_erasure(portal.engine, portal.live.config.storage, request.id)
    assert outcome.verified, outcome.receipt["verification"]
    assert outcome.receipt["rowsDeleted"]["PortalSession"] == 3
    assert scan_tables(portal.engine, [alice, *ids]) == []
    with portal.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).where(sessions.c.userId == bob)) == 2
    with httpx.Client(base_url=portal.live.base_url, cookies={COOKIE_NAME: cookie}) as client:
        assert client.get("/portal").status_code == 401
    fresh = portal.new_page()
    answer = fresh.goto(unused)
    assert answer.status == 400  # its row went with the user
