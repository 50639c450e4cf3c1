"""The install's secrets (resources/settings.py): the audit pseudonym key and the local
download secret are generated once per install, complete or not at all, 0600, the same for
every process even when two processes race to make them; a secret shorter than 32 bytes is
refused, saying where it came from; the production path accepts only the variable.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resources import settings
from resources.audit import subject_ref
from resources.settings import (
    MissingSecretError,
    SettingError,
    download_secret,
    pseudonym_key,
)

REPO = Path(__file__).resolve().parents[2]
PUBLISHED_DEFAULT = b"goalport-default-pseudonym-key"


@pytest.fixture
def install(tmp_path, monkeypatch) -> Path:
    """A fresh install folder as the working directory, with no secret in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOALPORT_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("GOALPORT_DOWNLOAD_SECRET", raising=False)
    return tmp_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_pseudonym_key_is_generated_once_per_install_and_kept(install: Path):
    key = pseudonym_key()
    stored = install / "var" / "pseudonym-key"
    assert stored.read_bytes().strip() == key and len(key) >= 32
    assert key != PUBLISHED_DEFAULT and PUBLISHED_DEFAULT not in key
    assert _mode(stored) == 0o600 and _mode(install / "var") == 0o700
    assert list((install / "var").glob(".tmp-*")) == []
    # A new process (a restart) reads the same key and so computes the same pseudonyms.
    again = _in_new_process("pseudonym_key", install)
    assert again == key.hex()
    assert subject_ref("user-1") == subject_ref("user-1") != subject_ref("user-2")


def test_two_installs_pseudonymise_the_same_user_differently(tmp_path, monkeypatch):
    monkeypatch.delenv("GOALPORT_PSEUDONYM_KEY", raising=False)
    refs = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        refs.append(subject_ref("user-1"))
    assert refs[0] != refs[1]


def test_configured_pseudonym_key_wins_and_is_never_written(install: Path, monkeypatch):
    monkeypatch.setenv("GOALPORT_PSEUDONYM_KEY", "k" * 40)
    assert pseudonym_key() == b"k" * 40
    assert not (install / "var" / "pseudonym-key").exists()


def test_production_path_requires_the_variable(install: Path, monkeypatch):
    for name, read in (
        ("GOALPORT_PSEUDONYM_KEY", pseudonym_key),
        ("GOALPORT_DOWNLOAD_SECRET", download_secret),
    ):
        monkeypatch.setenv(name, "")  # empty counts as unset
        with pytest.raises(MissingSecretError, match=f"{name} is not set"):
            read(required=True)
        monkeypatch.setenv(name, "s" * 32)
        assert read(required=True) == b"s" * 32
    assert not (install / "var" / "pseudonym-key").exists()
    assert not (install / "var" / "download-secret").exists()


@pytest.mark.parametrize("value", ["", "short", "x" * 31])
def test_short_download_secret_in_the_environment_is_refused(install, monkeypatch, value):
    monkeypatch.setenv("GOALPORT_DOWNLOAD_SECRET", value)
    if not value:  # empty counts as unset: the install's own secret is used
        assert len(download_secret()) >= 32
        return
    with pytest.raises(SettingError) as refused:
        download_secret()
    message = str(refused.value)
    assert f"GOALPORT_DOWNLOAD_SECRET is {len(value)} bytes long" in message
    assert "at least 32" in message and value not in message


def test_32_byte_download_secret_is_accepted(install, monkeypatch):
    monkeypatch.setenv("GOALPORT_DOWNLOAD_SECRET", "y" * 32)
    assert download_secret() == b"y" * 32


@pytest.mark.parametrize("content", [b"", b"\n", b"z" * 31 + b"\n"])
def test_empty_or_short_secret_file_is_refused(install: Path, content: bytes):
    """What a crash between creating and writing the file left behind (the old writer)."""
    (install / "var").mkdir()
    for name, read in (("download-secret", download_secret), ("pseudonym-key", pseudonym_key)):
        (install / "var" / name).write_bytes(content)
        with pytest.raises(SettingError) as refused:
            read()
        message = str(refused.value)
        assert str(install / "var" / name) in message
        assert f"holds {len(content.strip())} bytes" in message
        assert ("delete it" in message) == (name == "download-secret")
        assert (install / "var" / name).read_bytes() == content, "a stored key was replaced"
        assert content.strip() == b"" or content.strip().decode() not in message


def test_download_server_and_links_refuse_a_short_secret(install, monkeypatch, tmp_path):
    import datetime as dt

    from assets.exports.downloads import download_link, make_download_server
    from resources.storage import ObjectStorage

    storage = ObjectStorage(url=str(tmp_path / "storage"))
    monkeypatch.setenv("GOALPORT_DOWNLOAD_SECRET", "too-short")
    with pytest.raises(SettingError, match="GOALPORT_DOWNLOAD_SECRET is 9 bytes long"):
        make_download_server(storage, port=0).server_close()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(SettingError, match="GOALPORT_DOWNLOAD_SECRET"):
        download_link(storage, "exports/u/x.json", expires_at=expires)


_RACER = """
import os, sys, time
from pathlib import Path
from resources import settings
Path(f"ready-{sys.argv[1]}").touch()
while not Path("go").exists():
    time.sleep(0.0005)
print(getattr(settings, sys.argv[2])().hex())
"""


@pytest.mark.slow
@pytest.mark.parametrize("function", ["pseudonym_key", "download_secret"])
def test_first_use_by_racing_processes_gives_every_process_the_same_secret(
    tmp_path, monkeypatch, function: str
):
    monkeypatch.delenv("GOALPORT_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("GOALPORT_DOWNLOAD_SECRET", raising=False)
    for round_ in range(8):  # the old writer let a racer read an empty file in ~1 round of 3
        folder = tmp_path / f"round-{round_}"
        folder.mkdir()
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER, str(n), function],
                cwd=folder,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(3)
        ]
        deadline = time.monotonic() + 60
        while len(list(folder.glob("ready-*"))) < len(racers):
            assert time.monotonic() < deadline, "the racing processes did not start"
            time.sleep(0.005)
        (folder / "go").touch()
        seen = {racer.communicate(timeout=60)[0].strip() for racer in racers}
        assert all(racer.returncode == 0 for racer in racers)
        stored = (folder / "var" / function.replace("_", "-")).read_bytes().strip()
        assert seen == {stored.hex()} and len(stored) >= 32
        assert list((folder / "var").glob(".tmp-*")) == []


def test_embedded_database_file_is_private(install: Path, monkeypatch):
    monkeypatch.delenv("GOALPORT_DATABASE_URL", raising=False)
    url = settings.database_url()
    database = install / "var" / "goalport.db"
    assert url.endswith(str(database)) and _mode(database) == 0o600


def _in_new_process(function: str, cwd: Path) -> str:
    """What settings.`function`() gives in a new Python process run in `cwd`, as hex."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from resources import settings; print(settings.{function}().hex())",
        ],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()
