"""`report.html`: the user's goals, completion by module and progress charts, self-contained.

The page is checked as text (user text escaped, nothing that could load from elsewhere) and
rendered by a real browser: headless Chromium screenshots it to a PNG while its network log
records every request; a control page with external references proves the log would show
a request the report made, and the report's log shows none.
"""

import datetime as dt
import html
import json
import re
import shutil
import struct
import subprocess
import zlib
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest

from assets.exports.batches import render_user_files
from assets.formats.charts import MAX_POINTS_PER_CHART
from assets.formats.report import MAX_GOAL_CHARTS, render_report_html
from resources.database import ExtractedBatch
from resources.schema import APP_ARROW_SCHEMAS, empty_app_tables
from synthetic.population import generate_population

# whichever Chromium is on the PATH (Debian's `chromium`, Ubuntu's `chromium-browser`)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
EXPORTED_AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2025, 1, 1, 8, 0, tzinfo=dt.UTC)
HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
LOADING_TAGS = {
    "script",
    "link",
    "iframe",
    "frame",
    "object",
    "embed",
    "img",
    "image",
    "base",
    "video",
    "audio",
    "source",
    "track",
    "picture",
    "use",
    "feimage",
}
URL_ATTRIBUTES = {
    "src",
    "href",
    "xlink:href",
    "srcset",
    "action",
    "formaction",
    "poster",
    "data",
    "background",
    "ping",
    "manifest",
    "codebase",
}


def table(name: str, rows: list[dict]) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[name]
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema)


def goal(goal_id, title, module=None, parent=None, done=False, day=0):
    created = T0 + dt.timedelta(days=day)
    return {
        "id": goal_id, "userId": "u1", "moduleId": module, "parentGoalId": parent,
        "title": title, "priority": 3, "isCompleted": done,
        "completedAt": created + dt.timedelta(days=5) if done else None,
        "createdAt": created, "updatedAt": created,
    }  # fmt: skip


def progress(goal_id, values, max_value=None):
    return [
        {
            "id": f"p-{goal_id}-{i:05d}", "userId": "u1", "goalId": goal_id,
            "value": Decimal(str(v)), "maxValue": Decimal(str(max_value)) if max_value else None,
            "recordedAt": T0 + dt.timedelta(days=i),
        }
        for i, v in enumerate(values)
    ]  # fmt: skip


def small_user() -> dict[str, pa.Table]:
    tables = empty_app_tables()
    tables["User"] = table(
        "User",
        [{"id": "u1", "email": "zoe@example.test", "firstName": "Zoë", "lastName": "<b>Brontë</b> زوي 🌱",
          "createdAt": T0, "updatedAt": T0}],
    )  # fmt: skip
    tables["Module"] = table(
        "Module",
        [
            {"id": "m1", "userId": "u1", "kind": "fitness", "name": "Fitness", "isActive": True,
             "createdAt": T0},
            {"id": "m2", "userId": "u1", "kind": "bible", "name": "Bible & prayer",
             "isActive": True, "createdAt": T0},
        ],
    )  # fmt: skip
    tables["Goal"] = table(
        "Goal",
        [
            goal("g1", "Run a marathon 🏃", module="m1"),
            goal("g2", HOSTILE, module="m1", parent="g1", done=True, day=1),
            goal("g3", "Read the Psalms", module="m2", done=True, day=2),
            goal("g4", "=SUM(A1:A9) inbox zero"),
        ],
    )
    tables["Progress"] = table(
        "Progress", progress("g1", [2, 5, 8, 13, 21], max_value=42) + progress("g3", [1, 150])
    )
    tables["Achievement"] = table(
        "Achievement",
        [{"id": "a1", "userId": "u1", "goalId": "g3", "kind": "streak", "title": "Seven days",
          "points": 50, "earnedAt": T0}],
    )  # fmt: skip
    return tables


def render(tables, filters=None, user_id="u1") -> str:
    page = render_report_html(tables, user_id=user_id, exported_at=EXPORTED_AT, filters=filters)
    return page.decode("utf-8")


