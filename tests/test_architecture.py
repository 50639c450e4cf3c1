"""The layout's rules, checked on the source: what docs/ARCHITECTURE.md promises a maintainer.

- no import cycle among goalport's modules at module level (an import inside a function is
  how a module defers a costly library, and does not count);
- the HTTP API (`api/`) sits beside `pipelines/`: it uses the areas' plain modules and
  `resources/`, never an area's Dagster `defs` nor `pipelines/`, and nothing below it
  imports it;
- the portal (`portal/`) sits on the API: it uses `api/`'s functions, the areas' plain
  modules and `resources/`, never a `defs` nor `pipelines/`; only `api/app.py` (which
  mounts it) and `pipelines/` import it, and nothing below imports it;
- only the areas' Dagster modules (`assets/<area>/defs.py` or `defs/`), `resources/` and
  `pipelines/` import dagster: renderers, parsers and services stay plain Python;
- `resources/settings.py` is the only reader of the environment;
- no module over 1,100 lines, and one over 800 says why in its docstring (a paragraph
  beginning "Why one module").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("assets", "resources", "pipelines", "synthetic", "migrations", "api", "portal")
MAX_LINES = 1100
LINES_NEEDING_A_REASON = 800


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "versions" in path.parts:  # Alembic migrations are data, not modules
                continue
            found[_module_name(path)] = path
    return found


SOURCES = _sources()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in SOURCES.items()}


def _is_type_checking_block(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported_names(statements: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in statements:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.If | ast.Try) and not _is_type_checking_block(node):
            for block in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])):
                names |= _imported_names(block)
            for handler in getattr(node, "handlers", []):
                names |= _imported_names(handler.body)
    return names


def _all_imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _project_module(name: str) -> str | None:
    """The goalport module an import names (`a.b.c` may be module a.b's attribute c)."""
    while name:
        if name in SOURCES:
            return name
        name = name.rpartition(".")[0]
    return None


def _module_level_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in TREES.items():
        targets = {_project_module(n) for n in _imported_names(tree.body)}
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        for target in list(targets):
            while target and "." in target:
                target = target.rpartition(".")[0]
                targets.add(target if target in SOURCES else None)
        graph[name] = {t for t in targets if t and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_at_module_level():
    assert _cycles(_module_level_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _may_import_dagster(name: str) -> bool:
    parts = name.split(".")
    if parts[0] in ("resources", "pipelines"):
        return True
    return parts[0] == "assets" and len(parts) >= 3 and parts[2] == "defs"


def test_only_dagster_modules_import_dagster():
    offenders = [
        name
        for name, tree in TREES.items()
        if not _may_import_dagster(name)
        and any(
            n == "dagster" or n.startswith(("dagster.", "dagster_")) for n in _all_imports(tree)
        )
    ]
    assert offenders == []


def _reads_environment(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                return True
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ("environ", "getenv") for alias in node.names):
                return True
    return False


def test_only_settings_reads_the_environment():
    readers = [name for name, tree in TREES.items() if _reads_environment(tree)]
    assert readers == ["resources.settings"]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_module_size(name):
    lines = len(SOURCES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{SOURCES[name]} has {lines} lines"
    if lines > LINES_NEEDING_A_REASON:
        docstring = ast.get_docstring(TREES[name]) or ""
        assert "Why one module" in docstring, f"{SOURCES[name]} has {lines} lines, not why"


def _layer_violations(name: str, tree: ast.Module) -> list[str]:
    targets = {t for t in (_project_module(n) for n in _all_imports(tree)) if t}
    top = name.split(".")[0]

    def is_portal(t: str) -> bool:
        return t == "portal" or t.startswith("portal.")

    if top in ("api", "portal"):
        return sorted(
            t
            for t in targets
            if t.startswith("pipelines")
            or (t.startswith("assets.") and t.split(".")[2:3] == ["defs"])
            or (top == "api" and name != "api.app" and is_portal(t))
        )
    if top in ("assets", "resources", "synthetic", "migrations"):
        return sorted(t for t in targets if t == "api" or t.startswith("api.") or is_portal(t))
    return []


def test_the_api_sits_beside_pipelines():
    offenders = {
        name: found for name, tree in TREES.items() if (found := _layer_violations(name, tree))
    }
    assert offenders == {}


def test_the_layer_check_sees_the_portal_below_the_api():
    assert _layer_violations("api.exports", ast.parse("from portal.web import render")) == [
        "portal.web"
    ]
    assert _layer_violations("api.app", ast.parse("from portal.routes import install_portal")) == []
    assert _layer_violations("portal.web", ast.parse("import pipelines.cli.main")) == [
        "pipelines.cli.main"
    ]
    assert _layer_violations("resources.audit", ast.parse("import portal.sessions")) == [
        "portal.sessions"
    ]


def test_the_layer_check_sees_a_defs_import():
    tree = ast.parse("from assets.exports.defs import export_job")
    assert _layer_violations("api.exports", tree) == ["assets.exports.defs"]
