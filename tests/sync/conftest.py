"""One real uvicorn per test module over one PostgreSQL database of the module (three
seeded users), and simulated devices that keep their own copy of a user's rows and sync it
through the HTTP API (`SimDevice`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from api.app import create_app
from api.config import ApiConfig
from api.rate_limit import RateLimit
from api.tokens import create_token
from assets.sync.changelog import read_rows
from assets.sync.rows import SYNC_TABLES, encode_row
from resources import schema
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from synthetic.seed import seed_database
from tests.conftest import _create_database, _drop_database
from tests.http_api.conftest import serve_in_thread, stop_server

SERVICE_TOKEN = "svc-" + "5" * 60


@dataclass
class SyncWorld:
    database: AppDatabase
    base_url: str
    user_ids: list[str]

    def token(self, user_id: str, scopes=("sync",)) -> str:
        return create_token(self.database.engine, user_id, scopes)[1]

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def server_rows(self, user_id: str) -> dict[tuple[str, str], dict]:
        """Every row of the user, as the API writes rows."""
        found = {}
        with self.database.engine.connect() as conn:
            for name in SYNC_TABLES:
                table = schema.metadata.tables[name]
                owner = table.c[schema.owner_column(name)]
                ids = list(conn.scalars(sa.select(table.c.id).where(owner == user_id)))
                for row_id, row in read_rows(conn, name, ids, user_id).items():
                    found[(name, row_id)] = encode_row(row)
        return found


@pytest.fixture(scope="module")
def sync_world(pg_template: str) -> Iterator[SyncWorld]:
    name = f"gp_sync_{uuid.uuid4().hex[:10]}"
    url = _create_database(name, template=pg_template)
    seed_database(url, 3, seed=18, heavy_every=0)
    database = AppDatabase(url=url)
    config = ApiConfig(
        database=database,
        storage=ObjectStorage(url=f"/tmp/{name}"),
        download_secret=b"sync-test-download-secret-0123456789",
        service_token=SERVICE_TOKEN,
        token_limit=RateLimit(100_000, 60),
        service_limit=RateLimit(100_000, 60),
    )
    server, thread, port = serve_in_thread(create_app(config))
    user_ids = sorted(database.all_user_ids())
    try:
        yield SyncWorld(database, f"http://127.0.0.1:{port}", user_ids)
    finally:
        stop_server(server, thread)
        database.engine.dispose()
        _drop_database(name)


class SimDevice:
    """A device's own copy of a user's rows: local edits queued as changes, pushed, pulled."""

    def __init__(self, client: httpx.Client, device_id: str):
        self.client, self.device_id = client, device_id
        self.rows: dict[tuple[str, str], dict] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.cursor: str | None = None
        self.pending: list[dict] = []
        self.bases: dict[tuple[str, str], dict] = {}
        self.reported: list[dict] = []  # every result that was not a plain "applied"
        self.pushed: list[tuple[dict, dict]] = []  # (change, its result)

    # local edits (`bases`: each pending row as the device last got it from the server)
    def edit(self, table: str, row_id: str, **fields) -> None:
        key = (table, row_id)
        self.bases.setdefault(key, dict(self.rows[key]))
        self.rows[key] = {**self.rows[key], **fields}
        self._queue(table, row_id, "upsert", fields)

    def create(self, table: str, row: dict) -> None:
        self.bases.setdefault((table, row["id"]), {})
        self.rows[(table, row["id"])] = dict(row)
        self._queue(table, row["id"], "upsert", row, base=None)

    def delete(self, table: str, row_id: str) -> None:
        self.bases.setdefault((table, row_id), dict(self.rows.get((table, row_id), {})))
        self.rows.pop((table, row_id), None)
        self._queue(table, row_id, "delete", {})

    def _queue(self, table, row_id, op, fields, base: int | None | str = "seen") -> None:
        """One pending change per row, as a device keeps them: later edits fold into it."""
        for i, queued in enumerate(self.pending):
            if (queued["table"], queued["id"]) != (table, row_id):
                continue
            if op == "delete" and queued["baseVersion"] is None:
                del self.pending[i]  # made and deleted before the server saw it
            elif op == "delete":
                queued.update(op="delete", fields={})
            else:
                queued["fields"] = {**queued["fields"], **fields}
            return
        self.pending.append(
            {
                "changeId": uuid.uuid4().hex,
                "table": table,
                "id": row_id,
                "op": op,
                "baseVersion": self.versions.get((table, row_id)) if base == "seen" else base,
                "fields": dict(fields),
            }
        )

    # sync
    def push(self) -> dict:
        body = {"deviceId": self.device_id, "changes": self.pending}
        response = self.client.post("/api/v1/sync/push", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        for change, result in zip(self.pending, answer["results"], strict=True):
            self.pushed.append((change, result))
            key = (change["table"], change["id"])
            if result["status"] != "applied":
                self.reported.append(result)
            if result.get("row") is not None:
                self.rows[key], self.versions[key] = result["row"], result["version"]
            elif change["op"] == "delete" or "row" in result:  # gone, or never made
                self.rows.pop(key, None)
                self.versions.pop(key, None)
        self.pending, self.bases = [], {}
        self.cursor = answer["cursor"] if self.cursor is not None else None
        return answer

    def pull(self, limit: int = 500) -> int:
        pages = 0
        while True:
            params = {"limit": limit, "deviceId": self.device_id}
            if self.cursor:
                params["since"] = self.cursor
            response = self.client.get("/api/v1/sync/changes", params=params)
            if response.status_code == 410:  # past the horizon: start again
                self.rows, self.versions, self.cursor = {}, {}, None
                continue
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            for change in body["changes"]:
                key = (change["table"], change["id"])
                if change["op"] == "delete":
                    self.rows.pop(key, None)
                    self.versions.pop(key, None)
                else:
                    self.rows[key], self.versions[key] = change["row"], change["version"]
            self.cursor = body["cursor"]
            if not body["hasMore"]:
                return pages

    def sync(self) -> None:
        if self.pending:
            self.push()
        self.pull()


def quality_failures(database: AppDatabase, user_id: str) -> list[str]:
    """`table.rule` for every quality rule (assets.quality.rules) a row of the user breaks."""
    from assets.imports.staging import failing_rows
    from assets.quality.rules import quality_rules

    tables = database.extract([user_id]).tables
    found = []
    for rule in quality_rules():
        if tables[rule.table].num_rows == 0:
            continue
        values = rule.derive(tables) if rule.derive is not None else tables[rule.table][rule.column]
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        failing = failing_rows(rule, values)
        if failing is not None and pc.any(failing).as_py():
            found.append(f"{rule.table}.{rule.name}")
    return found


def new_user(database) -> str:
    user_id = "u" + uuid.uuid4().hex[:20]
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with database.engine.begin() as conn:
        conn.execute(
            schema.user.insert().values(
                id=user_id, email=f"{user_id}@example.org", createdAt=now, updatedAt=now
            )
        )
        for n in range(3):
            conn.execute(
                schema.goal.insert().values(
                    id=f"{user_id}-g{n}",
                    userId=user_id,
                    parentGoalId=f"{user_id}-g0" if n else None,
                    title=f"Goal {n}",
                    priority=3,
                    isCompleted=False,
                    createdAt=now,
                    updatedAt=now,
                )
            )
    return user_id
