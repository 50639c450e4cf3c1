"""`goalport import` and `goalport imports list` as a user types them: the preview table,
the question before applying, `--yes`, confirm and undo later, and a clear one-line error
with a non-zero exit for each kind of bad input."""

import re

import pytest
from click.testing import CliRunner
from import_support import dump, erase_user_rows, export_user, populate

from pipelines.cli.main import main
from resources import age
from resources.database import AppDatabase


@pytest.fixture
def env(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "storage"))
    database = AppDatabase(url=pg_url)
    user_id = sorted(populate(database.engine, 2, 61))[0]
    before = dump(database.engine)
    path = tmp_path / "my export.json"
    path.write_bytes(export_user(database, user_id, "json"))
    erase_user_rows(database.engine, user_id, keep_account=True)
    yield database, user_id, path, before
    database.engine.dispose()


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def job_id_of(result) -> str:
    return re.search(r"import job (imp_\w+)", result.output).group(1)


def test_preview_then_decline_then_confirm_then_undo(env):
    database, user_id, path, before = env
    erased = dump(database.engine)
    result = run("import", str(path), "--user", user_id, input="n\n")
    assert result.exit_code == 0, result.output
    table = result.output
    assert re.search(
        r"^table\s+create\s+update\s+unchanged\s+conflict\s+delete\s+refused\s+invalid", table, re.M
    )
    assert re.search(r"^Goal\s+\d+\s+0\s+0\s+0\s+0\s+0\s+0$", table, re.M)
    assert "apply these changes?" in table and "not applied" in table
    assert dump(database.engine) == erased
    job_id = job_id_of(result)

    listed = run("imports", "list", user_id)
    assert job_id in listed.output and "previewed" in listed.output

    confirmed = run("import", "confirm", job_id)
    assert confirmed.exit_code == 0 and "applied import" in confirmed.output
    assert dump(database.engine) == before

    shown = run("import", "show", job_id)
    assert "applied" in shown.output and "Goal" in shown.output

    undone = run("import", "undo", job_id)
    assert undone.exit_code == 0 and "rows restored" in undone.output
    assert dump(database.engine) == erased


def test_yes_applies_and_a_second_import_has_nothing_to_change(env):
    database, user_id, path, before = env
    result = run("import", str(path), "--user", user_id, "--yes")
    assert result.exit_code == 0, result.output
    assert "applied import" in result.output
    assert dump(database.engine) == before
    again = run("import", str(path), "--user", user_id, "--mode", "replace")
    assert again.exit_code == 0
    assert "nothing to change" in again.output


def test_encrypted_file_with_passphrase_from_the_environment(env, tmp_path, monkeypatch):
    database, user_id, path, before = env
    sealed = tmp_path / "backup.age"
    sealed.write_bytes(age.encrypt(path.read_bytes(), passphrase="hunter2", work_factor=10))
    missing = run("import", str(sealed), "--user", user_id, "--yes")
    assert missing.exit_code == 1 and "encrypted" in missing.output
    unset = run("import", str(sealed), "--user", user_id, "--passphrase-env", "NO_SUCH_VAR")
    assert unset.exit_code == 1 and "NO_SUCH_VAR" in unset.output
    monkeypatch.setenv("EMPTY_PASSPHRASE", "")
    empty = run("import", str(sealed), "--user", user_id, "--passphrase-env", "EMPTY_PASSPHRASE")
    assert empty.exit_code == 1 and "EMPTY_PASSPHRASE" in empty.output
    assert "not set or empty" in empty.output
    monkeypatch.setenv("BACKUP_PASSPHRASE", "hunter2")
    done = run(
        "import", str(sealed), "--user", user_id, "--passphrase-env", "BACKUP_PASSPHRASE", "--yes"
    )
    assert done.exit_code == 0, done.output
    assert "encrypted" in done.output
    assert dump(database.engine) == before


BAD_INPUT = [
    (["import", "{path}", "--user", "no-such-user"], "unknown user no-such-user"),
    (["import", "/no/such/file.json", "--user", "{user}"], "cannot read /no/such/file.json"),
    (
        ["import", "http://127.0.0.1:9/export.json", "--user", "{user}"],
        "give a local path, a file:// or s3:// URL (not http://)",
    ),
    (["import", "{junk}", "--user", "{user}"], "not an export of a supported app"),
    (["import", "{path}", "--user", "{user}", "--mode", "mirror"], "Invalid value for '--mode'"),
    (["import", "confirm", "imp_nope"], "no import job imp_nope"),
    (["import", "undo", "imp_nope"], "no import job imp_nope"),
]


def test_bad_input_is_one_clear_error(env, tmp_path):
    database, user_id, path, _ = env
    erased = dump(database.engine)
    junk = tmp_path / "junk.txt"
    junk.write_text("not an export at all\n")
    for args, message in BAD_INPUT:
        filled = [a.format(path=path, user=user_id, junk=junk) for a in args]
        result = run(*filled)
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
    assert dump(database.engine) == erased


def test_a_file_url_is_read_like_its_path(env):
    database, user_id, path, before = env
    result = run("import", f"file://{path}", "--user", user_id, "--yes")
    assert result.exit_code == 0, result.output
    assert dump(database.engine) == before
    job = re.search(r"import job (imp_\w+)", result.output).group(1)
    assert f"({path.name}, user {user_id})" in run("import", "show", job).output


def test_import_help_shows_how_to_import_a_file_and_every_option():
    """`goalport import --help` is where people look: the usage for a file, every option of
    the import with its help, and the subcommands (not only the subcommands)."""
    shown = CliRunner().invoke(main, ["import", "--help"], prog_name="goalport", terminal_width=200)
    assert shown.exit_code == 0
    text = shown.output
    assert "Usage: goalport import FILE --user USER [options]" in text
    assert "or: goalport import confirm|undo|show JOB_ID" in text
    file_command = main.commands["import"].commands["file"]
    options = [p for p in file_command.params if p.param_type_name == "option"]
    assert {o.name for o in options} >= {"user_id", "mode", "policy", "modules", "yes"}
    for option in options:
        assert option.help, f"{option.opts[0]} has no help"
        assert option.opts[0] in text and option.help[:40] in text, option.opts[0]
    commands = text.split("Commands:")[1]
    for name in ("confirm", "undo", "show"):
        assert re.search(rf"^  {name} ", commands, re.M), name
    assert not re.search(r"^  file ", commands, re.M)

    for args in (["import", "x.json", "--help"], ["import"]):
        same = CliRunner().invoke(main, args, prog_name="goalport")
        assert "Usage: goalport import FILE --user USER [options]" in same.output, args
