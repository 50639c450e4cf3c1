"""`goalport portal link USER`: the last line is a sign-in link (absolute on
GOALPORT_PUBLIC_URL) that the live server accepts once; an unknown user is a clear error."""

from __future__ import annotations

import httpx
from click.testing import CliRunner

from pipelines.cli.main import main
from portal.sessions import COOKIE_NAME
from tests.http_api.conftest import DOWNLOAD_SECRET


def test_portal_link_signs_in_once(api, user_ids, pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("GOALPORT_DOWNLOAD_SECRET", DOWNLOAD_SECRET.decode())
    monkeypatch.setenv("GOALPORT_PUBLIC_URL", "https://goals.example/")
    result = CliRunner().invoke(main, ["portal", "link", user_ids[0]])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[-1]
    assert link.startswith("https://goals.example/portal/sign-in/")
    with httpx.Client(base_url=api.base_url) as client:
        path = link.removeprefix("https://goals.example")
        first = client.get(path)
        assert first.status_code == 303 and COOKIE_NAME in first.headers["set-cookie"]
        assert client.get("/portal").status_code == 200
        assert client.get(path).status_code == 410  # used

    unknown = CliRunner().invoke(main, ["portal", "link", "no-such-user"])
    assert unknown.exit_code != 0 and "no user with that id" in unknown.output
