"""The backups area reads and writes `DataExportJob.status` only through
`assets.exports.job_status`: a status spelled as a string literal in a backups module
(compared, filtered on, or written) would be a second copy of the status machine.
"""

import ast
from pathlib import Path

import assets.backups
from assets.exports.job_status import ExportStatus

STATUSES = {s.value for s in ExportStatus}
AREA = Path(assets.backups.__file__).parent


def _literal_status(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in STATUSES
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return any(_literal_status(e) for e in node.elts)
    return False


def status_literals(source: str) -> list[int]:
    """Lines where a status string is compared, passed to `.in_()`, or given as `status`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            found = any(_literal_status(n) for n in [node.left, *node.comparators])
        elif isinstance(node, ast.Call):
            is_in = isinstance(node.func, ast.Attribute) and node.func.attr == "in_"
            found = (is_in and any(_literal_status(a) for a in node.args)) or any(
                k.arg == "status" and _literal_status(k.value) for k in node.keywords
            )
        elif isinstance(node, ast.Dict):
            found = any(
                isinstance(k, ast.Constant) and k.value == "status" and _literal_status(v)
                for k, v in zip(node.keys, node.values, strict=True)
            )
        else:
            found = False
        if found:
            lines.append(node.lineno)
    return sorted(set(lines))


def test_the_scanner_finds_each_way_a_status_was_spelled():
    old = """
row["status"] == "processing"
job_table.c.status.in_(["pending", "processing"])
job_table.update().values(status="failed")
{"id": 1, "status": "processing"}
"""
    assert status_literals(old) == [2, 3, 4, 5]
    assert status_literals('metadata = {"failed": 1}\nx == ExportStatus.FAILED') == []


def test_no_backups_module_spells_a_status():
    found = {
        path.name: lines
        for path in sorted(AREA.rglob("*.py"))
        if (lines := status_literals(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"use assets.exports.job_status instead of status strings: {found}"
