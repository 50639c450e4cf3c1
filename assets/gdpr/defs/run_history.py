"""What Dagster itself remembers about a user, and forgetting it when the user is erased.

Dagster keeps its own record of every run, outside goalport's tables: the run config and
tags (an export launched by hand from the Launchpad or `goalport export` names its users),
and the event log (log lines, asset metadata, asset check results). goalport's own runs
name request, batch and bucket ids rather than users, but an erasure must not rely on
that: it deletes every run whose record or events mention the user, and its verification
searches them again (`assets.gdpr.erasure` takes this as its `run_history`).

Deleting a run deletes its events and captured logs, so a batch run that also exported other users goes from
the run history as a whole; their request rows keep what was done for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import dagster as dg

PAGE = 200


class DagsterRunHistory:
    """The runs of one Dagster instance; `keep_run_ids` (the erasure's own run) are never
    searched or deleted."""

    def __init__(self, instance: dg.DagsterInstance, keep_run_ids: Iterable[str] = ()):
        self.instance = instance
        self.keep_run_ids = frozenset(keep_run_ids)

    def runs_mentioning(self, needle: str) -> list[str]:
        """Ids of the runs whose config, tags or events contain `needle`."""
        return [run.run_id for run in self._runs() if self._mentions(run, needle)]

    def forget(self, needle: str) -> int:
        """Delete every run that mentions `needle`, with its events and its captured step
        output (which repeats the run's log lines); how many."""
        found = self.runs_mentioning(needle)
        for run_id in found:
            self.instance.compute_log_manager.delete_logs(prefix=[run_id])
            self.instance.delete_run(run_id)
        return len(found)

    def _runs(self) -> Iterator[dg.DagsterRun]:
        cursor = None
        while True:
            records = self.instance.get_run_records(limit=PAGE, cursor=cursor)
            for record in records:
                if record.dagster_run.run_id not in self.keep_run_ids:
                    yield record.dagster_run
            if len(records) < PAGE:
                return
            cursor = records[-1].dagster_run.run_id

    def _mentions(self, run: dg.DagsterRun, needle: str) -> bool:
        if needle in json.dumps([run.run_config, dict(run.tags)], default=str):
            return True
        return any(
            needle in dg.serialize_value(entry) for entry in self.instance.all_logs(run.run_id)
        )
