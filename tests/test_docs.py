"""docs/ARCHITECTURE.md stays true: every module it names exists, every module of the areas
is on its map, and every "`module.py` `name`" it cites is defined in that module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = (REPO / "docs" / "ARCHITECTURE.md").read_text()
MAPPED = ("assets", "resources", "pipelines", "synthetic", "api", "portal")


def _map_rows() -> dict[str, list[str]]:
    """package folder -> the names its row of the map gives."""
    rows = {}
    for line in PAGE.splitlines():
        cells = re.findall(r"`([^`]+)`", line)
        if line.startswith("| `") and cells and cells[0].endswith("/"):
            rows[cells[0]] = cells[1:]
    return rows


def _full_paths() -> set[str]:
    return set(
        re.findall(r"`((?:assets|resources|pipelines|synthetic|api|portal)/[\w/]+\.py)`", PAGE)
    )


def test_every_module_the_page_names_exists():
    missing = [p for p in _full_paths() if not (REPO / p).is_file()]
    for package, names in _map_rows().items():
        for name in names:
            if name.endswith((".py", "/")) and "<" not in name:
                if not (REPO / package / name).exists():
                    missing.append(package + name)
    assert missing == []


def test_every_module_is_on_the_map():
    rows = _map_rows()
    named = {package + name for package, names in rows.items() for name in names}
    named |= _full_paths()
    unnamed = []
    for top in MAPPED:
        for path in sorted((REPO / top).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if path.name == "__init__.py" or relative in named:
                continue
            if any(relative.startswith(folder) and folder.count("/") > 1 for folder in named):
                continue  # a subfolder named as a whole, e.g. assets/imports/parsers/
            unnamed.append(relative)
    assert unnamed == []


def test_every_cited_name_is_defined_where_the_page_says():
    wrong = []
    for path, name in re.findall(r"`([\w/]+\.py)` `(\w+)`", PAGE):
        tree = ast.parse((REPO / path).read_text())
        defined = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
        }
        defined |= {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        if name not in defined:
            wrong.append(f"{path} {name}")
    assert wrong == []
