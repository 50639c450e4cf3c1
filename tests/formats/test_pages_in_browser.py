"""What people see when they open the pages, checked in a real browser (Playwright driving
Debian's Chromium): numbers and ids in README.html's wide tables stay on one line (the
table scrolls sideways on a narrow screen), report.html shows the latest value exactly,
and goals with the same title are told apart in the charts and in the XLSX legend."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest
from playwright.sync_api import sync_playwright

from assets.formats.charts import distinct_goal_titles
from assets.formats.registry import FORMATS
from assets.formats.xlsx import CHART_DATA_SHEET
from assets.gdpr.bundle import render_gdpr_bundle
from resources.schema import APP_ARROW_SCHEMAS, empty_app_tables
from tests.formats.test_html_pages import bundle_options

CHROMIUM = "/usr/bin/chromium"
AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2025, 1, 1, 8, 0, tzinfo=dt.UTC)
LONG_ID = "cm3x9k2a7000108l4h5q2b7zz-project-with-a-long-identifier"


def _table(name: str, rows: list[dict]) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[name]
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema)


def _goal(goal_id: str, title: str, parent: str | None = None) -> dict:
    return {"id": goal_id, "userId": "u1", "parentGoalId": parent, "title": title,
            "priority": 3, "isCompleted": False, "createdAt": T0, "updatedAt": T0}  # fmt: skip


def _progress(goal_id: str, values: list[str]) -> list[dict]:
    return [
        {"id": f"p-{goal_id}-{i}", "userId": "u1", "goalId": goal_id, "value": Decimal(v),
         "recordedAt": T0 + dt.timedelta(days=i)}
        for i, v in enumerate(values)
    ]  # fmt: skip


def user_tables() -> dict[str, pa.Table]:
    tables = empty_app_tables()
    tables["User"] = _table("User", [{"id": "u1", "email": "ana@example.test",
                                      "firstName": "Ana", "createdAt": T0, "updatedAt": T0}])  # fmt: skip
    tables["Goal"] = _table(
        "Goal",
        [
            _goal("g1", "Marathon"),
            _goal("g2", "Run", parent="g1"),
            _goal("g3", "Half marathon"),
            _goal("g4", "Run", parent="g3"),
            _goal("g5", "Run"),
            _goal("g6", "Run"),
        ],
    )
    tables["Progress"] = _table(
        "Progress",
        _progress("g2", ["100.00", "239.51"])
        + _progress("g4", ["1.00", "2.00", "3.00"])
        + _progress("g5", ["5.00"])
        + _progress("g6", ["7.00", "8.25"]),
    )
    tables["WorkProject"] = _table(
        "WorkProject",
        [{"id": LONG_ID, "userId": "u1", "name": "Kitchen renovation with a rather long name",
          "description": "Tiles, cabinets, plumbing, electrics and a new window " * 3,
          "status": "active", "budget": Decimal("21928540.00"), "createdAt": T0,
          "updatedAt": T0}],
    )  # fmt: skip
    return tables


def test_repeated_titles_get_their_parent_then_a_number():
    labels = distinct_goal_titles(user_tables()["Goal"])
    assert labels == {
        "g1": "Marathon",
        "g2": "Run (Marathon)",
        "g3": "Half marathon",
        "g4": "Run (Half marathon)",
        "g5": "Run (top level) #1",
        "g6": "Run (top level) #2",
    }


def test_the_xlsx_chart_legend_tells_goals_apart():
    data = FORMATS["xlsx"].render(user_tables(), user_id="u1", exported_at=AT)
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True)[CHART_DATA_SHEET]
    legend = [c for c in next(sheet.iter_rows(values_only=True))[1:] if c]
    assert len(legend) == 4 and len(set(legend)) == 4
    assert {"Run (Marathon)", "Run (Half marathon)"} <= set(legend)


# The lines a cell's text takes: the distinct tops of its text's boxes (a wrapped value
# has two or more).
_LINES = """cell => {
  const tops = new Set();
  const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    const range = document.createRange(); range.selectNodeContents(node);
    for (const box of range.getClientRects()) if (box.width > 0) tops.add(Math.round(box.top));
  }
  return tops.size; }"""


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _open(browser, html: bytes, tmp_path: Path, name: str, width: int):
    page = browser.new_page(viewport={"width": width, "height": 900})
    path = tmp_path / f"{name}.html"
    path.write_bytes(html)
    elsewhere: list[str] = []

    def only_the_page(route):  # the pages are self-contained: nothing else is fetched
        if route.request.url == path.as_uri():
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_page)
    page.goto(path.as_uri())
    assert elsewhere == []
    shot = page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    assert shot.startswith(b"\x89PNG")
    return page


@pytest.mark.parametrize("width", [390, 1280])  # a phone, a laptop
def test_readme_numbers_and_ids_never_wrap(browser, tmp_path, width):
    bundle = render_gdpr_bundle(user_tables(), user_id="u1", exported_at=AT, **bundle_options())
    readme = zipfile.ZipFile(io.BytesIO(bundle)).read("README.html")
    page = _open(browser, readme, tmp_path, f"readme-{width}", width)
    budget = page.locator("td", has_text="21928540.00")
    assert budget.count() == 1
    assert budget.evaluate(_LINES) == 1
    assert page.locator("td", has_text=LONG_ID).first.evaluate(_LINES) == 1
    for cell in page.locator("td.num, td.nowrap").all():
        assert cell.evaluate(_LINES) <= 1, cell.inner_text()
    # the wide table scrolls inside its box instead of pushing the page wider
    scroller = page.locator("div.scroll", has=budget)
    if width < 600:
        assert scroller.evaluate("e => e.scrollWidth > e.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.close()


def test_report_shows_the_exact_latest_value_and_distinct_chart_titles(browser, tmp_path):
    report = FORMATS["report"].render(user_tables(), user_id="u1", exported_at=AT)
    page = _open(browser, report, tmp_path, "report", 1280)
    row = page.locator("tr", has=page.locator("td", has_text="239.51"))
    assert row.count() == 1
    assert "240" not in row.inner_text()
    latest = row.locator("td.num").last
    assert latest.inner_text() == "239.51" and latest.evaluate(_LINES) == 1
    captions = page.locator("figcaption").all_inner_texts()
    charted = [c for c in captions if c.startswith("Run")]
    assert len(charted) == 4 and len(set(charted)) == 4
    page.close()
