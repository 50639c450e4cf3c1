"""The portal in a real browser: Debian's Chromium driven by Playwright (one browser for the
session, a fresh context per test), against the live uvicorn of the API tests over the
test's own PostgreSQL database (three seeded users) and storage.

`Portal.open` signs a user in through a real sign-in link; `Portal.check_page` runs
axe-core (from npm, installed by `make test` under var/npm) on the page, fails on serious
or critical violations, and writes a screenshot under var/screenshots/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from portal.sessions import create_sign_in_link
from tests.http_api import conftest as api_fixtures
from tests.http_api.conftest import LiveApi

# The API tests' live server over a seeded database, shared with these tests.
pg_url = api_fixtures.pg_url
start_api = api_fixtures.start_api
api_config = api_fixtures.api_config
api = api_fixtures.api
user_ids = api_fixtures.user_ids

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "var" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "var" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1280, "height": 860}, "mobile": {"width": 375, "height": 812}}
BLOCKING_IMPACTS = ("serious", "critical")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "chromium is installed by `make test` (system-deps)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Portal:
    live: LiveApi
    browser: Browser
    viewport: str
    contexts: list[BrowserContext] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    @property
    def engine(self):
        return self.live.config.database.engine

    def link(self, user_id: str) -> str:
        return create_sign_in_link(self.engine, self.live.app.state.portal_key, user_id)

    def new_page(self) -> Page:
        size = VIEWPORTS[self.viewport]
        context = self.browser.new_context(
            viewport=size,
            base_url=self.live.base_url,
            accept_downloads=True,
            is_mobile=self.viewport == "mobile",
            has_touch=self.viewport == "mobile",
        )
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.on(
            "console",
            lambda message: (
                self.csp_violations.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        return page

    def open(self, user_id: str) -> Page:
        """A new browser context signed in as the user through a fresh sign-in link."""
        page = self.new_page()
        page.goto(self.link(user_id))
        assert page.url.endswith("/portal"), page.url
        return page

    def check_page(self, page: Page, name: str) -> None:
        """axe-core finds no serious or critical violation; a screenshot is written."""
        page.evaluate(AXE.read_text())
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        blocking = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(n["target"]) for n in v["nodes"][:3])
            for v in result["violations"]
            if v["impact"] in BLOCKING_IMPACTS
        ]
        assert blocking == [], f"{name}: {blocking}"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{name}-{self.viewport}.png", full_page=True)
        assert self.csp_violations == [], self.csp_violations
        if self.viewport == "mobile":
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= VIEWPORTS["mobile"]["width"], f"{name} scrolls sideways: {width}px"

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture(params=sorted(VIEWPORTS))
def portal(request, api, browser) -> Iterator[Portal]:
    """The live portal in one viewport (each test runs on desktop and on 375x812)."""
    portal = Portal(api, browser, request.param)
    yield portal
    portal.close()


def small_targets(page: Page) -> list[str]:
    """Visible links, buttons and form controls smaller than 44x44 CSS px."""
    found = page.evaluate(
        """() => [...document.querySelectorAll('a, button, input, select, textarea, summary')]
          .filter(e => e.offsetParent !== null && e.type !== 'hidden')
          .map(e => {const r = e.getBoundingClientRect();
                     const box = e.closest('label') ? e.closest('label').getBoundingClientRect() : r;
                     return [e.outerHTML.slice(0, 80), Math.max(r.height, box.height), Math.max(r.width, box.width)]})
          .filter(([, h, w]) => h < 44 || w < 44)
          .map(([html, h, w]) => `${html} ${h}x${w}`)"""
    )
    return [f for f in found if not re.search(r'class="skip"', f)]


@pytest.fixture
def desktop_portal(api, browser) -> Iterator[Portal]:
    """The live portal on the desktop viewport only (for guards that no viewport changes)."""
    portal = Portal(api, browser, "desktop")
    yield portal
    portal.close()
