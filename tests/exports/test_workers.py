"""The one worker-pool set-up that exports, backups and GDPR bundles fan out through: how many
workers, results in task order (or as they finish), tasks taken only as workers need them,
one task run in process with no pool, and a worker's error raised with its message."""

import datetime as dt
import multiprocessing
import os
import threading
import time

import pytest

from assets.exports import workers as w
from assets.exports.batches import render_batch
from assets.exports.workers import IN_FLIGHT_PER_WORKER, WorkerPool, share_per_task, worker_count
from resources import schema


def _pid_and_square(n: int) -> tuple[int, int]:
    time.sleep(0.05 if n % 3 == 0 else 0.0)  # some tasks finish out of order
    return os.getpid(), n * n


# Inherited by the forked workers: they wait for it before they compute.
_GATE = multiprocessing.get_context("fork").Event()


def _square_after_the_gate(n: int) -> int:
    _GATE.wait()
    return n * n


def _square_after_the_gate_if_first(n: int) -> int:
    if n == 0:
        _GATE.wait()
    return n * n


def _fail_on_three(n: int) -> int:
    if n == 3:
        raise ValueError(f"task {n} cannot be done: the reason, for whoever reads the log")
    return n


def test_worker_count_is_the_explicit_number_else_the_cpus_this_process_may_use(monkeypatch):
    assert worker_count(3) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert worker_count() == 1  # a container pinned to one core of many
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert worker_count() == 6
    with pytest.raises(ValueError, match="at least 1, not 0"):
        worker_count(0)


def test_share_per_task_gives_each_worker_several_tasks():
    assert share_per_task(1000, 2) == 125
    assert share_per_task(1001, 2) == 126
    assert share_per_task(3, 2) == 1


def test_workers_are_forked_where_the_platform_can():
    assert w.start_context().get_start_method() == "fork"


def test_results_come_in_task_order_from_worker_processes():
    with WorkerPool(2) as pool:
        results = list(pool.map(_pid_and_square, range(12)))
    assert [task for task, _ in results] == list(range(12))
    assert [square for _, (_, square) in results] == [n * n for n in range(12)]
    assert os.getpid() not in {pid for _, (pid, _) in results}


def test_unordered_results_come_as_they_finish_and_miss_none():
    with WorkerPool(2) as pool:
        results = dict(pool.map(_pid_and_square, range(12), ordered=False))
    assert {n: square for n, (_, square) in results.items()} == {n: n * n for n in range(12)}


def test_tasks_are_taken_only_as_workers_need_them():
    taken, seen = [], []

    def tasks():
        for n in range(40):
            taken.append(n)
            yield n

    def open_the_gate():
        time.sleep(0.5)
        seen.append(len(taken))  # every task handed out is still waiting at the gate
        _GATE.set()

    _GATE.clear()
    opener = threading.Thread(target=open_the_gate)
    with WorkerPool(2) as pool:
        opener.start()
        assert [n for n, _ in pool.map(_square_after_the_gate, tasks())] == list(range(40))
    opener.join()
    assert seen == [IN_FLIGHT_PER_WORKER * 2]


def test_a_slow_first_task_holds_back_its_results_not_the_workers():
    taken, seen = [], []

    def tasks():
        for n in range(40):
            taken.append(n)
            yield n

    def open_the_gate():
        time.sleep(1.0)
        seen.append(len(taken))
        _GATE.set()

    _GATE.clear()
    opener = threading.Thread(target=open_the_gate)
    with WorkerPool(2) as pool:
        opener.start()
        results = list(pool.map(_square_after_the_gate_if_first, tasks()))
    opener.join()
    assert results == [(n, n * n) for n in range(40)]
    assert seen[0] > IN_FLIGHT_PER_WORKER * 2  # the other worker went on while task 0 waited


def test_one_task_or_one_worker_runs_in_process_without_sending(monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("no process pool should start")

    monkeypatch.setattr(w, "ProcessPoolExecutor", no_pool)
    refuse = lambda task: pytest.fail("nothing is sent to a worker")  # noqa: E731
    with WorkerPool(4) as pool:
        assert list(pool.map(_pid_and_square, [5], send=refuse)) == [(5, (os.getpid(), 25))]
    with WorkerPool(1) as pool:
        here = lambda n: ("here", n)  # noqa: E731
        assert list(pool.map(_pid_and_square, range(3), in_process=here)) == [
            (n, ("here", n)) for n in range(3)
        ]


def test_a_workers_error_is_raised_with_its_message():
    for ordered in (True, False):
        with WorkerPool(2) as pool, pytest.raises(ValueError, match="task 3 cannot be done"):
            list(pool.map(_fail_on_three, range(8), ordered=ordered))


def test_a_single_user_batch_renders_in_process(monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("no process pool should start")

    monkeypatch.setattr(w, "ProcessPoolExecutor", no_pool)
    rendered = list(
        render_batch(
            {"u1": schema.empty_app_tables()},
            ["json"],
            exported_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            filters=None,
        )
    )
    assert [user_id for user_id, _ in rendered] == ["u1"]
