"""Data-quality gates in front of rendering: the great-expectations suites
(`assets.quality.suites`) as blocking Dagster asset checks on `extracted_batch`.

The `extracted_batch` asset runs the suites once and carries their report on its output;
the checks read that report and run nothing again. One check per app table
(`Goal_quality`, `Progress_quality`, ...), all evaluated by one op. Each reports, per
failing rule, how many rows fail and how many users they belong to: never row ids or
values, which Dagster would keep after an erasure (the export requests of the users left
out carry the reason, with example ids, on their rows).

A failing rule stops only the users it concerns. So a check that finds bad rows fails
with WARN severity, and the render step (`export_files`, through
`assets.exports.batches.write_batch`, with the same report) leaves those users out and
fails their requests with the reason; the rest of the batch is exported. Only when no user
of the batch can be exported do the failing checks fail with ERROR severity, and being
blocking, they stop the run before rendering; the batch's export requests are then failed
here, each with its user's reason.
"""

from collections.abc import Mapping, Sequence

import dagster as dg
import sqlalchemy as sa

from assets.exports.defs import ExportBatch
from assets.exports.queue import fail_exports
from assets.quality.report import QualityReport, RuleResult
from assets.quality.rules import quality_rules
from resources.database import AppDatabase
from resources.schema import APP_TABLE_NAMES, data_export_job

EXTRACTED_BATCH = dg.AssetKey("extracted_batch")


def quality_check_name(table_name: str) -> str:
    return f"{table_name}_quality"


def _check_description(table_name: str) -> str:
    rules = [r for r in _RULES if r.table == table_name]
    return f"{table_name} rows pass {len(rules)} rules: " + "; ".join(
        f"{r.name} ({r.description})" for r in rules
    )


_RULES = quality_rules()
QUALITY_CHECK_SPECS = [
    dg.AssetCheckSpec(
        quality_check_name(table),
        asset=EXTRACTED_BATCH,
        blocking=True,
        description=_check_description(table),
    )
    for table in APP_TABLE_NAMES
]


@dg.multi_asset_check(
    specs=QUALITY_CHECK_SPECS,
    ins={"extracted_batch": dg.AssetIn(EXTRACTED_BATCH)},
    compute_kind="great_expectations",
)
def extracted_batch_quality(
    context: dg.AssetCheckExecutionContext, extracted_batch: ExportBatch, database: AppDatabase
):
    """Every table's expectation suite on the extracted batch (great-expectations 1.x), as
    reported by the run of the suites that `extracted_batch` made."""
    report = extracted_batch.quality
    if report.blocks_batch:
        context.log.error(
            f"every one of the {len(report.user_ids)} users fails a data-quality rule: "
            "nothing in this batch can be exported"
        )
        # The run stops here, so the requests are failed here, each with its user's reason.
        fail_requests_of_users(
            database.engine,
            extracted_batch.job_ids,
            report.user_messages(),
            context.op_execution_context.run_id,
        )
    elif not report.passed:
        context.log.warning(
            f"{len(report.affected_user_ids)} of {len(report.user_ids)} users fail "
            "data-quality rules and will not be exported: "
            + "; ".join(f"{r.key}: {r.unexpected_count} rows" for r in report.failures)
        )
    yield from quality_check_results(report)


def fail_requests_of_users(
    engine: sa.Engine, job_ids: Sequence[str], messages: Mapping[str, str], run_id: str
) -> list[str]:
    """Fail the export requests (DataExportJob rows) of these users, each with its message."""
    if not job_ids:
        return []
    with engine.connect() as conn:
        owners = conn.execute(
            sa.select(data_export_job.c.id, data_export_job.c.userId).where(
                data_export_job.c.id.in_(list(job_ids))
            )
        ).all()
    failed = []
    for user_id, message in messages.items():
        ids = [job_id for job_id, owner in owners if owner == user_id]
        if ids:
            failed += fail_exports(engine, message, job_ids=ids, run_id=run_id)
    return failed


def quality_check_results(report: QualityReport) -> list[dg.AssetCheckResult]:
    """One check result per app table, from a report of the suites."""
    severity = dg.AssetCheckSeverity.ERROR if report.blocks_batch else dg.AssetCheckSeverity.WARN
    return [
        dg.AssetCheckResult(
            asset_key=EXTRACTED_BATCH,
            check_name=quality_check_name(table),
            passed=all(r.passed for r in results),
            severity=severity,
            metadata=_table_metadata(report, results),
        )
        for table, results in report.by_table().items()
    ]


def _table_metadata(report: QualityReport, results: list[RuleResult]) -> dict:
    failures = [r for r in results if not r.passed]
    affected = sorted(frozenset().union(*(r.user_ids for r in failures)))
    metadata: dict = {
        "rows": max((r.checked_rows for r in results), default=0),
        "rules": len(results),
        "failed_rules": len(failures),
        "unexpected_rows": sum(r.unexpected_count for r in failures),
        "affected_users": len(affected),
        "batch_users": len(report.user_ids),
        "batch_blocked": report.blocks_batch,
    }
    for r in failures:
        metadata[f"unexpected: {r.rule}"] = r.unexpected_count
    if failures:
        metadata["failures"] = dg.MetadataValue.md(_failures_table(failures))
    skipped = [r for r in results if r.skipped]
    if skipped:
        metadata["not_checked"] = dg.MetadataValue.json({r.rule: r.skipped for r in skipped})
    metadata["engine"] = report.engine
    return metadata


def _failures_table(failures: list[RuleResult]) -> str:
    lines = ["| rule | rows | users |", "|---|---:|---:|"]
    for r in failures:
        lines.append(f"| {r.rule}: {r.description} | {r.unexpected_count} | {len(r.user_ids)} |")
    return "\n".join(lines)


defs = dg.Definitions(asset_checks=[extracted_batch_quality])
