"""The HTML pages (report.html, a GDPR bundle's README.html) from their Jinja2 templates.

Their text is pinned: the golden files hold what the pages said when they were still
written as f-strings (checked against that code when the templates replaced it), as the
text a reader sees, block by block, and the values of every chart element. User text,
however hostile, comes out as text: no markup and no template syntax of a user's is ever
interpreted. The templates load through the package, as they will from an installed wheel.
"""

import datetime as dt
import io
import re
import zipfile
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pyarrow as pa
import pytest

from assets.formats.html_pages import page_environment
from assets.formats.report import render_report_html
from assets.gdpr.bundle import render_gdpr_bundle
from assets.gdpr.layout import README
from resources.schema import APP_ARROW_SCHEMAS, empty_app_tables

GOLDEN = Path(__file__).parent / "golden"
EXPORTED_AT = dt.datetime(2025, 2, 3, 4, 5, 6, 789000, tzinfo=dt.UTC)
T0 = dt.datetime(2025, 1, 1, 8, 0, tzinfo=dt.UTC)
SCRIPT = "</script><img src=x onerror=alert(1)>"
TEMPLATE = "{{ 7*7 }}"
RAW = '{% raw %}{{ "x" }}{% endraw %}'
BLOCKS = {
    "html", "head", "body", "main", "title", "style", "h1", "h2", "h3", "p", "div",
    "section", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "figure",
    "figcaption", "footer", "svg", "text",
}  # fmt: skip
SVG_SHAPES = {"svg", "title", "text", "rect", "line", "circle", "polyline"}


def table(name: str, rows: list[dict]) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[name]
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema)


def hostile_user() -> dict[str, pa.Table]:
    """One user whose own text tries markup, script and template syntax everywhere."""
    day = dt.timedelta(days=1)
    tables = empty_app_tables()
    tables["User"] = table(
        "User",
        [{"id": "u1", "email": "zoe@example.test", "name": SCRIPT, "timezone": "Europe/Berlin",
          "createdAt": T0, "updatedAt": T0}],
    )  # fmt: skip
    tables["Module"] = table(
        "Module",
        [{"id": "m1", "userId": "u1", "kind": "fitness", "name": "Fitness", "isActive": True,
          "createdAt": T0},
         {"id": "m2", "userId": "u1", "kind": "learning", "name": TEMPLATE, "isActive": True,
          "createdAt": T0}],
    )  # fmt: skip

    def goal(goal_id, title, module=None, parent=None, done=False, n=0, target=None):
        return {
            "id": goal_id, "userId": "u1", "moduleId": module, "parentGoalId": parent,
            "title": title, "description": f"<i>{title}</i>", "priority": n + 1,
            "targetDate": target, "isCompleted": done,
            "completedAt": T0 + 5 * day if done else None,
            "createdAt": T0 + n * day, "updatedAt": T0 + n * day,
        }  # fmt: skip

    tables["Goal"] = table(
        "Goal",
        [
            goal("g1", "Run a marathon", "m1", target=dt.date(2025, 10, 12)),
            goal("g2", SCRIPT, "m1", parent="g1", done=True, n=1),
            goal("g3", TEMPLATE, "m2", done=True, n=2),
            goal("g4", RAW, n=3),
        ],
    )
    entries = [("g1", v, 42) for v in (2, 5, 8, 13, 21)] + [("g3", 1, None), ("g3", 150, None)]
    entries += [("g4", (i % 7) - 3, 10) for i in range(50)]
    tables["Progress"] = table(
        "Progress",
        [
            {"id": f"p{i:03d}", "userId": "u1", "goalId": g, "value": Decimal(v),
             "maxValue": None if m is None else Decimal(m), "notes": SCRIPT if i == 0 else None,
             "recordedAt": T0 + i * day}
            for i, (g, v, m) in enumerate(entries)
        ],
    )  # fmt: skip
    tables["Achievement"] = table(
        "Achievement",
        [{"id": "a1", "userId": "u1", "goalId": "g3", "kind": "streak", "title": TEMPLATE,
          "points": 50, "earnedAt": T0 + 3 * day}],
    )  # fmt: skip
    tables["UserSetting"] = table(
        "UserSetting",
        [{"id": "s1", "userId": "u1", "key": "theme", "value": "\"dark\" & 'light'",
          "updatedAt": T0}],
    )  # fmt: skip
    return tables


def bundle_options() -> dict:
    """The rest of the hostile user's bundle: audit rows, texts, counts, records."""
    audit = [
        {"id": "aud_1", "createdAt": T0, "operation": "export", "operationType": SCRIPT,
         "dataTypes": '["Goal"]', "recordCount": 4, "actor": "u1", "details": "{}"},
        {"id": "aud_2", "createdAt": T0 + dt.timedelta(hours=1), "operation": "import",
         "operationType": None, "dataTypes": None, "recordCount": None, "actor": None,
         "details": None},
    ]  # fmt: skip
    counts = {name: t.num_rows for name, t in hostile_user().items()}
    return {
        "audit_rows": audit,
        "texts": {"controller": f"Acme {TEMPLATE}", "rights": ["Ask us.", SCRIPT]},
        "live_counts": counts | {"DataAuditLog": len(audit)},
        "records": {"BackupConfig": [{"id": "bc1", "userId": "u1", "frequency": RAW}]},
    }


REPORT_FILTERS = {"modules": ["fitness", SCRIPT], "since": "2025-01-01"}


def hostile_readme() -> bytes:
    bundle = render_gdpr_bundle(
        hostile_user(), user_id="u1", exported_at=EXPORTED_AT, **bundle_options()
    )
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return archive.read(README)


def hostile_report() -> bytes:
    return render_report_html(
        hostile_user(),
        user_id="u1",
        exported_at=EXPORTED_AT,
        filters=REPORT_FILTERS,
    )


class _PageText(HTMLParser):
    """A page as a reader gets it: its text, one line per block, and the chart elements."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.svg: list[str] = []
        self.tags: list[str] = []
        self._style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._style = tag == "style"
        if tag in BLOCKS:
            self.parts.append("\n")
        if tag in SVG_SHAPES:
            self.svg.append(tag + "".join(f" {k}={v}" for k, v in sorted(attrs)))

    def handle_endtag(self, tag):
        self._style = False
        if tag in BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._style:
            self.parts.append(data)


def page_text(page: bytes) -> str:
    parser = _PageText()
    parser.feed(page.decode("utf-8"))
    parser.close()
    lines = (re.sub(r"\s+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join([*filter(None, lines), "--- chart elements", *parser.svg]) + "\n"


@pytest.mark.parametrize(
    ("render", "golden"),
    [(hostile_report, "report.txt"), (hostile_readme, "gdpr_readme.txt")],
)
def test_the_pages_say_what_they_said_before_the_templates(render, golden):
    assert page_text(render()) == (GOLDEN / golden).read_text(encoding="utf-8")


@pytest.mark.parametrize("render", [hostile_report, hostile_readme])
def test_hostile_user_text_comes_out_as_text(render):
    page = render().decode("utf-8")
    parser = _PageText()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags and "i" not in parser.tags
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    text = page_text(page.encode())
    for written in (SCRIPT, TEMPLATE, RAW):  # shown as written, never evaluated
        assert written in text


def test_the_templates_load_through_the_package():
    environment = page_environment()
    assert isinstance(environment.loader, jinja2.PackageLoader)
    assert environment.autoescape is True
    assert {"page.html.j2", "charts.html.j2", "report.html.j2", "gdpr_readme.html.j2"} <= set(
        environment.list_templates()
    )
