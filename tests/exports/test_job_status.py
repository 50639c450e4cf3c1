"""The `DataExportJob` status machine, on PostgreSQL and SQLite: the statuses are the strings
the table has always held, each writer moves only rows in its source statuses and says which
it moved, and a row in any other status is left exactly as it was."""

import pytest
import sqlalchemy as sa

from assets.exports import job_status
from assets.exports.job_status import ExportStatus, job_table
from resources import schema
from resources.audit import utc_now
from resources.database import AppDatabase
from synthetic.seed import seed_database


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request):
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    seed_database(url, 1, seed=5, heavy_every=0)
    database = AppDatabase(url=url)
    yield database.engine
    database.engine.dispose()


def insert(engine, status: ExportStatus, job_id: str, batch_id: str | None = None) -> None:
    with engine.begin() as conn:
        user_id = conn.execute(sa.select(schema.user.c.id).limit(1)).scalar_one()
        job_status.insert_jobs(
            conn,
            [
                {
                    "id": job_id,
                    "userId": user_id,
                    "exportType": "full",
                    "format": "json",
                    "batchId": batch_id,
                    "recordsProcessed": 0,
                    "attempts": 0,
                    "createdAt": utc_now(),
                }
            ],
            status,
        )


def row(engine, job_id: str) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(job_table).where(job_table.c.id == job_id)).mappings().one()
        )


def test_the_statuses_are_the_strings_the_table_holds():
    assert [s.value for s in ExportStatus] == [
        "pending",
        "processing",
        "completed",
        "failed",
        "expired",
    ]
    assert f"{ExportStatus.FAILED}" == "failed" and ExportStatus.FAILED == "failed"


def test_allowed_moves_are_the_transitions():
    moves = job_status.allowed_moves()
    assert moves[ExportStatus.PENDING] == {ExportStatus.PROCESSING}
    assert moves[ExportStatus.PROCESSING] == {
        ExportStatus.COMPLETED,
        ExportStatus.FAILED,
        ExportStatus.PENDING,
    }
    assert moves[ExportStatus.COMPLETED] == {ExportStatus.EXPIRED}
    assert moves[ExportStatus.FAILED] == {ExportStatus.PENDING, ExportStatus.PROCESSING}
    assert moves[ExportStatus.EXPIRED] == {ExportStatus.PENDING}


def test_a_new_row_cannot_start_failed_or_expired(engine):
    with engine.begin() as conn:
        for status in (ExportStatus.FAILED, ExportStatus.EXPIRED):
            with pytest.raises(ValueError, match="cannot start"):
                job_status.insert_jobs(conn, [{"id": "x"}], status)


def test_a_row_goes_from_request_to_expiry_and_back(engine):
    insert(engine, ExportStatus.PENDING, "exp_a")
    now = utc_now()
    with engine.begin() as conn:
        assert job_status.claim_jobs(conn, ["exp_a"], batch_id="lb_1", now=now) == ["exp_a"]
    assert row(engine, "exp_a")["status"] == "processing"
    assert row(engine, "exp_a")["attempts"] == 1
    with engine.begin() as conn:
        done = job_status.complete_job(
            conn,
            "exp_a",
            batch_id="lb_1",
            run_id="run-1",
            records=3,
            file_url="file:///x.json",
            file_size_bytes=10,
            checksum="sha256:00",
            completed_at=now,
            expires_at=now,
        )
        assert done == ["exp_a"]
        assert job_status.expire_jobs(conn, file_urls=["file:///x.json"]) == ["exp_a"]
        assert job_status.retry_jobs(conn, ["exp_a"]) == ["exp_a"]
    after = row(engine, "exp_a")
    assert after["status"] == "pending"
    assert after["fileUrl"] is None and after["batchId"] is None and after["attempts"] == 1


def test_a_writer_leaves_rows_outside_its_sources_alone(engine):
    insert(engine, ExportStatus.PENDING, "exp_p")
    insert(engine, ExportStatus.COMPLETED, "exp_c", batch_id="lb_1")
    before = {job_id: row(engine, job_id) for job_id in ("exp_p", "exp_c")}
    with engine.begin() as conn:
        assert job_status.fail_jobs(conn, ["exp_p", "exp_c"], "no") == []
        assert job_status.retry_jobs(conn, ["exp_p", "exp_c"]) == []
        assert job_status.expire_jobs(conn, job_ids=["exp_p"]) == []
        assert job_status.reclaim_failed_jobs(conn, ["exp_c"], batch_id="lb_1", run_id=None) == []
        assert job_status.claim_jobs(conn, ["exp_c"], batch_id="lb_2", now=utc_now()) == []
    assert {job_id: row(engine, job_id) for job_id in before} == before


def test_failing_is_held_by_the_batch_and_keeps_the_run_that_has_it(engine):
    insert(engine, ExportStatus.PROCESSING, "exp_f", batch_id="lb_1")
    with engine.begin() as conn:
        assert job_status.fail_jobs(conn, ["exp_f"], "why", batch_id="lb_2") == []
        conn.execute(job_table.update().where(job_table.c.id == "exp_f").values(runId="run-1"))
        assert job_status.fail_jobs(conn, ["exp_f"], "x" * 5000, run_id="run-2") == ["exp_f"]
    failed = row(engine, "exp_f")
    assert failed["status"] == "failed"
    assert failed["runId"] == "run-1"
    assert len(failed["errorMessage"]) == job_status.MAX_ERROR_MESSAGE
    with engine.begin() as conn:
        assert (
            job_status.reclaim_failed_jobs(conn, ["exp_f"], batch_id="lb_1", run_id="run-1") == []
        )
        assert job_status.reclaim_failed_jobs(conn, ["exp_f"], batch_id="lb_1", run_id="run-2") == [
            "exp_f"
        ]
    assert row(engine, "exp_f")["status"] == "processing"
