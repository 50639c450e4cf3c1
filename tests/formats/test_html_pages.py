"""The HTML pages (report.html, a GDPR bundle's README.html) from their Jinja2 templates.

Their text is pinned: the golden files hold what the pages said when they were still
written as f-strings (checked against that code when the templates replaced it), as the
text a reader sees, block by block, and the values of every chart element. User text,
however hostile, comes out as text: no markup and no template syntax of a user's is ever
interpreted, and all of it is escaped by one function (`escape_texts`), which the pages'
modules call before a template sees the text. The templates load through the package, as
they will from an installed wheel.
"""

import datetime as dt
import html
import io
import re
import zipfile
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pyarrow as pa
import pytest
from markupsafe import Markup

from assets.formats.charts import ProgressChart
from assets.formats.html_pages import escape_texts, html_rows, html_texts, page_environment
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
        [{"id": "u1", "email": "zoe@example.test", "firstName": SCRIPT, "timezone": "Europe/Berlin",
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


# ---------------------------------------------------------------- escaping, in one place

QUOTES = 'Tom\'s "plan" & co'
QUOTED_COLUMNS = {
    "User": ["firstName", "lastName", "email"],
    "Module": ["name"],
    "Goal": ["title", "description"],
    "Progress": ["notes"],
    "Achievement": ["title"],
    "UserSetting": ["value"],
}


def test_escape_texts_spells_hostile_text_as_the_pages_always_did():
    values = [SCRIPT, TEMPLATE, RAW, QUOTES, "Zoë 🌱 زوي", "", 7, Decimal("2.50"),
              dt.date(2025, 1, 2), Markup("<b>kept</b>"), None]  # fmt: skip
    escaped = escape_texts(values, empty=Markup("<i>empty</i>"))
    assert escaped == [
        "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;",
        "{{ 7*7 }}",
        "{% raw %}{{ &quot;x&quot; }}{% endraw %}",
        "Tom&#x27;s &quot;plan&quot; &amp; co",
        "Zoë 🌱 زوي",
        "",
        "7",
        "2.50",
        "2025-01-02",
        "<b>kept</b>",
        "<i>empty</i>",
    ]
    assert escape_texts([None]) == ["None"]  # as Jinja would print it
    # a text holding the batch's separator is escaped text by text, to the same result
    assert escape_texts(["a\0<b>", QUOTES]) == [html.escape("a\0<b>"), html.escape(QUOTES)]
    assert escape_texts([]) == []
    assert html_texts([SCRIPT]) == [Markup(html.escape(SCRIPT))]


def test_html_rows_lays_out_every_row_with_its_cells_escaped():
    row = '<tr><td{}>{}</td><td class="num">{}</td></tr>\n'
    rows = html_rows(row, [(Markup(' class="x"'), SCRIPT, 1), ("", "{} {0} {{", None)])
    assert isinstance(rows, Markup)
    assert rows == (
        '<tr><td class="x">&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;</td>'
        '<td class="num">1</td></tr>\n'
        '<tr><td>{} {0} {{</td><td class="num">None</td></tr>\n'
    )
    assert html_rows(row, []) == ""
    with pytest.raises(ValueError, match="one cell for each"):
        html_rows(row, [(1, 2)])
    with pytest.raises(ValueError, match="one cell for each"):
        html_rows("<tr></tr>", [()])


def quoted_user() -> dict[str, pa.Table]:
    """The hostile user with quotes, an apostrophe and an ampersand in all their own text."""
    tables = hostile_user()
    for name, columns in QUOTED_COLUMNS.items():
        for column in columns:
            index = tables[name].schema.get_field_index(column)
            values = [
                None if v is None else f"{v} {QUOTES}" for v in tables[name][column].to_pylist()
            ]
            tables[name] = tables[name].set_column(
                index, tables[name].schema.field(index), pa.array(values, pa.string())
            )
    return tables


@pytest.mark.parametrize("page", ["report", "readme"])
def test_every_piece_of_user_text_is_escaped_by_the_one_escaper(page):
    """The pages hand the templates user text escaped by `escape_texts` (as `&quot;` and
    `&#x27;`): none of it is left to the templates' autoescaping (`&#34;`, `&#39;`)."""
    if page == "report":
        filters = {"modules": [QUOTES], "since": "2025-01-01"}
        rendered = render_report_html(
            quoted_user(), user_id="u1", exported_at=EXPORTED_AT, filters=filters
        )
    else:
        options = bundle_options() | {"texts": {"controller": QUOTES, "rights": [QUOTES]}}
        options["audit_rows"][0]["operation"] = QUOTES
        bundle = render_gdpr_bundle(quoted_user(), user_id="u1", exported_at=EXPORTED_AT, **options)
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            rendered = archive.read(README)
    assert b"&#34;" not in rendered and b"&#39;" not in rendered
    assert b"Tom&#x27;s &quot;plan&quot; &amp; co" in rendered
    assert page_text(rendered).count(QUOTES) >= 8


def test_the_chart_template_unpacks_the_fields_of_a_progress_chart_in_order():
    source = page_environment().loader.get_source(page_environment(), "charts.html.j2")[0]
    unpacked = re.search(r"{% for (.*?) in charts %}", source)
    assert unpacked is not None
    assert tuple(unpacked.group(1).split(", ")) == ProgressChart._fields
