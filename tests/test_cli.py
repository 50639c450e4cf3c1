"""The `goalport` command line: exports, and a clear error with a non-zero exit for each
kind of bad input (unknown user, format, bad date, unreachable database, unwritable
storage). Runs the installed console script, as a user would; the bad-request cases
call the same command object in-process, to keep the suite fast. And the package's shape:
no area module imports `pipelines.cli.main` back, and `goalport --help` imports nothing
heavy."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli.main import main
from synthetic.seed import seed_database

GOALPORT = str(Path(sys.executable).parent / "goalport")


def run(args, env, cwd):
    full_env = {**os.environ, **env}
    return subprocess.run(
        [GOALPORT, *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def cli_env(pg_url, tmp_path):
    seed_database(pg_url, 3, seed=5, heavy_every=0)
    return {"GOALPORT_DATABASE_URL": pg_url, "GOALPORT_STORAGE_URL": str(tmp_path / "store")}


def first_user(pg_url):
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        uid = conn.execute(sa.text('SELECT min(id) FROM "User"')).scalar()
    engine.dispose()
    return uid


@pytest.mark.slow
def test_export_writes_files_and_prints_where(cli_env, pg_url, tmp_path):
    user = first_user(pg_url)
    done = run(["export", user, "--format", "json,csv", "--format", "parquet"], cli_env, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.strip().splitlines()]
    assert sorted(fmt for _, fmt, _, _ in lines) == ["csv", "json", "parquet"]
    for _uid, _fmt, size, url in lines:
        path = Path(url.removeprefix("file://"))
        assert path.is_file() and path.stat().st_size == int(size)
        assert str(path).startswith(str(tmp_path / "store" / "exports" / user))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "no-such-user"], "unknown user id: no-such-user"),
        (["export", "{user}", "--format", "pdf"], "unknown export format pdf"),
        (["export", "{user}", "--since", "2026-13-01"], "--since: '2026-13-01' is not a date"),
        (
            ["export", "{user}", "--since", "2026-05-01", "--until", "2026-01-01"],
            "is after --until",
        ),
    ],
)
def test_bad_requests_are_refused_clearly(cli_env, pg_url, tmp_path, monkeypatch, args, message):
    """In-process (the same command object as the console script) to keep the suite fast."""
    for name, value in cli_env.items():
        monkeypatch.setenv(name, value)
    user = first_user(pg_url)
    done = CliRunner().invoke(main, [a.format(user=user) for a in args])
    assert done.exit_code == 1
    assert message in done.stderr
    assert not (tmp_path / "store" / "exports").exists()


@pytest.mark.slow
def test_unreachable_database_is_named(tmp_path):
    env = {"GOALPORT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"}
    done = run(["export", "u1"], env, tmp_path)
    assert done.returncode == 1
    assert (
        "cannot reach the database at postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
        in done.stderr
    )
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_unmigrated_database_says_what_to_run(pg_template, tmp_path):
    import sqlalchemy as sa

    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    done = run(["export", "u1"], {"GOALPORT_DATABASE_URL": f"sqlite:///{empty}"}, tmp_path)
    assert done.returncode == 1
    assert "run `goalport db upgrade`" in done.stderr


@pytest.mark.slow
def test_unwritable_storage_is_named(cli_env, pg_url, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    user = first_user(pg_url)
    done = run(["export", user, "--out", str(blocker / "inside")], cli_env, tmp_path)
    assert done.returncode == 1
    assert f"cannot write file://{blocker}/inside" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_embedded_default_needs_no_configuration(tmp_path):
    """With no variables set, goalport uses ./var: migrate, seed, export."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALPORT_")}
    for args in (["db", "upgrade"], ["seed", "--users", "2", "--heavy-every", "0"]):
        done = subprocess.run(
            [GOALPORT, *args], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "goalport.db").is_file()


CLI_PACKAGE = Path(__file__).parents[1] / "pipelines" / "cli"
SHARED = {"pipelines.cli.common", "pipelines.cli.import_preview", "pipelines.cli.destination_setup"}


def test_area_modules_import_only_the_shared_cli_modules():
    """`main` imports the area modules to add their commands; an area module importing
    `main` (or another area) back would make a cycle again."""
    for module in sorted(CLI_PACKAGE.glob("*.py")):
        if module.name == "main.py":
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name == "pipelines.cli" or name.startswith("pipelines.cli."):
                    assert name in SHARED, f"{module.name} imports {name}"


def test_help_imports_nothing_heavy():
    """Commands import their work when they run: `goalport --help` stays fast."""
    probe = (
        "import sys, pipelines.cli.main; "
        "print(sorted(m for m in ('pyarrow', 'sqlalchemy', 'dagster') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_import_choices_are_the_import_areas():
    """The CLI repeats these (importing the area costs a second at `--help`); they must agree."""
    from assets.imports import plan, staging
    from pipelines.cli import import_preview

    assert import_preview.MODES == staging.MODES
    assert import_preview.POLICIES == plan.POLICIES
    assert import_preview.COLUMNS == plan.COUNT_KEYS
