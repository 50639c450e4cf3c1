"""Reading the XML export beside reading the JSON export, for one heavy user (the tables
of `bench.import_bench.heavy_user_tables`): the XML reader's time as a ratio to the JSON
reader's, and its parse step (lxml, hardened) beside defusedxml's pure-Python parse of the
same document, the reader before it. Best of three runs each.

Command: `GOALPORT_BENCH_ONLY=xml_read make bench`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

RUNS = 3


def _best(work: Callable[[], object]) -> float:
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def run(_database_url: str) -> dict:
    import defusedxml.ElementTree as defused

    from assets.formats.json import read_json_export
    from assets.formats.registry import export_format
    from assets.formats.xml import _parse, read_xml_export
    from bench.import_bench import heavy_user_tables

    user_id, tables = heavy_user_tables()
    rows = sum(t.num_rows for t in tables.values())
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    documents = {
        fmt: export_format(fmt).render(tables, user_id=user_id, exported_at=when, filters=None)
        for fmt in ("json", "xml")
    }
    assert read_xml_export(documents["xml"]).keys() == read_json_export(documents["json"]).keys()
    result = {
        "rows": rows,
        "json_bytes": len(documents["json"]),
        "xml_bytes": len(documents["xml"]),
        "json_read_s": _best(lambda: read_json_export(documents["json"])),
        "xml_read_s": _best(lambda: read_xml_export(documents["xml"])),
        "xml_parse_lxml_s": _best(lambda: _parse(documents["xml"])),
        "xml_parse_defusedxml_s": _best(
            lambda: defused.fromstring(documents["xml"], forbid_dtd=True)
        ),
    }
    result["xml_vs_json"] = result["xml_read_s"] / result["json_read_s"]
    result["parse_speedup_vs_defusedxml"] = (
        result["xml_parse_defusedxml_s"] / result["xml_parse_lxml_s"]
    )
    print(
        f"one heavy user ({rows:,} rows; JSON {result['json_bytes'] / 2**20:.1f} MiB, "
        f"XML {result['xml_bytes'] / 2**20:.1f} MiB):\n"
        f"  read JSON {result['json_read_s'] * 1000:7.0f} ms\n"
        f"  read XML  {result['xml_read_s'] * 1000:7.0f} ms  "
        f"({result['xml_vs_json']:.2f}x the JSON read)\n"
        f"  XML parse: lxml hardened {result['xml_parse_lxml_s'] * 1000:.0f} ms, "
        f"defusedxml {result['xml_parse_defusedxml_s'] * 1000:.0f} ms "
        f"({result['parse_speedup_vs_defusedxml']:.1f}x faster)"
    )
    return result
