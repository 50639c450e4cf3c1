"""A Dagster run launcher whose run workers start warm: forked from a process that has
already imported dagster and the code location.

Dagster's DefaultRunLauncher asks the code server to start each run, and the code server
starts it with multiprocessing's `spawn`: a new interpreter that imports dagster and the
whole code location again (3 s of CPU on an idle machine, 7-10 s on a busy one) before the
run's first step, for a request whose real work is well under a second. This launcher keeps
a `forkserver` beside the daemon that imports those modules once (`preload`), and each run
is a fork of it: a run process is ready in milliseconds, with nothing shared with other runs
(a fork, not a thread: a crash or OOM kill takes down one run).

The run worker is the same code as `dagster api execute_run`: it reports "Started process
for run", executes the run through Dagster's own run execution, and writes every event to
the instance. Its pid and start time are tagged on the run (`goalport/worker`), so that run
monitoring (`check_run_worker_health`) sees a worker that died, even after a daemon restart
(the default launcher cannot: a killed worker stays STARTED until its claim goes stale),
and termination signals exactly that process.

For one host (`make up`, compose): the runs share the daemon's host and environment, and
run the code the daemon loaded, so a deploy restarts the daemon with the code server. On
Kubernetes the K8sRunLauncher starts a pod per run instead (deploy/helm/values.yaml).
Configured in deploy/dagster.production.yaml:

    run_launcher:
      module: pipelines.warm_launcher
      class: WarmRunLauncher
      config: {preload: [pipelines.definitions]}
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._cli.api import _execute_run_command_body
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._serdes import (
    ConfigurableClass,
    ConfigurableClassData,
    deserialize_value,
    serialize_value,
)

WORKER_TAG = "goalport/worker"
DEFAULT_PRELOAD = ("pipelines.definitions",)


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a process forked from a warm forkserver (see the module's
    docstring); supports run monitoring's worker health checks."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        preload: Sequence[str] = DEFAULT_PRELOAD,
    ):
        self._inst_data = inst_data
        self._preload = list(preload)
        self._context: Any = None
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {
            "preload": dg.Field(
                [str],
                is_required=False,
                default_value=list(DEFAULT_PRELOAD),
                description="Modules the forkserver imports once, before any run.",
            )
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WarmRunLauncher:
        return cls(inst_data=inst_data, preload=config_value.get("preload", DEFAULT_PRELOAD))

    def _forkserver(self):
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            # this module too: the forked worker runs `run_worker` from it
            context.set_forkserver_preload([*self._preload, __name__])
            self._context = context
        return self._context

    def warm_up(self) -> None:
        """Start the forkserver now (it preloads the code), instead of at the first run."""
        from multiprocessing import forkserver

        self._forkserver()
        forkserver.ensure_running()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        process = self._forkserver().Process(
            target=run_worker,
            args=(run.run_id, serialize_value(self._instance.get_ref())),
            name=f"dagster-run-{run.run_id}",
        )
        process.start()
        assert process.pid is not None
        # a worker that ended already has no start time to read: "exited" matches no process
        identity = worker_identity(process.pid) or f"{process.pid}:exited"
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: identity})
        multiprocessing.active_children()  # forget the handles of runs that ended

    def _worker_pid(self, run: dg.DagsterRun) -> int | None:
        """The pid of the run's worker if that very process is still alive."""
        tag = run.tags.get(WORKER_TAG)
        if not tag:
            return None
        pid = int(tag.split(":")[0])
        return pid if worker_identity(pid) == tag else None

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        tag = run.tags.get(WORKER_TAG)
        if not tag:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no worker recorded for the run")
        if self._worker_pid(run) is None:
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"the run's worker process ({tag.split(':')[0]}) is gone"
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=tag)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        pid = self._worker_pid(run)
        if pid is None:
            return False
        self._instance.report_run_canceling(run)
        # Dagster's run worker turns SIGINT into an interruption: its steps stop, and it
        # records the run as canceled
        os.kill(pid, signal.SIGINT)
        return True


def worker_identity(pid: int) -> str | None:
    """`pid:start time` of a live process (not a zombie): a pid reused by another process
    after the worker died has another start time. None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    state, started = fields[0], fields[19]
    return None if state in ("Z", "X") else f"{pid}:{started}"


def run_worker(run_id: str, instance_ref: str) -> None:
    """The body of one run's process: what `dagster api execute_run` does."""
    instance = dg.DagsterInstance.from_ref(deserialize_value(instance_ref, InstanceRef))
    with instance:
        _execute_run_command_body(
            run_id, instance, write_stream_fn=lambda event: None, set_exit_code_on_failure=False
        )