def test_report_shows_goals_completion_by_module_and_progress_charts():
    page = render(small_user(), filters={"modules": ["fitness", "bible"], "since": "2025-01-01"})
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "Goal report: Zoë &lt;b&gt;Brontë&lt;/b&gt; زوي 🌱" in page
    assert "Exported 2026-03-01 12:00 UTC for zoe@example.test" in page
    assert "Selection: modules fitness, bible; activity from 2025-01-01" in page
    assert "<b>4</b><span>goals</span>" in page and "<b>2 (50%)</b>" in page
    assert "<b>7</b><span>progress entries</span>" in page
    # completion by module: Fitness 1 of 2, Bible 1 of 1, and the goal without a module
    assert "Fitness</text>" in page and "1/2 (50%)" in page
    assert "Bible &amp; prayer</text>" in page and "1/1 (100%)" in page
    assert "No module</text>" in page and "0/1 (0%)" in page
    # one chart per goal with progress, the target drawn for the goal that has one
    charts = re.findall(r"<figure><figcaption>(.*?)</figcaption>(<svg.*?</svg>)", page)
    assert [title for title, _ in charts] == ["Run a marathon 🏃", "Read the Psalms"]
    marathon = charts[0][1]
    assert marathon.count("<circle") == 5 and "stroke-dasharray" in marathon
    assert ">2025-01-01</text>" in marathon and ">2025-01-05</text>" in marathon
    # the goal table: sub-goal under its parent, indented; latest value against the target
    goal_table = page[page.index("<h2>Goals</h2>") :]
    order = [
        goal_table.index(t) for t in ("Run a marathon", "&quot;&gt;&lt;img", "Read the Psalms")
    ]
    assert order == sorted(order)
    assert 'style="padding-left:28px">&quot;&gt;&lt;img src=x' in page
    assert "21 / 42 (50%)" in page
    assert "Seven days" in page


def test_user_text_is_escaped_and_nothing_could_load_from_elsewhere():
    page = render(small_user())
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert html_escaped(HOSTILE) in page
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    assert f'<meta http-equiv="Content-Security-Policy" content="{csp}">' in page
    assert external_references(page) == []
    # the audit itself sees what it looks for
    assert external_references('<p style="background:url(x.png)"><img src="a.png"></p>') == [
        "p style='background:url(x.png)'",
        "<img>",
        "img src='a.png'",
    ]

    population = generate_population(3, seed=2, heavy_every=0)
    batch = ExtractedBatch(user_ids=tuple(population["User"]["id"].to_pylist()), tables=population)
    for user_id, tables in batch.per_user().items():
        files = render_user_files(
            tables, ["report"], user_id=user_id, exported_at=EXPORTED_AT, filters=None
        )
        assert external_references(files["report"].decode()) == []


def test_heavy_users_get_a_bounded_page():
    tables = small_user()
    goals = [goal(f"h{i:03d}", f"Habit {i}", module="m1") for i in range(MAX_GOAL_CHARTS + 10)]
    entries = [row for g in goals for row in progress(g["id"], range(300 + int(g["id"][1:])))]
    tables["Goal"] = table("Goal", goals)
    tables["Progress"] = table("Progress", entries)
    page = render(tables)
    charts = re.findall(r"<polyline points=\"([^\"]*)\"", page)
    assert len(charts) == MAX_GOAL_CHARTS
    assert max(len(c.split()) for c in charts) <= MAX_POINTS_PER_CHART
    assert "10 more goals have progress" in page
    assert "Habit 69</figcaption>" in page  # the goals with the most entries come first
    assert "Habit 0</figcaption>" not in page
    assert len(page) < 1_500_000


def test_a_user_with_nothing_yet_gets_a_page_that_says_so():
    tables = empty_app_tables()
    tables["User"] = small_user()["User"]
    page = render(tables)
    assert page.count("No goals in this export.") == 2
    assert "No progress recorded in this export." in page
    assert "No achievements in this export." in page


def html_escaped(text: str) -> str:
    return html.escape(text, quote=True)


