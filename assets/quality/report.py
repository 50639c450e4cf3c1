"""What the data-quality suites found in one batch: per rule, the rows that fail and whose.

A `QualityReport` is made once per batch (`assets.quality.suites.run_quality_suites`) and
travels with the batch: the Dagster asset checks turn it into check results, the render
step leaves out the users it names, and the CLI prints it. For each rule it gives the
table, how many rows fail, a few of their ids and every user they belong to: a failing
rule stops those users only.

Pure: no Dagster, no great-expectations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from resources.schema import APP_TABLE_NAMES

# Ids listed per rule (and per user): enough to find the rows, short enough to read.
EXAMPLE_IDS = 5


@dataclass(frozen=True)
class RuleResult:
    """What one rule found in one batch."""

    table: str
    rule: str
    description: str
    checked_rows: int
    unexpected_count: int
    example_ids: tuple[str, ...] = ()
    user_ids: frozenset[str] = frozenset()
    # user id -> (rows failing, up to EXAMPLE_IDS of their ids)
    rows_by_user: Mapping[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return self.unexpected_count == 0

    @property
    def key(self) -> str:
        return f"{self.table}.{self.rule}"

    def summary(self) -> str:
        if self.skipped:
            return f"{self.key}: not checked ({self.skipped})"
        if self.passed:
            return f"{self.key}: ok ({self.checked_rows} rows)"
        return (
            f"{self.key}: {_rows(self.unexpected_count)} fail ({self.description}); "
            f"ids {', '.join(self.example_ids)}; users {len(self.user_ids)}"
        )

    def as_dict(self) -> dict:
        return {
            "table": self.table,
            "rule": self.rule,
            "description": self.description,
            "passed": self.passed,
            "checked_rows": self.checked_rows,
            "unexpected_count": self.unexpected_count,
            "example_ids": list(self.example_ids),
            "user_ids": sorted(self.user_ids),
            "skipped": self.skipped,
        }


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


@dataclass(frozen=True)
class QualityReport:
    """The suites' results for one batch of users (made once, then only read)."""

    results: list[RuleResult]
    user_ids: frozenset[str]
    seconds: float = 0.0
    engine: str = ""
    # CPU time of `seconds` (this process only; GX does not fork)
    cpu_seconds: float = 0.0

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def affected_user_ids(self) -> frozenset[str]:
        """Every user with at least one row that fails a rule: not to be exported."""
        return frozenset().union(*(r.user_ids for r in self.failures))

    @property
    def exportable_user_ids(self) -> frozenset[str]:
        return self.user_ids - self.affected_user_ids

    @property
    def blocks_batch(self) -> bool:
        """Nothing in the batch can be exported: every user fails some rule."""
        return bool(self.user_ids) and not self.exportable_user_ids

    def by_table(self) -> dict[str, list[RuleResult]]:
        grouped: dict[str, list[RuleResult]] = {name: [] for name in APP_TABLE_NAMES}
        for r in self.results:
            grouped.setdefault(r.table, []).append(r)
        return grouped

    def failures_of_user(self, user_id: str) -> list[RuleResult]:
        return [r for r in self.failures if user_id in r.user_ids]

    def user_message(self, user_id: str) -> str:
        """Why this user's export was stopped, for a support person to act on."""
        parts = []
        for r in self.failures_of_user(user_id):
            count, ids = r.rows_by_user.get(user_id, (0, ()))
            parts.append(f"{r.key} ({r.description}): {_rows(count)}, e.g. id {', '.join(ids)}")
        if not parts:
            return ""
        return (
            "not exported: the data failed quality checks; fix these rows in the app "
            "database and export again: " + "; ".join(parts)
        )

    def user_messages(self) -> dict[str, str]:
        return {uid: self.user_message(uid) for uid in sorted(self.affected_user_ids)}

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
            "users": len(self.user_ids),
            "affected_users": sorted(self.affected_user_ids),
            "rules": len(self.results),
            "failures": [r.as_dict() for r in self.failures],
        }


def merge_reports(reports: Sequence[QualityReport]) -> QualityReport:
    """One report for several batches (e.g. every user, checked a batch at a time)."""
    if len(reports) == 1:
        return reports[0]
    merged: dict[tuple[str, str], RuleResult] = {}
    for report in reports:
        for r in report.results:
            seen = merged.get((r.table, r.rule))
            if seen is None:
                merged[(r.table, r.rule)] = r
                continue
            merged[(r.table, r.rule)] = RuleResult(
                r.table,
                r.rule,
                r.description,
                seen.checked_rows + r.checked_rows,
                seen.unexpected_count + r.unexpected_count,
                (seen.example_ids + r.example_ids)[:EXAMPLE_IDS],
                seen.user_ids | r.user_ids,
                {**seen.rows_by_user, **r.rows_by_user},
                seen.skipped or r.skipped,
            )
    return QualityReport(
        list(merged.values()),
        frozenset().union(*(r.user_ids for r in reports)),
        sum(r.seconds for r in reports),
        next((r.engine for r in reports if r.engine), ""),
        sum(r.cpu_seconds for r in reports),
    )
