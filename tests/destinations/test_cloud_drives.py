"""Dropbox, Google Drive and OneDrive filesystems (resources/destinations/cloud_drives.py)
against fake providers on loopback that follow the providers' documented HTTP APIs
(tests/destinations/fake_clouds.py): streamed, chunked uploads that appear only whole;
reads by range; listings over several pages; token refresh saved through save_secrets;
revoked access as a DestinationCredentialError that says to reconnect."""

from __future__ import annotations

import gc
import os

import pytest

from resources.destinations.cloud_drives import cloud_drive_filesystem
from resources.destinations.errors import DestinationCredentialError, DestinationError
from tests.destinations.fake_clouds import connected_secrets, iter_providers

PROVIDERS = list(iter_providers())
NAMES = {"dropbox": "Dropbox", "gdrive": "Google Drive", "onedrive": "OneDrive"}
# what users name things: accents, a symbol outside Latin-1, a quote, '#', '%', spaces
HOSTILE_NAME = "Zürich ✓ it's #1 (100%).age"
UPLOAD_PATHS = {
    "dropbox": lambda r: r.path.startswith("/content/2/files/upload"),
    "gdrive": lambda r: r.path.startswith("/upload/drive/v3/files") and "upload_id=" in r.path,
    "onedrive": lambda r: r.path.startswith("/upload-session/") and r.method == "PUT",
}