class _MarkupAudit(HTMLParser):
    """Everything in a page's markup (not its text) that could make a browser fetch."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        if tag in LOADING_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            value = value or ""
            if name in URL_ATTRIBUTES or name.startswith("on"):
                self.problems.append(f"{tag} {name}={value!r}")
            if name == "style" and re.search(r"url\(|@import|image-set", value, re.IGNORECASE):
                self.problems.append(f"{tag} {name}={value!r}")
            if tag == "meta" and name == "http-equiv" and value.lower() == "refresh":
                self.problems.append("meta refresh")
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style and re.search(r"url\(|@import|image-set", data, re.IGNORECASE):
            self.problems.append(f"style: {data[:80]!r}")


def external_references(page: str) -> list[str]:
    audit = _MarkupAudit()
    audit.feed(page)
    audit.close()
    return audit.problems


# ---------------------------------------------------------------- a real browser


def chromium_screenshot(page: Path, out: Path) -> subprocess.Popen:
    """Start headless Chromium rendering `page` to out/shot.png, logging the network to
    out/net.json; every host name resolves to nothing."""
    out.mkdir()
    return subprocess.Popen(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", "--window-size=1200,1800",
            f"--user-data-dir={out / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--log-net-log={out / 'net.json'}",
            f"--screenshot={out / 'shot.png'}",
            page.as_uri(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def requests_made_by_the_page(net_log: Path) -> list[str]:
    """URLs of network requests that a page (a file:// document) started.

    Chromium itself phones home at start-up (update checks, account lookups) even with
    background networking disabled; those have no page origin, and are not the page's.
    """
    log = json.loads(net_log.read_text())
    event_types = {value: name for name, value in log["constants"]["logEventTypes"].items()}
    found = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event_types.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        from_page = params.get("initiator") != "not an origin" or "file://" in params.get(
            "network_isolation_key", ""
        )
        if from_page:
            found.append(params["url"])
    return found


def png_summary(path: Path) -> tuple[int, int, int]:
    """(width, height, number of distinct byte values in the image data) of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = b"", 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.mark.slow
def test_chromium_renders_the_report_offline_without_a_single_request(tmp_path):
    population = generate_population(2, seed=9, heavy_every=0)
    per_user = ExtractedBatch(
        user_ids=tuple(population["User"]["id"].to_pylist()), tables=population
    ).per_user()
    user_id = max(per_user, key=lambda u: per_user[u]["Progress"].num_rows)
    report = tmp_path / "report.html"
    report.write_bytes(
        render_report_html(
            per_user[user_id], user_id=user_id, exported_at=EXPORTED_AT, filters=None
        )
    )
    control = tmp_path / "control.html"
    control.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="https://fonts.example.org/x">'
        '</head><body><img src="http://images.example.com/a.png">control</body></html>'
    )
    browsers = {
        "report": chromium_screenshot(report, tmp_path / "report"),
        "control": chromium_screenshot(control, tmp_path / "control"),
    }
    for name, browser in browsers.items():
        _, stderr = browser.communicate(timeout=180)
        assert browser.returncode == 0, f"{name}: {stderr.decode()[-2000:]}"

    shot = tmp_path / "report" / "shot.png"
    width, height, distinct = png_summary(shot)
    assert (width, height) == (1200, 1800)
    assert shot.stat().st_size > 20_000 and distinct > 100  # charts and text, not a blank

    assert sorted(requests_made_by_the_page(tmp_path / "control" / "net.json")) == [
        "http://images.example.com/a.png",
        "https://fonts.example.org/x",
    ]
    assert requests_made_by_the_page(tmp_path / "report" / "net.json") == []


def test_a_single_entry_is_drawn_mid_chart_and_only_a_constant_target_as_a_line():
    """All of a page's charts are worked out together; each is drawn as if alone (the
    coordinates are the per-chart code's)."""
    tables = small_user()
    tables["Progress"] = table(
        "Progress",
        progress("g1", [7])  # one entry: mid-width, at the top of its scale
        + [
            dict(row, maxValue=Decimal(m))
            for row, m in zip(progress("g3", [1, 2]), [10, 20], strict=True)
        ],
    )
    page = render(tables)
    charts = dict(re.findall(r"<figure><figcaption>(.*?)</figcaption>(<svg.*?</svg>)", page))
    single, changing = charts["Run a marathon 🏃"], charts["Read the Psalms"]
    assert '<circle cx="178.0" cy="10.0" r="2.5"' in single and "<polyline" not in single
    assert ">7</text>" in single and single.count(">2025-01-01</text>") == 2
    assert "stroke-dasharray" not in changing and ">20</text>" in changing
    assert 'points="46.0,120.2 310.0,114.4"' in changing
