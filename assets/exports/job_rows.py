"""`DataExportJob` rows as Python values: what the queue, the claimer, a run's bookkeeping,
the expiry and the notifications all read, so each of them reads a row the same way.

A row's filters are stored as canonical JSON (sorted keys): equal filters give equal text,
which is what the claimer groups batches on.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from assets.exports.batches import make_filter
from assets.exports.job_status import ExportStatus, job_table
from resources.database import ExtractFilter
from resources.schema import as_utc

EXPORT_TYPES = ("full", "selective", "template", "backup", "gdpr")


@dataclass(frozen=True)
class ExportJob:
    """One `DataExportJob` row."""

    id: str
    user_id: str
    export_type: str
    format: str
    filters: dict
    status: ExportStatus
    batch_id: str | None
    run_id: str | None
    requested_by: str | None
    records_processed: int
    records_total: int | None
    file_url: str | None
    file_size_bytes: int | None
    checksum: str | None
    completeness: dict | None
    error_message: str | None
    attempts: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    expires_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: Mapping) -> ExportJob:
        return cls(
            id=row["id"],
            user_id=row["userId"],
            export_type=row["exportType"],
            format=row["format"],
            filters=json.loads(row["filters"]) if row["filters"] else {},
            status=ExportStatus(row["status"]),
            batch_id=row["batchId"],
            run_id=row["runId"],
            requested_by=row["requestedBy"],
            records_processed=row["recordsProcessed"],
            records_total=row["recordsTotal"],
            file_url=row["fileUrl"],
            file_size_bytes=row["fileSizeBytes"],
            checksum=row["checksum"],
            completeness=json.loads(row["completeness"]) if row["completeness"] else None,
            error_message=row["errorMessage"],
            attempts=row["attempts"],
            created_at=as_utc(row["createdAt"]),
            started_at=as_utc(row["startedAt"]),
            completed_at=as_utc(row["completedAt"]),
            expires_at=as_utc(row["expiresAt"]),
        )

    @property
    def extract_filter(self) -> ExtractFilter:
        return filter_from_dict(self.filters)

    def as_dict(self) -> dict:
        """The row as JSON-ready values, named as in the table."""
        values = {
            "id": self.id,
            "userId": self.user_id,
            "exportType": self.export_type,
            "format": self.format,
            "filters": self.filters,
            "status": self.status.value,
            "batchId": self.batch_id,
            "runId": self.run_id,
            "requestedBy": self.requested_by,
            "recordsProcessed": self.records_processed,
            "recordsTotal": self.records_total,
            "fileUrl": self.file_url,
            "fileSizeBytes": self.file_size_bytes,
            "checksum": self.checksum,
            "completeness": self.completeness,
            "errorMessage": self.error_message,
            "attempts": self.attempts,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "completedAt": self.completed_at,
            "expiresAt": self.expires_at,
        }
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


def filters_json(filters: ExtractFilter) -> str:
    """The canonical text of a filter: equal filters give equal text (batches group on it)."""
    return json.dumps(filters.as_dict(), sort_keys=True)


def filter_from_dict(filters: Mapping | None) -> ExtractFilter:
    filters = filters or {}
    return make_filter(filters.get("modules"), filters.get("since"), filters.get("until"))


def default_export_type(filters: ExtractFilter) -> str:
    """`selective` when the filter leaves anything out, else `full`."""
    selective = filters.modules is not None or filters.since or filters.until
    return "selective" if selective else "full"


def jobs_by_id(conn: sa.Connection, job_ids: Iterable[str]) -> list[ExportJob]:
    """The rows with these ids, oldest first."""
    rows = conn.execute(sa.select(job_table).where(job_table.c.id.in_(list(job_ids)))).mappings()
    return sorted((ExportJob.from_row(r) for r in rows), key=lambda j: (j.created_at, j.id))
