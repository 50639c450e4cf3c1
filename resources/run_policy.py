"""How goalport's runs are tagged, retried and bounded: written once for every area.

- Every job carries `goalport/kind` (exports, imports, backups, gdpr-bulk, erasure,
  templates): the production instance (`deploy/dagster.production.yaml`) limits how many
  runs of each kind run at once by that tag, and per-kind CPU/memory requests in the Helm
  values key on it too.
- `dagster/max_runtime` bounds a run's wall time per kind: with run monitoring on, a run
  that hangs past it is failed, and its failure sensor fails its rows with the reason.
- `dagster/retry_strategy: ALL_STEPS`: a crashed run is retried whole. Intermediate values
  stay in the run's memory (`resources.run_memory`: users' data is never pickled to the
  instance's disk), so a retry from the failed step would have nothing to start from.
- `io_retry_policy` retries the steps that talk to PostgreSQL and object storage with
  exponential back-off and jitter (a transient outage costs a retry, not a batch).
- `dagster-k8s/config` asks Kubernetes (K8sRunLauncher, deploy/helm/values.yaml) for each
  kind's CPU and memory: the run's pod gets them, and the render pool sizes itself from
  the pod's CPU quota (`assets.exports.workers.usable_cpus`).
- `APP_DATABASE_POOL` is the Dagster concurrency pool of the steps that read the app
  database in bulk: the instance caps how many run at once, whatever the number of runs.
"""

from __future__ import annotations

import json

import dagster as dg

from resources import settings

KIND_TAG = "goalport/kind"
EXPORTS, IMPORTS, BACKUPS, GDPR_BULK, ERASURE, TEMPLATES = (
    "exports",
    "imports",
    "backups",
    "gdpr-bulk",
    "erasure",
    "templates",
)
KINDS = (EXPORTS, IMPORTS, BACKUPS, GDPR_BULK, ERASURE, TEMPLATES)
APP_DATABASE_POOL = "app_database"
IO_RETRIES = 3

# The longest a healthy run of each kind takes, with headroom (docs/CAPACITY.md): a GDPR
# bucket of 1/64 of 10 M users is the longest.
MAX_RUNTIME_SECONDS = {
    EXPORTS: 30 * 60,
    IMPORTS: 30 * 60,
    BACKUPS: 60 * 60,
    GDPR_BULK: 6 * 60 * 60,
    ERASURE: 60 * 60,
    TEMPLATES: 10 * 60,
}


# CPU and memory per run pod, from docs/CAPACITY.md: rendering is CPU-bound Python (XLSX
# ~25 ms a user, a GDPR bundle ~10 ms of CPU), extraction holds a batch's Arrow tables.
POD_RESOURCES = {
    EXPORTS: ("2", "4Gi"),
    IMPORTS: ("1", "2Gi"),
    BACKUPS: ("2", "4Gi"),
    GDPR_BULK: ("4", "8Gi"),
    ERASURE: ("500m", "1Gi"),
    TEMPLATES: ("250m", "512Mi"),
}


def k8s_config(kind: str) -> str:
    """The `dagster-k8s/config` tag of a kind: requests equal to limits (a run is sized for
    its whole life; the CPU limit is the quota the worker pool reads)."""
    cpu, memory = POD_RESOURCES[kind]
    sized = {"cpu": cpu, "memory": memory}
    return json.dumps(
        {"container_config": {"resources": {"requests": sized, "limits": sized}}},
        sort_keys=True,
    )


def job_tags(kind: str) -> dict[str, str]:
    """The tags every run of a job of `kind` carries (none of them names a user)."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}: one of {', '.join(KINDS)}")
    return {
        KIND_TAG: kind,
        "dagster/max_runtime": str(MAX_RUNTIME_SECONDS[kind]),
        "dagster/retry_strategy": "ALL_STEPS",
        "dagster-k8s/config": k8s_config(kind),
    }


def io_retry_policy() -> dg.RetryPolicy:
    """IO_RETRIES retries, the first after GOALPORT_RETRY_DELAY_SECONDS (10 s), doubling,
    with jitter so that runs hit by the same outage do not all come back at once."""
    return dg.RetryPolicy(
        max_retries=IO_RETRIES,
        delay=settings.retry_delay_seconds(),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def is_last_attempt(retry_number: int) -> bool:
    """Whether a step on its `retry_number`-th retry has no retry left: only then may it
    fail its rows (an earlier attempt's rows are still the retry's to finish)."""
    return retry_number >= IO_RETRIES
