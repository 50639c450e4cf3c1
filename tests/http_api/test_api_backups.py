"""Backup settings over HTTP, against a real uvicorn: a round trip of the schedule
(frequency, time zone, modules, retention), refused values with the field at fault, no
way to set a destination (an operator's setting), and each user's own settings only."""

from __future__ import annotations

from assets.backups.config import get_backup_config


def test_backup_config_round_trip(api, user_ids, make_token, database):
    alice = user_ids[0]
    with api.client(make_token(alice, scopes=("backups",))) as client:
        defaults = client.get("/api/v1/backups/config").json()
        assert defaults["configured"] is False and defaults["frequency"] == "daily"
        changed = client.put(
            "/api/v1/backups/config",
            json={
                "frequency": "weekly",
                "timezone": "Europe/Berlin",
                "include": ["fitness", "bible"],
                "retention": {"keep_last": 3},
                "encrypt": False,
            },
        )
        assert changed.status_code == 200, changed.text
        read_back = client.get("/api/v1/backups/config").json()
        assert read_back == changed.json()
        assert read_back["configured"] is True
        assert (read_back["frequency"], read_back["timezone"]) == ("weekly", "Europe/Berlin")
        assert read_back["include"] == ["fitness", "bible"]
        assert read_back["retention"] == {"keep_last": 3}
        assert "destinationUrl" not in read_back

        # A PUT changes only what it names.
        client.put("/api/v1/backups/config", json={"enabled": False})
        stored = get_backup_config(database.engine, alice)
        assert stored is not None and not stored.enabled and stored.frequency == "weekly"

        bad_zone = client.put("/api/v1/backups/config", json={"timezone": "Mars/Olympus"})
        assert bad_zone.status_code == 422 and "Mars/Olympus" in bad_zone.json()["error"]["message"]
        both = client.put(
            "/api/v1/backups/config", json={"retention": {"keep_last": 2, "daily": 3}}
        )
        assert both.status_code == 422
        elsewhere = client.put(
            "/api/v1/backups/config", json={"destinationUrl": "s3://someone-else/x"}
        )
        assert elsewhere.status_code == 422
        assert elsewhere.json()["error"]["field"] == "destinationUrl"
        assert get_backup_config(database.engine, alice).destination_url is None
        assert client.get("/api/v1/backups").json() == {"items": [], "requests": []}

    with api.client(make_token(user_ids[1], scopes=("backups",))) as client:
        assert client.get("/api/v1/backups/config").json()["configured"] is False
    with api.client(make_token(alice, scopes=("exports",))) as client:
        assert client.put("/api/v1/backups/config", json={"enabled": True}).status_code == 403
