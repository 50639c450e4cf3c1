"""Worker processes for rendering: how many, how they start, and how tasks reach them.

Exports and backups (through `assets.exports.batches`) and GDPR bundles
(`assets.gdpr.bulk`) fan out the same way, so it is written here once: rendering, not
extraction, sets the time of big exports, and it is CPU-bound Python, so it runs in
processes. A pool starts on first use; a single task, or a single worker, runs in the
calling process and starts none.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from resources import settings

CGROUP_ROOT = "/sys/fs/cgroup"
T = TypeVar("T")
R = TypeVar("R")

# Tasks to cut a run into per worker: several, so that tasks of unequal cost even out and
# every worker stays busy to the end; not more, so that per-task costs stay shared.
TASKS_PER_WORKER = 4
# Tasks handed to the pool and not yet collected, per worker: one running, one queued.
IN_FLIGHT_PER_WORKER = 2


def worker_count(requested: int | None = None, *, runs_sharing: int | None = None) -> int:
    """`requested`, else this process's share of the CPUs it may use: `usable_cpus()`
    divided by the runs that share them (GOALPORT_RUNS_SHARING_CPUS: 1 where every run has a
    pod of its own, the instance's concurrent runs where they share one host)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"workers must be at least 1, not {requested}")
        return requested
    sharing = runs_sharing if runs_sharing is not None else settings.runs_sharing_cpus()
    return max(1, usable_cpus() // max(1, sharing))


def usable_cpus(cgroup_root: str | None = None) -> int:
    """The CPUs this process may really use: the CPUs it may run on (`os.sched_getaffinity`
    honours taskset and cpusets; `os.cpu_count()` counts the host's), capped by the
    container's CPU quota, which neither of them sees (a pod limited to 2 CPUs on a 64-core
    node counts 64 there)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(cgroup_root: str | None = None) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (quota / period), or None when there
    is none: cgroup v2's `cpu.max` ("max 100000" means none), else cgroup v1's
    `cpu.cfs_quota_us` (-1 means none) and `cpu.cfs_period_us`."""
    root = Path(cgroup_root or CGROUP_ROOT)
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            return _ratio(parts[0], parts[1])
        return None
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        quota, period = _read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return _ratio(quota, period) if not quota.startswith("-") else None
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        value = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def share_per_task(total: int, workers: int) -> int:
    """How much of `total` (users, rows) one task carries so that each of `workers` gets
    about TASKS_PER_WORKER tasks (rounded up; callers clamp it to their own bounds)."""
    return -(-total // (max(1, workers) * TASKS_PER_WORKER))


def start_context() -> multiprocessing.context.BaseContext:
    # fork where there is one: a worker starts at once with what the parent imported (a
    # spawned interpreter imports pyarrow, SQLAlchemy and ADBC again: seconds per worker)
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


class WorkerPool:
    """Up to `workers` processes (`worker_count`), started on first use and reused until
    the pool is closed. Use as a context manager."""

    def __init__(self, workers: int | None = None):
        self.workers = worker_count(workers)
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop the processes: waits for running tasks, drops the queued ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _started(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=start_context()
            )
        return self._executor

    def map(
        self,
        work: Callable[[Any], R],
        tasks: Iterable[T],
        *,
        send: Callable[[T], Any] | None = None,
        in_process: Callable[[T], R] | None = None,
        ordered: bool = True,
    ) -> Iterator[tuple[T, R]]:
        """(task, result) for every task.

        In a worker, the result is `work(send(task))`: `work` must be picklable (a module's
        function, or a `functools.partial` of one), `send` makes a task cheap to pickle.
        Tasks are taken from `tasks` only as workers need them (IN_FLIGHT_PER_WORKER each
        running or queued), so they may be made lazily and memory stays flat. Results come
        in task order (those that finish behind a slower one wait here: no worker idles for
        the order), or with `ordered=False` as they finish. With one worker, or fewer than
        two tasks, `(in_process or work)(task)` runs here, one task after another, and no
        process is started. A task's error is raised here, with its message (and the
        worker's traceback as its cause); no task is handed out after it.
        """
        tasks = iter(tasks)
        first = list(itertools.islice(tasks, 2))
        if self.workers <= 1 or len(first) < 2:
            here = in_process or work
            for task in itertools.chain(first, tasks):
                yield task, here(task)
            return
        yield from self._in_workers(work, itertools.chain(first, tasks), send, ordered)

    def _in_workers(
        self,
        work: Callable[[Any], R],
        tasks: Iterator[T],
        send: Callable[[T], Any] | None,
        ordered: bool,
    ) -> Iterator[tuple[T, R]]:
        executor = self._started()
        pending: dict[Future, T] = {}  # handed out, not yet yielded, in hand-out order

        def hand_out() -> None:
            if any(f.done() and f.exception() for f in pending):
                return  # the run ends at that error: start nothing more
            running = sum(not f.done() for f in pending)
            for task in itertools.islice(tasks, IN_FLIGHT_PER_WORKER * self.workers - running):
                pending[executor.submit(work, send(task) if send else task)] = task

        hand_out()
        while pending:
            if ordered:
                ready = list(itertools.takewhile(Future.done, pending))
            else:
                ready = [f for f in pending if f.done()]
            if not ready:
                wait([f for f in pending if not f.done()], return_when=FIRST_COMPLETED)
                hand_out()
                continue
            collected = [(pending.pop(future), future) for future in ready]
            hand_out()  # before the caller works on the results: keep every worker busy
            for task, future in collected:
                yield task, future.result()
