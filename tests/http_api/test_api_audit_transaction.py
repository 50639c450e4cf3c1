"""A change made through the API and its audit row share one transaction, against a real
uvicorn and PostgreSQL: when the audit row cannot be written the change is not kept, when the
change cannot be written no audit row is kept, and a change that commits has exactly one.

The failures are real ones: a PostgreSQL trigger refuses the INSERT of the audit row (or of
the changed row) inside the request's transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from resources import schema

audit = schema.data_audit_log


@dataclass(frozen=True)
class Change:
    scope: str
    method: str
    path: str
    body: dict | None
    operation: str  # the API's audit operation
    table: sa.Table  # where the change lands
    owner: str  # its column naming the user

    def rows(self, engine: sa.Engine, user_id: str) -> int:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).where(self.table.c[self.owner] == user_id)
            ).scalar_one()


CHANGES = [
    Change(
        "exports",
        "POST",
        "/api/v1/data/export",
        {"exportType": "full", "format": "json"},
        "export-request",
        schema.data_export_job,
        "userId",
    ),
    Change(
        "backups",
        "PUT",
        "/api/v1/backups/config",
        {"enabled": True, "frequency": "weekly"},
        "backup-config-change",
        schema.backup_config,
        "userId",
    ),
    Change(
        "gdpr",
        "POST",
        "/api/v1/gdpr/erasure",
        None,
        "gdpr-erasure-request",
        schema.erasure_request,
        "userId",
    ),
    Change(
        "templates",
        "POST",
        "/api/v1/templates",
        {"goalIds": ["atx_goal"], "name": "Morning routine"},
        "template-create",
        schema.goal_template,
        "authorId",
    ),
]


def _refuse_inserts(engine: sa.Engine, table: str, operation: str | None = None) -> None:
    """A trigger that fails every INSERT into `table` (of audit rows: of `operation` only)."""
    condition = f"NEW.operation = '{operation}'" if operation else "TRUE"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            sa.text(
                f'CREATE TRIGGER refuse BEFORE INSERT ON "{table}" '
                "FOR EACH ROW EXECUTE FUNCTION refuse_insert()"
            )
        )


def _allow_inserts(engine: sa.Engine, table: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP TRIGGER refuse ON "{table}"'))


def _audit_rows(engine: sa.Engine, user_id: str, operation: str) -> list[dict]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                sa.select(audit).where(audit.c.userId == user_id, audit.c.operation == operation)
            ).mappings()
        ]


def _goal(engine: sa.Engine, user_id: str) -> None:
    now = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            schema.goal.insert().values(
                id="atx_goal",
                userId=user_id,
                title="Stretch daily",
                priority=2,
                isCompleted=False,
                createdAt=now,
                updatedAt=now,
            )
        )


@pytest.mark.parametrize("change", CHANGES, ids=[c.operation for c in CHANGES])
def test_change_and_its_audit_row_commit_together_or_not_at_all(api, user_ids, make_token, change):
    engine = api.config.database.engine
    alice = user_ids[0]
    _goal(engine, alice)
    before = change.rows(engine, alice)
    with api.client(make_token(alice, scopes=(change.scope,))) as client:
        # The audit row is refused: the change goes with it.
        _refuse_inserts(engine, audit.name, change.operation)
        refused = client.request(change.method, change.path, json=change.body)
        assert refused.status_code == 500, refused.text
        assert change.rows(engine, alice) == before
        assert _audit_rows(engine, alice, change.operation) == []
        _allow_inserts(engine, audit.name)

        # The change is refused: no audit row says it happened.
        _refuse_inserts(engine, change.table.name)
        refused = client.request(change.method, change.path, json=change.body)
        assert refused.status_code == 500, refused.text
        assert _audit_rows(engine, alice, change.operation) == []
        _allow_inserts(engine, change.table.name)

        done = client.request(change.method, change.path, json=change.body)
        assert done.status_code < 300, done.text
    assert change.rows(engine, alice) == before + 1
    rows = _audit_rows(engine, alice, change.operation)
    assert len(rows) == 1
    assert rows[0]["ipAddress"] == "127.0.0.1"
    assert rows[0]["actor"].startswith("api-token:")


def test_a_read_has_one_audit_row_per_call(api, user_ids, make_token):
    engine = api.config.database.engine
    alice = user_ids[0]
    with api.client(make_token(alice, scopes=("backups", "exports"))) as client:
        for _ in range(3):
            assert client.get("/api/v1/backups/config").status_code == 200
        job = client.post("/api/v1/data/export", json=CHANGES[0].body).json()["jobId"]
        assert client.get("/api/v1/data/export", params={"jobId": job}).status_code == 200
        assert client.get("/api/v1/data/export", params={"jobId": "exp_nope"}).status_code == 404
    assert len(_audit_rows(engine, alice, "backup-config-read")) == 3
    statuses = _audit_rows(engine, alice, "export-status")
    assert [r["details"] for r in statuses] == [f'{{"jobId": "{job}"}}']
