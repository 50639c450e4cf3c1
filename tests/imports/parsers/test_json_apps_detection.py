"""Detection between the Microsoft To Do, Remember The Milk, Taskwarrior and Toodledo
exports and every other app's: each file is recognised as its own app's from its content,
and no parser takes another app's file (each refuses it with one line naming the file;
Notion's parser, which reads any CSV-shaped text as a database, relies on detection)."""

from __future__ import annotations

import json

import pytest
from parser_checks import fixture_bytes, foreign_exports, zip_bytes

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import PARSERS, detect_source, export_guides

NEW_APPS = ("microsoft_todo", "remember_the_milk", "taskwarrior", "toodledo")


def variants() -> dict[str, list[bytes]]:
    """Every shape of the new apps' files that detection must recognise."""
    rtm = "remember_the_milk"
    tasks_rsp = fixture_bytes(rtm, "rtm.tasks.getList.json")
    lists_rsp = fixture_bytes(rtm, "rtm.lists.getList.json")
    tw = json.loads(fixture_bytes("taskwarrior", "taskwarrior.json"))
    return {
        "microsoft_todo": [
            foreign_exports()["microsoft_todo"],
            fixture_bytes("microsoft_todo", "tasks-page.json"),
        ],
        rtm: [
            foreign_exports()[rtm],
            tasks_rsp,
            lists_rsp,
            zip_bytes({"a.json": lists_rsp, "b.json": tasks_rsp, "README.txt": "saved by x"}),
        ],
        "taskwarrior": [
            foreign_exports()["taskwarrior"],
            "\n".join(json.dumps(t) for t in tw).encode(),
        ],
        "toodledo": [
            foreign_exports()["toodledo"],
            fixture_bytes("toodledo", "toodledo_completed.csv"),
            fixture_bytes("toodledo", "toodledo_notes.csv"),
        ],
    }


@pytest.mark.parametrize("app", NEW_APPS)
def test_every_shape_is_detected_as_its_app(app):
    for data in variants()[app]:
        assert detect_source(data, "upload.bin") == app


@pytest.mark.parametrize("owner", sorted(foreign_exports()))
def test_no_parser_takes_another_apps_file(owner):
    files = variants().get(owner) or [foreign_exports()[owner]]
    for data in files:
        assert detect_source(data, "upload.bin") == owner
        for app, parse in PARSERS.items():
            if app == owner or (owner not in NEW_APPS and app not in NEW_APPS):
                continue
            if app == "notion":
                continue  # reads any CSV-shaped text as a database: detection is its guard
            with pytest.raises(ImportFormatError) as caught:
                parse(data, file_name="other.bin")
            assert str(caught.value).startswith("other.bin") and "\n" not in str(caught.value)


@pytest.mark.parametrize("app", NEW_APPS)
def test_each_app_has_an_export_guide(app):
    import importlib

    guide = importlib.import_module(f"assets.imports.parsers.{app}").GUIDE
    assert guide.startswith("## ") and guide.endswith("\n")
    for part in ("**How to export**", "**What goalport keeps**", "**What it cannot keep**"):
        assert guide.count(part) == 1, (app, part)
    assert export_guides()[app] == guide  # what `goalport import guide` prints


@pytest.mark.parametrize(
    "doc",
    [
        {"value": [{"title": "x", "status": "open"}]},
        {"value": [{"displayName": "x"}]},
        {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('todo%40x')/events"},
        {"lists": [{"name": "x"}], "tasks": []},
        {"rsp": {"tasks": []}},
        [{"uuid": "u", "description": "d", "status": "open", "entry": "x"}],
        [{"uuid": "u", "description": "d"}],
    ],
)
def test_look_alike_json_is_nobodys(doc):
    assert detect_source(json.dumps(doc).encode(), "x.json") == "unknown"


@pytest.mark.parametrize("app", ["microsoft_todo", "remember_the_milk", "taskwarrior"])
def test_json_nested_200000_deep_is_refused_in_one_line(app):
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(ImportFormatError) as caught:
        PARSERS[app](deep, file_name="deep.json")
    assert str(caught.value) == "deep.json: JSON nested deeper than 1024 levels"