def _connect(fake, saved=None):
    saved = saved if saved is not None else []
    fs = cloud_drive_filesystem(
        f"{fake.provider}://goalport", connected_secrets(fake), saved.append
    )
    return fs, saved


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_large_file_streams_in_chunks_and_reads_back(provider, start_fake, chunked):
    fake = start_fake(provider)
    fs, saved = _connect(fake)
    data = os.urandom(2 * chunked + 12345)
    path = f"goalport/backups/{HOSTILE_NAME}"
    with fs.open(path, "wb") as f:
        for start in range(0, len(data), 300_000):  # written in pieces of a caller's size
            f.write(data[start : start + 300_000])
    assert fake.files() == {path: data}
    uploads = [r for r in fake.requests if UPLOAD_PATHS[provider](r)]
    assert len(uploads) == 3, "three chunks, each its own request"
    assert max(r.size for r in uploads) <= chunked
    if provider != "dropbox":  # the session URL authorises itself: no bearer token goes there
        assert not any("authorization" in r.headers for r in uploads)

    assert fs.cat_file(path) == data
    assert fs.cat_file(path, start=chunked - 5, end=chunked + 5) == data[chunked - 5 : chunked + 5]
    assert fs.info(path) == {"name": path, "size": len(data), "type": "file"}
    assert fs.ls("goalport/backups", detail=False) == [path]
    assert fs.info("goalport")["type"] == "directory"
    assert saved == [], "nothing to refresh"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_overwrite_listing_pages_empty_files_and_deletes(provider, start_fake):
    fake = start_fake(provider)
    fs, _ = _connect(fake)
    names = [f"goalport/u/{n}.age" for n in ("a", "b", "c", "d", "e")]
    for n, name in enumerate(names):
        fs.pipe_file(name, b"x" * n)  # the first one is empty
    assert fs.ls("goalport/u", detail=False) == names  # five entries over pages of two
    assert [e["size"] for e in fs.ls("goalport/u")] == [0, 1, 2, 3, 4]
    assert fs.cat_file(names[0]) == b""

    fs.pipe_file(names[1], b"replaced")
    assert fs.cat_file(names[1]) == b"replaced"
    assert len([p for p in fake.files() if p == names[1]]) == 1
    assert len(fs.ls("goalport/u")) == 5, "replaced in place, not a second file of that name"

    fs.rm_file(names[2])
    assert not fs.exists(names[2])
    with pytest.raises(FileNotFoundError, match=f"{NAMES[provider]}: {names[2]} does not exist"):
        fs.cat_file(names[2])
    fs.makedirs("goalport/empty/inner", exist_ok=True)
    assert fs.info("goalport/empty/inner")["type"] == "directory"
    fs.rm("goalport/u", recursive=True)
    assert not fs.exists("goalport/u")
    assert fake.files() == {}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_interrupted_upload_never_leaves_a_file(provider, start_fake, chunked):
    fake = start_fake(provider)
    fs, _ = _connect(fake)
    fs.pipe_file("goalport/keep.age", b"the previous backup")
    data = os.urandom(2 * chunked + 1)

    with pytest.raises(RuntimeError, match="the backup job died"):
        with fs.open("goalport/keep.age", "wb") as f:
            f.write(data)
            f.flush()  # chunks already sent (Dropbox, Drive) or spooled (OneDrive)
            raise RuntimeError("the backup job died")
    writer = fs.open("goalport/lost.age", "wb")
    writer.write(data)
    writer.flush()
    del writer  # a writer dropped unclosed is abandoned, never committed
    gc.collect()

    if provider != "onedrive":
        assert any(UPLOAD_PATHS[provider](r) for r in fake.requests), "chunks were sent"
    fake.fail_next_upload = True
    with pytest.raises(DestinationError, match="HTTP 500") as failed:
        with fs.open("goalport/user-1234/failed.age", "wb") as f:
            f.write(data)
    assert "user-1234" not in str(failed.value), "errors never name the path"
    assert fake.files() == {"goalport/keep.age": b"the previous backup"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_access_token_is_refreshed_and_saved(provider, start_fake):
    fake = start_fake(provider)
    fs, saved = _connect(fake)
    fs.pipe_file("goalport/a.age", b"one")
    old_refresh = next(iter(fake.oauth.refresh_tokens))
    fake.oauth.expire_access_tokens()  # the provider no longer takes the token we hold

    assert fs.cat_file("goalport/a.age") == b"one"
    assert len(saved) == 1
    assert saved[0]["access_token"] in fake.oauth.access_tokens
    assert int(saved[0]["expires_at"]) > 0
    if provider == "onedrive":  # Microsoft rotates refresh tokens: the new one is kept
        assert saved[0]["refresh_token"] != old_refresh
    else:
        assert saved[0]["refresh_token"] == old_refresh
    assert saved[0]["refresh_token"] in fake.oauth.refresh_tokens
    refused = [r for r in fake.requests if r.path.startswith("/oauth2/token")]
    assert len(refused) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_expired_token_is_refreshed_before_it_is_used(provider, start_fake):
    fake = start_fake(provider)
    secrets = connected_secrets(fake) | {"expires_at": "1000"}
    saved: list[dict[str, str]] = []
    fs = cloud_drive_filesystem(f"{provider}://x", secrets, saved.append)
    fs.pipe_file("x/a.age", b"one")
    assert len(saved) == 1
    assert fake.requests[0].path == "/oauth2/token", "refreshed first, not after a 401"
    assert fake.oauth.token_requests[0]["client_secret"] == fake.oauth.client_secret


@pytest.mark.parametrize("provider", PROVIDERS)
def test_revoked_access_fails_with_a_reason_to_reconnect(provider, start_fake):
    fake = start_fake(provider)
    fs, saved = _connect(fake)
    fs.pipe_file("goalport/a.age", b"one")
    fake.oauth.revoke_all()  # the user removed goalport at the provider
    with pytest.raises(DestinationCredentialError) as caught:
        fs.cat_file("goalport/a.age")
    message = str(caught.value)
    assert "invalid_grant" in message and f"connect {NAMES[provider]} again" in message
    assert "rt-" not in message and "at-" not in message, "no token in the message"
    assert saved == []
    with pytest.raises(DestinationCredentialError, match="revoked"):
        fs.pipe_file("goalport/b.age", b"two")  # a write too, before anything is sent
    assert fake.files() == {"goalport/a.age": b"one"}


def test_a_refused_client_is_a_credential_error(start_fake, monkeypatch):
    fake = start_fake("dropbox")
    fs, _ = _connect(fake)
    fake.oauth.expire_access_tokens()
    monkeypatch.setenv("GOALPORT_DROPBOX_CLIENT_SECRET", "not-the-secret")
    with pytest.raises(DestinationCredentialError, match="invalid_client"):
        fs.ls("goalport")


def test_not_connected_is_said_plainly(start_fake):
    with pytest.raises(DestinationCredentialError, match="Google Drive is not connected"):
        cloud_drive_filesystem("gdrive://backups", {}, lambda secrets: None)
    with pytest.raises(DestinationError, match="not a cloud drive"):
        cloud_drive_filesystem("box://backups", {"access_token": "x"}, lambda secrets: None)


def test_drive_queries_escape_quotes_and_backslashes(start_fake):
    fake = start_fake("gdrive")
    fs, _ = _connect(fake)
    tricky = "goalport/it's a \\ trap' or name != '.age"
    fs.pipe_file(tricky, b"data")
    fs.pipe_file("goalport/other.age", b"other")
    assert fs.cat_file(tricky) == b"data"
    assert not fs.exists("goalport/it's a \\ trap")
    assert sorted(fake.files()) == [
        "goalport/it's a \\ trap' or name != '.age",
        "goalport/other.age",
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_move_renames_in_place_and_replaces_the_target(provider, start_fake):
    """How a destination publishes a finished upload: a hidden temporary name moved into
    place, replacing what was there, in one rename (never a copy)."""
    fake = start_fake(provider)
    fs, _ = _connect(fake)
    fs.pipe_file("goalport/u/backup.age", b"old")
    fs.pipe_file("goalport/u/.tmp-1234", b"new and complete")
    uploads_before = sum(UPLOAD_PATHS[provider](r) for r in fake.requests)
    fs.mv("goalport/u/.tmp-1234", "goalport/u/backup.age")
    assert fake.files() == {"goalport/u/backup.age": b"new and complete"}
    assert sum(UPLOAD_PATHS[provider](r) for r in fake.requests) == uploads_before, "no copy"

    fs.mv("goalport/u/backup.age", f"goalport/elsewhere/{HOSTILE_NAME}")
    fs.mv("goalport/elsewhere", "goalport/renamed")  # a folder and what is in it
    assert fake.files() == {f"goalport/renamed/{HOSTILE_NAME}": b"new and complete"}
    assert fs.ls("goalport/renamed", detail=False) == [f"goalport/renamed/{HOSTILE_NAME}"]
    with pytest.raises(FileNotFoundError):
        fs.mv("goalport/u/nothing", "goalport/u/something")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_throttled_requests_wait_and_retry(provider, start_fake, monkeypatch):
    fake = start_fake(provider)
    fs, _ = _connect(fake)
    fake.throttle = 2  # "slow down, retry after 0.05 s", twice
    fs.pipe_file("goalport/a.age", b"one")
    assert fake.files() == {"goalport/a.age": b"one"}
    monkeypatch.setenv("GOALPORT_CLOUD_DRIVE_RETRIES", "1")
    fake.throttle = 2
    with pytest.raises(DestinationError, match=f"{NAMES[provider]} is busy .*after 1 retries"):
        fs.cat_file("goalport/a.age")


def test_dropbox_lists_a_folder_as_the_caller_spells_it(start_fake):
    """Dropbox paths ignore case: a user's existing "Goalport" folder is the "goalport" the
    destination names, and its files list under the name that was asked for."""
    fake = start_fake("dropbox")
    fs, _ = _connect(fake)
    fs.makedirs("Goalport")
    fs.pipe_file("goalport/a.age", b"one")
    assert fs.ls("goalport", detail=False) == ["goalport/a.age"]
    assert fs.find("goalport") == ["goalport/a.age"]
    assert fs.info("goalport/A.age")["name"] == "goalport/A.age"
    assert fake.files() == {"Goalport/a.age": b"one"}
