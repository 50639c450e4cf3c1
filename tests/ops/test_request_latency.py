"""What the daemon path does to answer a request sooner: the request sensor, finding nothing
to claim, waits (GOALPORT_REQUEST_WAIT_SECONDS) for a request and claims it in the same
tick, on a real PostgreSQL database and a real Dagster instance; and the production
instance looks at its run queue every second."""

from __future__ import annotations

import tempfile
import threading
import time

import dagster as dg
import pytest

from assets.exports.claims import wait_for_pending_exports
from assets.exports.defs import export_request_sensor
from assets.exports.queue import request_export
from resources.storage import ObjectStorage
from synthetic.seed import seed_database


@pytest.fixture
def seeded(pg_url, database):
    seed_database(pg_url, 2, seed=4, heavy_every=0)
    return database


def request_later(database, user_id: str, delay: float) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: (time.sleep(delay), request_export(database.engine, user_id, "json"))
    )
    thread.start()
    return thread


def timed_tick(database, at_start=lambda: None) -> tuple[object, float]:
    """One evaluation of the request sensor and how long the evaluation alone took;
    `at_start` is called as it begins."""
    storage = ObjectStorage(url=tempfile.mkdtemp(prefix="goalport-latency-"))
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(
            instance=instance, resources={"database": database, "storage": storage}
        ) as context:
            started = time.monotonic()
            at_start()
            result = export_request_sensor(context)
            return result, time.monotonic() - started


def test_a_tick_with_an_empty_queue_waits_and_claims_a_request_made_meanwhile(seeded, monkeypatch):
    user_id = seeded.all_user_ids()[0]
    monkeypatch.setenv("GOALPORT_REQUEST_WAIT_SECONDS", "25")
    makers: list[threading.Thread] = []
    result, took = timed_tick(
        seeded, at_start=lambda: makers.append(request_later(seeded, user_id, 1.0))
    )
    makers[0].join()
    assert isinstance(result, dg.SensorResult), result
    [run_request] = result.run_requests
    assert run_request.run_config["ops"]["extracted_batch"]["config"]["job_ids"]
    # claimed when the request came (a second in), not when the 25 s wait ran out
    assert 0.9 <= took < 15, f"claimed {took:.1f} s after the tick began"


def test_without_a_wait_an_empty_tick_ends_at_once_and_a_wait_ends_by_its_timeout(
    seeded, monkeypatch
):
    result, took = timed_tick(seeded)
    assert isinstance(result, dg.SkipReason) and took < 5
    assert wait_for_pending_exports(seeded.engine, timeout=0.6, poll=0.1) is False

    monkeypatch.setenv("GOALPORT_REQUEST_WAIT_SECONDS", "1.5")
    result, took = timed_tick(seeded)
    assert isinstance(result, dg.SkipReason) and 1.5 <= took < 10


def test_a_request_already_waiting_is_seen_on_the_first_poll(seeded):
    request_export(seeded.engine, seeded.all_user_ids()[1], "json")
    naps: list[float] = []
    assert wait_for_pending_exports(seeded.engine, timeout=5, sleep=naps.append) is True
    assert naps == []


@pytest.mark.parametrize("raw", ["-1", "31", "soon"])
def test_a_wrong_wait_setting_is_refused_by_name(monkeypatch, raw):
    from resources import settings

    monkeypatch.setenv("GOALPORT_REQUEST_WAIT_SECONDS", raw)
    with pytest.raises(settings.SettingError, match="GOALPORT_REQUEST_WAIT_SECONDS"):
        settings.request_wait_seconds()
