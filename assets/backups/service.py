"""Scheduled, encrypted, verified backups, without Dagster: configuration, due-ness, the
backup itself, the restore drill, retention, and passphrase-encrypted exports.

The hourly schedule (`assets.backups.defs`), `goalport backup ...` and the Dagster run all call
this module, so a backup takes one path whoever asks for it.

**When a backup is due.** Each `BackupConfig` is due when it is enabled and its
`nextBackupAt` is empty (a new configuration: backed up at the next hourly tick) or has
passed. After a backup is written AND verified, `nextBackupAt` becomes the first
local 02:00 in the user's time zone (`BackupConfig.timezone`) that is at least half a
period after that backup: daily, any day; weekly, a Monday; monthly, the 1st. Being
computed from the backup's own time (not incremented from the old value), a schedule
that missed ticks, or a daemon that was down for a week, catches up with ONE backup, not
one per missed period. On the night clocks spring forward, 02:00 does not exist and the
backup is due at 03:00 local; on the night they fall back, at the first 02:00. The hourly
tick runs on the hour (UTC), so users in zones with half-hour offsets are backed up at
the tick after their local 02:00.

**A backup** is one user's data rendered by `assets.exports.batches.render_user_files` (JSON
unless configured otherwise: what the importer restores exactly) inside a zip with a
`manifest.json` (format `goalport.backup`, the user, the time, every member's SHA-256 and
size, and the row count of every table). It is encrypted with age to the user's goalport
key (`resources.keys.KeyVault`) and to the user's own recipients from the configuration,
so the user opens it with `age -d -i` and no goalport; then written atomically to the
destination (`backups/<userId>/goalport-backup-<UTC time>.zip.age` below the destination
URL, by default the main storage). The zip has the shape of a GDPR bundle (manifest.json
beside data/), so the import path reads a decrypted backup like any goalport export.

**The restore drill.** Right after writing, the file is read back from the destination,
decrypted with the identity the key vault holds, every SHA-256 in the manifest checked and
the data parsed with the format's reader: its row counts must equal the manifest's and
the extraction's. Only then are `lastBackupAt`, `nextBackupAt`, `lastVerifiedAt` and
`lastVerifiedUrl` set, the `DataExportJob` row completed and an audit row written. A file
that fails the drill is deleted and its row failed with the reason.

**Retention** (`{"keep_last": N}`, or tiers `{"daily": d, "weekly": w, "monthly": m}`:
the newest backup of each of the last d days, w ISO weeks, m months, in the user's time
zone) runs only after a newer backup has been verified, and never deletes that backup or
anything newer than it.

**Passphrase exports** (`write_passphrase_export`) are on-demand, age scrypt-encrypted
copies for the user to download; the passphrase is an argument only: never stored, never
logged, never in an audit row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import sqlalchemy as sa

from assets.exports.batches import EXPORT_FORMATS, render_batch
from resources import age, schema
from resources.audit import new_id, record_audit, utc_now
from resources.database import AppDatabase, ExtractFilter
from resources.keys import KeyCustodyError, KeyVault
from resources.storage import ObjectStorage, StorageError

log = logging.getLogger(__name__)

FREQUENCIES = ("daily", "weekly", "monthly")
# Formats the importer reads back exactly (the HTML report is for people, not restores).
BACKUP_FORMATS = ("json", "csv", "xlsx", "parquet")
BACKUP_LOCAL_TIME = dt.time(2, 0)
# The next backup is at least this long after the last one, so a late or catch-up backup
# is not followed by another one an hour later.
MIN_GAP = {
    "daily": dt.timedelta(hours=12),
    "weekly": dt.timedelta(days=3, hours=12),
    "monthly": dt.timedelta(days=14),
}
DEFAULT_RETENTION = {"keep_last": 7}
BACKUP_EXPORT_TYPE = "backup"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "goalport.backup"
MANIFEST_VERSION = 1
# A queued backup whose run has not finished after this long was lost (the run was never
# launched, or died without the failure sensor noticing): it is failed and re-queued.
STALE_AFTER = dt.timedelta(hours=6)
BACKUP_BATCH_PREFIX = "bk_"
DEFAULT_BATCH_SIZE = 50
DEFAULT_MAX_PER_TICK = 5000

_BACKUP_NAME = re.compile(r"goalport-backup-(\d{8}T\d{12}Z)\.zip(\.age)?$")
job_table = schema.data_export_job
config_table = schema.backup_config


# ---------------------------------------------------------------- errors


class BackupError(RuntimeError):
    """A backup cannot be configured, written, opened or verified; the message says why."""


class BackupConfigError(BackupError, ValueError):
    """A backup configuration value is wrong; the message names the option."""


class BackupKeyUnavailableError(BackupError):
    """Encrypted backups cannot run: no usable master key (GOALPORT_MASTER_KEY)."""


class BackupVerificationError(BackupError):
    """A backup file does not open or does not match its manifest; never partial data."""


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Retention:
    """Keep the last `keep_last` backups, or the newest of each of the last `daily` days,
    `weekly` ISO weeks and `monthly` months (grandfather-father-son)."""

    keep_last: int | None = 7
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    @classmethod
    def from_json(cls, text: str | None) -> Retention:
        return cls.from_dict(json.loads(text) if text else DEFAULT_RETENTION)

    @classmethod
    def from_dict(cls, values: Mapping) -> Retention:
        unknown = sorted(set(values) - {"keep_last", "daily", "weekly", "monthly"})
        if unknown:
            raise BackupConfigError(
                f"retention: unknown setting {', '.join(unknown)} "
                "(use keep_last, or daily/weekly/monthly tiers)"
            )
        numbers = {}
        for name in ("keep_last", "daily", "weekly", "monthly"):
            value = values.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BackupConfigError(f"retention: {name} must be a whole number >= 0")
            numbers[name] = value
        tiers = {k: numbers.get(k, 0) for k in ("daily", "weekly", "monthly")}
        keep_last = numbers.get("keep_last")
        if keep_last is not None and any(tiers.values()):
            raise BackupConfigError("retention: give keep_last or tiers, not both")
        if keep_last is None and not any(tiers.values()):
            raise BackupConfigError("retention must keep at least one backup")
        if keep_last == 0:
            raise BackupConfigError("retention: keep_last must be at least 1")
        return cls(keep_last=keep_last, **tiers)

    def as_dict(self) -> dict:
        if self.keep_last is not None:
            return {"keep_last": self.keep_last}
        return {
            k: v
            for k, v in (("daily", self.daily), ("weekly", self.weekly), ("monthly", self.monthly))
            if v
        }

    def describe(self) -> str:
        if self.keep_last is not None:
            return f"keep the last {self.keep_last}"
        return "keep the newest of " + ", ".join(
            f"{n} {unit}" for unit, n in self.as_dict().items()
        )


@dataclass(frozen=True)
class BackupConfig:
    """One user's `BackupConfig` row."""

    user_id: str
    enabled: bool = True
    frequency: str = "daily"
    timezone: str = "UTC"
    include: tuple[str, ...] | None = None  # module kinds; None means everything
    format: str = "json"
    destination_url: str | None = None  # None means the main storage
    encrypt: bool = True
    recipients: tuple[str, ...] = ()  # the user's own age public keys
    retention: Retention = field(default_factory=Retention)
    last_backup_at: dt.datetime | None = None
    next_backup_at: dt.datetime | None = None
    last_verified_at: dt.datetime | None = None
    last_verified_url: str | None = None
    id: str | None = None

    @classmethod
    def from_row(cls, row: Mapping) -> BackupConfig:
        include = json.loads(row["include"]) if row["include"] else None
        return cls(
            id=row["id"],
            user_id=row["userId"],
            enabled=bool(row["enabled"]),
            frequency=row["frequency"],
            timezone=row["timezone"] or "UTC",
            include=tuple(include) if include is not None else None,
            format=row["format"] or "json",
            destination_url=row["destinationUrl"] or None,
            encrypt=bool(row["encrypt"]),
            recipients=tuple(json.loads(row["recipients"]) if row["recipients"] else ()),
            retention=Retention.from_json(row["retention"]),
            last_backup_at=_aware(row["lastBackupAt"]),
            next_backup_at=_aware(row["nextBackupAt"]),
            last_verified_at=_aware(row["lastVerifiedAt"]),
            last_verified_url=row["lastVerifiedUrl"],
        )

    @property
    def extract_filter(self) -> ExtractFilter:
        return ExtractFilter(modules=self.include)

    @property
    def job_format(self) -> str:
        """The `DataExportJob.format` of this config's backups. Never a plain export format,
        so the generic export claimer leaves backup rows to the backup path."""
        return f"backup-{self.format}"

    def as_dict(self) -> dict:
        values = {
            "userId": self.user_id,
            "enabled": self.enabled,
            "frequency": self.frequency,
            "timezone": self.timezone,
            "include": list(self.include) if self.include is not None else None,
            "format": self.format,
            "destinationUrl": self.destination_url,
            "encrypt": self.encrypt,
            "recipients": list(self.recipients),
            "retention": self.retention.as_dict(),
            "lastBackupAt": self.last_backup_at,
            "nextBackupAt": self.next_backup_at,
            "lastVerifiedAt": self.last_verified_at,
            "lastVerifiedUrl": self.last_verified_url,
        }
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every timestamp goalport stores is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def check_timezone(name: str) -> str:
    name = (name or "").strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BackupConfigError(
            f"timezone: {name!r} is not an IANA time zone (e.g. Europe/Berlin, America/New_York)"
        ) from None
    return name


def check_frequency(frequency: str) -> str:
    frequency = (frequency or "").strip().lower()
    if frequency not in FREQUENCIES:
        raise BackupConfigError(f"frequency: {frequency!r} is not one of {', '.join(FREQUENCIES)}")
    return frequency


def check_backup_format(fmt: str) -> str:
    fmt = (fmt or "").strip().lower()
    if fmt not in BACKUP_FORMATS:
        raise BackupConfigError(
            f"format: {fmt!r} cannot be restored from a backup; choose {', '.join(BACKUP_FORMATS)}"
        )
    return fmt


def check_recipients(recipients: Iterable[str]) -> tuple[str, ...]:
    checked = []
    for recipient in recipients:
        try:
            checked.append(age.validate_recipient(recipient))
        except age.AgeKeyError as exc:
            raise BackupConfigError(f"recipient {recipient.strip()[:80]!r}: {exc}") from None
    return tuple(dict.fromkeys(checked))


def check_destination(url: str | None) -> str | None:
    url = (url or "").strip()
    if not url:
        return None
    if "://" in url:
        import fsspec

        protocol = url.split("://", 1)[0]
        try:
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError) as exc:
            raise BackupConfigError(f"destination {url!r}: {exc}") from None
    return url


def get_backup_config(engine: sa.Engine, user_id: str) -> BackupConfig | None:
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(config_table).where(config_table.c.userId == user_id))
            .mappings()
            .first()
        )
    return BackupConfig.from_row(row) if row is not None else None


_SETTABLE = {
    "enabled",
    "frequency",
    "timezone",
    "include",
    "format",
    "destination_url",
    "encrypt",
    "recipients",
    "retention",
}


def save_backup_config(
    engine: sa.Engine, user_id: str, *, actor: str | None = None, **changes
) -> BackupConfig:
    """Create or change a user's backup configuration; returns it as stored.

    `changes` are BackupConfig fields (enabled, frequency, timezone, include, format,
    destination_url, encrypt, recipients, retention as a Retention or a dict). A new
    configuration takes the user's own time zone unless one is given. Changing the
    frequency or time zone moves `nextBackupAt` to match (from the last backup).
    """
    unknown = sorted(set(changes) - _SETTABLE)
    if unknown:
        raise BackupConfigError(f"not backup settings: {', '.join(unknown)}")
    values = dict(changes)
    if "frequency" in values:
        values["frequency"] = check_frequency(values["frequency"])
    if "timezone" in values:
        values["timezone"] = check_timezone(values["timezone"])
    if "format" in values:
        values["format"] = check_backup_format(values["format"])
    if "recipients" in values:
        values["recipients"] = check_recipients(values["recipients"])
    if "destination_url" in values:
        values["destination_url"] = check_destination(values["destination_url"])
    if "include" in values and values["include"] is not None:
        kinds = tuple(dict.fromkeys(k.strip().lower() for k in values["include"] if k.strip()))
        values["include"] = kinds or None
    if isinstance(values.get("retention"), Mapping):
        values["retention"] = Retention.from_dict(values["retention"])
    now = utc_now()
    with engine.begin() as conn:
        user = conn.execute(
            sa.select(schema.user.c.id, schema.user.c.timezone).where(schema.user.c.id == user_id)
        ).first()
        if user is None:
            raise BackupConfigError(f"unknown user id: {user_id}")
        row = (
            conn.execute(
                sa.select(config_table).where(config_table.c.userId == user_id).with_for_update()
            )
            .mappings()
            .first()
        )
        if row is None:
            timezone = values.get("timezone") or _known_timezone(user.timezone) or "UTC"
            current = BackupConfig(user_id=user_id, timezone=timezone, id=new_id("bkc_"))
        else:
            current = BackupConfig.from_row(row)
        updated = replace(current, **values)
        schedule_changed = (updated.frequency, updated.timezone) != (
            current.frequency,
            current.timezone,
        )
        if schedule_changed and updated.last_backup_at is not None:
            updated = replace(
                updated,
                next_backup_at=next_backup_after(
                    updated.last_backup_at, updated.frequency, updated.timezone
                ),
            )
        stored = _config_values(updated)
        if row is None:
            conn.execute(
                config_table.insert().values(
                    id=updated.id, createdAt=now, updatedAt=now, userId=user_id, **stored
                )
            )
        else:
            conn.execute(
                config_table.update()
                .where(config_table.c.userId == user_id)
                .values(updatedAt=now, **stored)
            )
        record_audit(
            conn,
            user_id=user_id,
            operation="backup_config",
            operation_type="create" if row is None else "update",
            actor=actor,
            details={"changed": sorted(changes), "config": _audit_view(updated)},
        )
    return get_backup_config(engine, user_id)


def _known_timezone(name: str | None) -> str | None:
    try:
        return check_timezone(name) if name else None
    except BackupConfigError:
        return None


def _config_values(config: BackupConfig) -> dict:
    return {
        "enabled": config.enabled,
        "frequency": config.frequency,
        "timezone": config.timezone,
        "include": json.dumps(list(config.include)) if config.include is not None else None,
        "format": config.format,
        "destinationUrl": config.destination_url,
        "encrypt": config.encrypt,
        "recipients": json.dumps(list(config.recipients)),
        "retention": json.dumps(config.retention.as_dict()),
        "nextBackupAt": config.next_backup_at,
    }


def _audit_view(config: BackupConfig) -> dict:
    view = config.as_dict()
    view["recipients"] = len(config.recipients)
    return view


def delete_backup_config(engine: sa.Engine, user_id: str) -> bool:
    """Remove the user's configuration (their backup files are left alone); True if any."""
    with engine.begin() as conn:
        deleted = conn.execute(config_table.delete().where(config_table.c.userId == user_id))
    return deleted.rowcount > 0


# ---------------------------------------------------------------- when backups are due


def _slot_matches(day: dt.date, frequency: str) -> bool:
    if frequency == "daily":
        return True
    if frequency == "weekly":
        return day.weekday() == 0
    return day.day == 1


def next_backup_after(moment: dt.datetime, frequency: str, timezone: str) -> dt.datetime:
    """The first local 02:00 (Monday for weekly, the 1st for monthly) in `timezone` that is
    at least half a period after `moment`; in UTC."""
    frequency = check_frequency(frequency)
    zone = ZoneInfo(timezone)
    earliest = _aware(moment) + MIN_GAP[frequency]
    day = earliest.astimezone(zone).date()
    while True:
        if _slot_matches(day, frequency):
            # A nonexistent local time (clocks spring forward) resolves to the moment after
            # the gap; an ambiguous one (clocks fall back) to its first occurrence.
            slot = dt.datetime.combine(day, BACKUP_LOCAL_TIME, tzinfo=zone).astimezone(dt.UTC)
            if slot >= earliest:
                return slot
        day += dt.timedelta(days=1)


def is_due(config: BackupConfig, now: dt.datetime) -> bool:
    return config.enabled and (config.next_backup_at is None or config.next_backup_at <= now)


def users_due(now: dt.datetime, configs: Iterable[BackupConfig]) -> list[str]:
    """The users whose backups are due at `now`, most overdue first (new configs first)."""
    due = [c for c in configs if is_due(c, now)]
    due.sort(key=lambda c: (c.next_backup_at is not None, c.next_backup_at or now, c.user_id))
    return [c.user_id for c in due]


def load_due_configs(
    engine: sa.Engine, now: dt.datetime, limit: int | None = None
) -> list[BackupConfig]:
    """Enabled configurations due at `now` (the same rule as `users_due`, in SQL)."""
    query = (
        sa.select(config_table)
        .where(
            config_table.c.enabled.is_(True),
            sa.or_(config_table.c.nextBackupAt.is_(None), config_table.c.nextBackupAt <= now),
        )
        .order_by(config_table.c.nextBackupAt.asc().nulls_first(), config_table.c.userId)
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [BackupConfig.from_row(r) for r in conn.execute(query).mappings()]


def load_configs(engine: sa.Engine, user_ids: Sequence[str]) -> dict[str, BackupConfig]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(config_table).where(config_table.c.userId.in_(list(user_ids)))
        ).mappings()
        return {r["userId"]: BackupConfig.from_row(r) for r in rows}


# ---------------------------------------------------------------- queueing backups


@dataclass(frozen=True)
class QueuedBackups:
    """Backup requests queued together for one run."""

    batch_id: str
    job_ids: tuple[str, ...]
    user_ids: tuple[str, ...]


@dataclass
class QueueOutcome:
    batches: list[QueuedBackups] = field(default_factory=list)
    skipped_in_flight: list[str] = field(default_factory=list)
    skipped_no_key: list[str] = field(default_factory=list)
    stale_failed: list[str] = field(default_factory=list)
    key_problem: str | None = None

    @property
    def user_count(self) -> int:
        return sum(len(b.user_ids) for b in self.batches)


def fail_stale_backups(engine: sa.Engine, now: dt.datetime) -> list[str]:
    """Fail backup requests still in flight after STALE_AFTER; returns their ids."""
    cutoff = now - STALE_AFTER
    with engine.begin() as conn:
        stale = (
            conn.execute(
                sa.select(job_table.c.id).where(
                    job_table.c.exportType == BACKUP_EXPORT_TYPE,
                    job_table.c.status == "processing",
                    job_table.c.startedAt < cutoff,
                )
            )
            .scalars()
            .all()
        )
        if stale:
            conn.execute(
                job_table.update()
                .where(job_table.c.id.in_(stale), job_table.c.status == "processing")
                .values(
                    status="failed",
                    completedAt=now,
                    errorMessage=f"the backup did not finish within {STALE_AFTER} "
                    "(its run was lost); it is queued again while the user is due",
                )
            )
    return list(stale)


def _in_flight_users(conn: sa.Connection, user_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(user_ids), 5000):
        chunk = list(user_ids[start : start + 5000])
        found.update(
            conn.execute(
                sa.select(job_table.c.userId)
                .where(
                    job_table.c.exportType == BACKUP_EXPORT_TYPE,
                    job_table.c.status.in_(["pending", "processing"]),
                    job_table.c.userId.in_(chunk),
                )
                .distinct()
            ).scalars()
        )
    return found


def queue_due_backups(
    engine: sa.Engine,
    now: dt.datetime,
    *,
    encryption_available: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_users: int = DEFAULT_MAX_PER_TICK,
    requested_by: str = "schedule",
) -> QueueOutcome:
    """Queue a backup request (`DataExportJob`, exportType "backup", processing under a
    backup batch id) for every user due at `now` who has none in flight, in batches.

    Pending backup rows (a failed backup re-queued with `goalport exports retry`) are
    claimed into the same batches. Without encryption keys, users whose backups encrypt are
    left for a later tick, named in the outcome.
    """
    outcome = QueueOutcome(stale_failed=fail_stale_backups(engine, now))
    configs = {c.user_id: c for c in load_due_configs(engine, now, limit=max_users)}
    due = users_due(now, configs.values())
    rows: list[dict] = []
    with engine.begin() as conn:
        in_flight = _in_flight_users(conn, due)
        pending = conn.execute(
            sa.select(job_table.c.id, job_table.c.userId)
            .where(
                job_table.c.exportType == BACKUP_EXPORT_TYPE,
                job_table.c.status == "pending",
                job_table.c.format.like("backup-%"),
            )
            .order_by(job_table.c.createdAt)
            .limit(max_users)
        ).all()
        pending_users = {user_id for _, user_id in pending}
        for user_id in due:
            if user_id in in_flight and user_id not in pending_users:
                outcome.skipped_in_flight.append(user_id)
                continue
            if user_id in pending_users:
                continue
            config = configs[user_id]
            if config.encrypt and not encryption_available:
                outcome.skipped_no_key.append(user_id)
                continue
            rows.append(_request_row(user_id, config.job_format, requested_by, now))
        claimed = [(job_id, user_id) for job_id, user_id in pending]
        if not encryption_available:
            encrypting = _encrypting_users(conn, [u for _, u in claimed])
            outcome.skipped_no_key.extend(u for _, u in claimed if u in encrypting)
            claimed = [(j, u) for j, u in claimed if u not in encrypting]
        work = [(j, u) for j, u in claimed] + [(r["id"], r["userId"]) for r in rows]
        batches = []
        for start in range(0, len(work), batch_size):
            part = work[start : start + batch_size]
            batches.append(
                QueuedBackups(
                    batch_id=new_id(BACKUP_BATCH_PREFIX),
                    job_ids=tuple(j for j, _ in part),
                    user_ids=tuple(u for _, u in part),
                )
            )
        batch_of = {j: b.batch_id for b in batches for j in b.job_ids}
        for row in rows:
            row["batchId"] = batch_of[row["id"]]
        if rows:
            conn.execute(job_table.insert(), rows)
        for batch in batches:
            conn.execute(
                job_table.update()
                .where(job_table.c.id.in_(batch.job_ids), job_table.c.status == "pending")
                .values(
                    status="processing",
                    batchId=batch.batch_id,
                    startedAt=now,
                    attempts=job_table.c.attempts + 1,
                    errorMessage=None,
                )
            )
    outcome.batches = batches
    return outcome


def _encrypting_users(conn: sa.Connection, user_ids: Sequence[str]) -> set[str]:
    if not user_ids:
        return set()
    plain = set(
        conn.execute(
            sa.select(config_table.c.userId).where(
                config_table.c.userId.in_(list(user_ids)), config_table.c.encrypt.is_(False)
            )
        ).scalars()
    )
    return set(user_ids) - plain


def _request_row(user_id: str, job_format: str, requested_by: str, now: dt.datetime) -> dict:
    return {
        "id": new_id("exp_"),
        "userId": user_id,
        "exportType": BACKUP_EXPORT_TYPE,
        "format": job_format,
        "filters": None,
        "status": "processing",
        "batchId": None,
        "requestedBy": requested_by,
        "recordsProcessed": 0,
        "attempts": 1,
        "createdAt": now,
        "startedAt": now,
    }


def queue_backup_now(
    engine: sa.Engine, user_ids: Sequence[str], *, requested_by: str
) -> QueuedBackups:
    """Backup requests for `user_ids` now, whatever their schedule (CLI, Launchpad)."""
    now = utc_now()
    batch_id = new_id(BACKUP_BATCH_PREFIX)
    user_ids = list(dict.fromkeys(user_ids))
    configs = load_configs(engine, user_ids)
    rows = []
    with engine.begin() as conn:
        known = set(
            conn.execute(
                sa.select(schema.user.c.id).where(schema.user.c.id.in_(user_ids))
            ).scalars()
        )
        unknown = [u for u in user_ids if u not in known]
        if unknown:
            raise BackupError(f"unknown user id: {', '.join(unknown)}")
        for user_id in user_ids:
            config = configs.get(user_id) or BackupConfig(user_id=user_id)
            row = _request_row(user_id, config.job_format, requested_by, now)
            row["batchId"] = batch_id
            rows.append(row)
        conn.execute(job_table.insert(), rows)
    return QueuedBackups(batch_id, tuple(r["id"] for r in rows), tuple(user_ids))


# ---------------------------------------------------------------- the backup file


def backup_key(user_id: str, created_at: dt.datetime, encrypted: bool) -> str:
    """backups/<user>/goalport-backup-<UTC time>.zip[.age]: names sort by time."""
    stamp = created_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"backups/{user_id}/goalport-backup-{stamp}.zip" + (".age" if encrypted else "")


def backup_time_of(key: str) -> dt.datetime | None:
    """The creation time in a backup file's name, or None if it is not a backup file."""
    match = _BACKUP_NAME.search(posixpath.basename(key))
    if match is None:
        return None
    return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)


def data_member_name(fmt: str) -> str:
    return f"data/export.{EXPORT_FORMATS[fmt][0]}"


def build_backup_archive(
    *,
    user_id: str,
    created_at: dt.datetime,
    fmt: str,
    export: bytes,
    row_counts: Mapping[str, int],
    include: Sequence[str] | None,
) -> tuple[bytes, dict]:
    """The backup's plaintext (a zip: manifest.json and data/export.<ext>) and manifest."""
    member = data_member_name(fmt)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "userId": user_id,
        "createdAt": created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "exportFormat": fmt,
        "include": list(include) if include is not None else None,
        "files": [
            {"path": member, "sha256": hashlib.sha256(export).hexdigest(), "size": len(export)}
        ],
        "rowCounts": {str(name): int(n) for name, n in row_counts.items()},
        "records": int(sum(row_counts.values())),
    }
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True))
        archive.writestr(member, export)
    return sink.getvalue(), manifest


@dataclass
class OpenedBackup:
    """A backup file decrypted, its manifest checked and its data read."""

    file_name: str
    encrypted: bool
    manifest: dict
    archive: bytes  # the decrypted zip
    tables: dict[str, pa.Table]

    @property
    def user_id(self) -> str:
        return self.manifest["userId"]

    @property
    def row_counts(self) -> dict[str, int]:
        return {name: t.num_rows for name, t in self.tables.items()}

    @property
    def records(self) -> int:
        return sum(self.row_counts.values())


_READERS = {
    "json": "read_json_export",
    "csv": "read_csv_zip",
    "xlsx": "read_xlsx_export",
    "parquet": "read_parquet_zip",
}


def decrypt_backup(
    data: bytes,
    *,
    file_name: str,
    identities: Sequence[str] = (),
    passphrase: str | None = None,
    max_work_factor: int = age.DEFAULT_MAX_WORK_FACTOR,
) -> tuple[bytes, bool]:
    """(plaintext, was encrypted). Any failure is a BackupVerificationError saying why;
    nothing is returned unless the whole file authenticates."""
    if not age.is_age_file(data[:64]):
        return data, False
    if passphrase is None and not identities:
        raise BackupVerificationError(
            f"{file_name} is encrypted (age): give the passphrase, or the user whose backup "
            "key it was encrypted to, or an identity file"
        )
    try:
        plain = age.decrypt(
            data,
            identities=list(identities),
            passphrase=passphrase,
            max_work_factor=max_work_factor,
        )
    except age.AgeWrongPassphraseError:
        raise BackupVerificationError(
            f"cannot decrypt {file_name}: wrong passphrase (nothing was decrypted)"
        ) from None
    except age.AgeNoMatchError as exc:
        if passphrase is None and "passphrase" in str(exc):
            raise BackupVerificationError(
                f"cannot decrypt {file_name}: it is encrypted with a passphrase; give the "
                "passphrase (--passphrase-env NAME or --ask-passphrase)"
            ) from None
        raise BackupVerificationError(
            f"cannot decrypt {file_name}: wrong key, the file is not encrypted to any key "
            f"given ({exc})"
        ) from None
    except age.AgeTruncatedError as exc:
        raise BackupVerificationError(
            f"cannot decrypt {file_name}: the file is truncated ({exc}); nothing was restored"
        ) from None
    except (age.AgePayloadError, age.AgeHeaderMacError) as exc:
        raise BackupVerificationError(
            f"cannot decrypt {file_name}: the file is damaged or was altered ({exc}); "
            "nothing was restored"
        ) from None
    except age.AgeError as exc:
        raise BackupVerificationError(f"cannot decrypt {file_name}: {exc}") from None
    return plain, True


def open_backup(
    data: bytes,
    *,
    file_name: str = "backup",
    identities: Sequence[str] = (),
    passphrase: str | None = None,
    max_work_factor: int = age.DEFAULT_MAX_WORK_FACTOR,
) -> OpenedBackup:
    """Decrypt a backup, check every member against its manifest SHA-256 and size, read
    the data with its format's reader and check the row counts against the manifest."""
    from assets.formats import readers
    from assets.imports.parsers.base import ImportFormatError, safe_zip_members

    plain, encrypted = decrypt_backup(
        data,
        file_name=file_name,
        identities=identities,
        passphrase=passphrase,
        max_work_factor=max_work_factor,
    )

    def bad(what: str) -> BackupVerificationError:
        return BackupVerificationError(f"{file_name}: {what}")

    try:
        members = safe_zip_members(plain, file_name=file_name)
    except ImportFormatError as exc:
        raise bad(f"not a goalport backup archive ({exc})") from None
    except zipfile.BadZipFile:
        raise bad("not a goalport backup archive (not a zip)") from None
    if MANIFEST_NAME not in members:
        raise bad("no manifest.json: not a goalport backup")
    try:
        manifest = json.loads(members[MANIFEST_NAME])
    except ValueError as exc:
        raise bad(f"manifest.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise bad(f"manifest.json does not describe a {MANIFEST_FORMAT} file")
    if manifest.get("version") != MANIFEST_VERSION:
        raise bad(f"backup version {manifest.get('version')!r} is not supported (expected 1)")
    fmt = manifest.get("exportFormat")
    if fmt not in _READERS:
        raise bad(f"manifest.json: unknown exportFormat {fmt!r}")
    for entry in manifest.get("files") or []:
        path, digest = entry.get("path"), entry.get("sha256")
        content = members.get(path)
        if content is None:
            raise bad(f"member {path!r} is in the manifest but missing")
        if len(content) != entry.get("size") or hashlib.sha256(content).hexdigest() != digest:
            raise bad(f"member {path!r} does not match its size and SHA-256 in manifest.json")
    member = data_member_name(fmt)
    if member not in {e.get("path") for e in manifest.get("files") or []}:
        raise bad(f"manifest.json does not list the data file {member!r}")
    try:
        tables = getattr(readers, _READERS[fmt])(members[member])
    except (ValueError, KeyError, pa.ArrowException, zipfile.BadZipFile) as exc:
        raise bad(f"{member} cannot be read as a goalport {fmt} export: {exc}") from None
    opened = OpenedBackup(file_name, encrypted, manifest, plain, tables)
    expected = {str(k): v for k, v in (manifest.get("rowCounts") or {}).items()}
    actual = {k: v for k, v in opened.row_counts.items() if v or k in expected}
    if {k: v for k, v in expected.items() if v or k in actual} != actual:
        differences = ", ".join(
            f"{name} {expected.get(name, 0)} in manifest, {actual.get(name, 0)} in data"
            for name in sorted(set(expected) | set(actual))
            if expected.get(name, 0) != actual.get(name, 0)
        )
        raise bad(f"row counts do not match the manifest: {differences}")
    owners = set(tables["User"]["id"].to_pylist()) if "User" in tables else set()
    if owners - {manifest.get("userId")}:
        raise bad(
            f"the data belongs to {sorted(owners)}, the manifest to {manifest.get('userId')!r}"
        )
    return opened


# ---------------------------------------------------------------- running backups


@dataclass
class BackupResult:
    """One user's backup, written and verified."""

    job_id: str
    user_id: str
    url: str
    size: int
    sha256: str
    records: int
    row_counts: dict[str, int]
    encrypted: bool
    created_at: dt.datetime
    next_backup_at: dt.datetime | None
    retention_deleted: list[str] = field(default_factory=list)


@dataclass
class BackupBatchOutcome:
    batch_id: str
    completed: list[BackupResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # user id -> why

    @property
    def bytes_written(self) -> int:
        return sum(r.size for r in self.completed)


def _destination(config: BackupConfig, storage: ObjectStorage) -> ObjectStorage:
    if not config.destination_url:
        return storage
    return ObjectStorage(url=config.destination_url)


def _load_backup_jobs(engine: sa.Engine, job_ids: Sequence[str], batch_id: str) -> list[dict]:
    with engine.connect() as conn:
        rows = (
            conn.execute(sa.select(job_table).where(job_table.c.id.in_(list(job_ids))))
            .mappings()
            .all()
        )
    held = []
    for row in rows:
        if (
            row["status"] == "processing"
            and row["batchId"] == batch_id
            and row["exportType"] == BACKUP_EXPORT_TYPE
        ):
            held.append(dict(row))
        else:
            log.warning(
                "backup request %s is %s in batch %s, not processing in %s: skipped",
                row["id"],
                row["status"],
                row["batchId"],
                batch_id,
            )
    return held


def _fail_job(engine: sa.Engine, job: dict, message: str, run_id: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            job_table.update()
            .where(
                job_table.c.id == job["id"],
                job_table.c.status == "processing",
                job_table.c.batchId == job["batchId"],
            )
            .values(
                status="failed", errorMessage=message[:4000], completedAt=utc_now(), runId=run_id
            )
        )


def check_encryption_keys(keys: KeyVault) -> str:
    """The master key's id, or BackupKeyUnavailableError saying how to set one."""
    try:
        return keys.current_master_key_id()
    except KeyCustodyError as exc:
        raise BackupKeyUnavailableError(
            f"encrypted backups refuse to run: {exc}. Backups with encryption turned off "
            "(`goalport backup config USER --no-encrypt`) run without it."
        ) from None


def run_backup_batch(
    database: AppDatabase,
    storage: ObjectStorage,
    keys: KeyVault,
    job_ids: Sequence[str],
    batch_id: str,
    *,
    run_id: str | None = None,
    workers: int | None = None,
    on_user_done: Callable[[str, BackupResult | None, str | None], None] | None = None,
) -> BackupBatchOutcome:
    """Back up, verify and record every user of a queued batch.

    Raises BackupKeyUnavailableError (after failing the batch's rows with the message)
    when any backup must be encrypted and no usable master key is configured. A problem
    with one user fails that user's row and the batch goes on.
    """
    engine = database.engine
    outcome = BackupBatchOutcome(batch_id)
    jobs = _load_backup_jobs(engine, job_ids, batch_id)
    if not jobs:
        return outcome
    configs = load_configs(engine, [j["userId"] for j in jobs])
    config_of = {
        j["userId"]: configs.get(j["userId"]) or BackupConfig(user_id=j["userId"]) for j in jobs
    }

    def fail(job: dict, message: str) -> None:
        _fail_job(engine, job, message, run_id)
        outcome.failed[job["userId"]] = message
        if on_user_done is not None:
            on_user_done(job["userId"], None, message)

    encrypting = [j["userId"] for j in jobs if config_of[j["userId"]].encrypt]
    recipients: dict[str, str] = {}
    if encrypting:
        try:
            check_encryption_keys(keys)
            recipients = keys.ensure_user_keys(encrypting)
        except (BackupKeyUnavailableError, KeyCustodyError) as exc:
            message = str(exc)
            for job in jobs:
                fail(job, message)
            raise BackupKeyUnavailableError(message) from None

    groups: dict[tuple[str, tuple[str, ...] | None], list[dict]] = {}
    for job in jobs:
        config = config_of[job["userId"]]
        groups.setdefault((config.format, config.include), []).append(job)
    for (fmt, include), group in groups.items():
        by_user = {j["userId"]: j for j in group}
        try:
            extracted = database.extract(list(by_user), ExtractFilter(modules=include))
        except Exception as exc:  # the rows must say why, whatever broke
            for job in group:
                fail(job, f"extraction failed: {type(exc).__name__}: {exc}")
            continue
        for user_id in by_user:
            if user_id not in extracted.found_user_ids:
                fail(by_user[user_id], f"no user with id {user_id!r}")
        per_user = extracted.per_user()
        created_at = utc_now()
        rendered = render_batch(
            per_user,
            [fmt],
            exported_at=created_at,
            filters=extracted.filters.as_dict(),
            workers=workers,
        )
        for user_id, files in rendered:
            job = by_user[user_id]
            counts = {name: t.num_rows for name, t in per_user[user_id].items()}
            try:
                result = _write_and_verify(
                    engine,
                    storage,
                    keys,
                    job,
                    config_of[user_id],
                    files[fmt],
                    counts,
                    recipients.get(user_id),
                    created_at,
                    run_id,
                )
            except (BackupError, StorageError, KeyCustodyError, age.AgeError, OSError) as exc:
                fail(job, str(exc))
                continue
            outcome.completed.append(result)
            if on_user_done is not None:
                on_user_done(user_id, result, None)
    return outcome


def _write_and_verify(
    engine: sa.Engine,
    storage: ObjectStorage,
    keys: KeyVault,
    job: dict,
    config: BackupConfig,
    export: bytes,
    counts: dict[str, int],
    goalport_recipient: str | None,
    created_at: dt.datetime,
    run_id: str | None,
) -> BackupResult:
    user_id = job["userId"]
    archive, _manifest = build_backup_archive(
        user_id=user_id,
        created_at=created_at,
        fmt=config.format,
        export=export,
        row_counts=counts,
        include=config.include,
    )
    if config.encrypt:
        payload = age.encrypt(archive, recipients=[goalport_recipient, *config.recipients])
    else:
        payload = archive
    destination = _destination(config, storage)
    key = backup_key(user_id, created_at, config.encrypt)
    stored = destination.write_bytes(key, payload)
    try:
        verified = _restore_drill(destination, keys, key, config, user_id, counts)
    except (BackupError, StorageError, KeyCustodyError) as exc:
        destination.delete(key)
        raise BackupVerificationError(
            f"the restore drill failed, the unverified file was deleted: {exc}"
        ) from None
    verified_at = utc_now()
    next_at = next_backup_after(verified_at, config.frequency, config.timezone)
    records = sum(counts.values())
    with engine.begin() as conn:
        done = conn.execute(
            job_table.update()
            .where(
                job_table.c.id == job["id"],
                job_table.c.status == "processing",
                job_table.c.batchId == job["batchId"],
            )
            .values(
                status="completed",
                recordsProcessed=records,
                recordsTotal=records,
                fileUrl=stored.url,
                fileSizeBytes=stored.size,
                checksum="sha256:" + stored.sha256,
                completedAt=verified_at,
                errorMessage=None,
                runId=run_id,
            )
        )
        if done.rowcount != 1:
            raise BackupError(f"backup request {job['id']} was taken from batch {job['batchId']}")
        if config.id is not None:
            conn.execute(
                config_table.update()
                .where(
                    config_table.c.userId == user_id,
                    sa.or_(
                        config_table.c.lastBackupAt.is_(None),
                        config_table.c.lastBackupAt < created_at,
                    ),
                )
                .values(
                    lastBackupAt=created_at,
                    nextBackupAt=next_at,
                    lastVerifiedAt=verified_at,
                    lastVerifiedUrl=stored.url,
                    updatedAt=verified_at,
                )
            )
        record_audit(
            conn,
            user_id=user_id,
            operation="backup",
            operation_type=job["requestedBy"] or "backup",
            data_types=[t for t, n in counts.items() if n],
            record_count=records,
            actor=job["requestedBy"],
            details={
                "jobId": job["id"],
                "batchId": job["batchId"],
                "runId": run_id,
                "format": config.format,
                "fileUrl": stored.url,
                "fileSizeBytes": stored.size,
                "checksum": "sha256:" + stored.sha256,
                "encrypted": config.encrypt,
                "ownRecipients": len(config.recipients),
                "verifiedAt": verified_at.isoformat(),
                "verifiedRecords": verified.records,
            },
        )
    result = BackupResult(
        job_id=job["id"],
        user_id=user_id,
        url=stored.url,
        size=stored.size,
        sha256=stored.sha256,
        records=records,
        row_counts=counts,
        encrypted=config.encrypt,
        created_at=created_at,
        next_backup_at=next_at if config.id is not None else None,
    )
    try:
        result.retention_deleted = apply_retention(
            engine,
            destination,
            user_id,
            config.retention,
            newest_verified=key,
            timezone=config.timezone,
        )
    except (StorageError, OSError) as exc:
        log.warning("retention of %s's backups failed (nothing lost): %s", user_id, exc)
    return result


def _restore_drill(
    destination: ObjectStorage,
    keys: KeyVault,
    key: str,
    config: BackupConfig,
    user_id: str,
    counts: Mapping[str, int],
) -> OpenedBackup:
    """Read the file back from where it was stored and open it as a restore would."""
    data = destination.read_bytes(key)
    identities = [keys.identity(user_id)] if config.encrypt else []
    opened = open_backup(data, file_name=destination.object_url(key), identities=identities)
    if opened.user_id != user_id:
        raise BackupVerificationError(f"the backup read back is of {opened.user_id!r}")
    read_counts = {k: v for k, v in opened.row_counts.items() if v}
    if read_counts != {k: v for k, v in counts.items() if v}:
        raise BackupVerificationError(
            f"the backup read back holds {read_counts}, the database gave {dict(counts)}"
        )
    return opened


# ---------------------------------------------------------------- retention


def backups_to_delete(
    created: Sequence[dt.datetime], retention: Retention, timezone: str = "UTC"
) -> list[dt.datetime]:
    """Which of these backup times the policy lets go (newest first is kept first)."""
    ordered = sorted(set(created), reverse=True)
    keep: set[dt.datetime] = set()
    if retention.keep_last is not None:
        keep.update(ordered[: retention.keep_last])
    zone = ZoneInfo(timezone)
    tiers = (
        (retention.daily, lambda d: d.date()),
        (retention.weekly, lambda d: d.isocalendar()[:2]),
        (retention.monthly, lambda d: (d.year, d.month)),
    )
    for count, period in tiers:
        if not count:
            continue
        seen: list = []
        for moment in ordered:
            bucket = period(moment.astimezone(zone))
            if bucket in seen:
                continue
            if len(seen) == count:
                break
            seen.append(bucket)
            keep.add(moment)
    return [m for m in ordered if m not in keep]


def apply_retention(
    engine: sa.Engine,
    destination: ObjectStorage,
    user_id: str,
    retention: Retention,
    *,
    newest_verified: str,
    timezone: str = "UTC",
) -> list[str]:
    """Delete the user's backups the policy lets go, all older than `newest_verified` (a
    backup that has just passed its restore drill); returns the deleted URLs."""
    newest_time = backup_time_of(newest_verified)
    files = {}
    for key in destination.list(f"backups/{user_id}"):
        created = backup_time_of(key)
        if created is not None and posixpath.dirname(key) == f"backups/{user_id}":
            files[key] = created
    doomed_times = set(backups_to_delete(list(files.values()), retention, timezone))
    doomed = [
        k
        for k, t in files.items()
        if t in doomed_times and t < newest_time and k != newest_verified
    ]
    deleted = []
    for key in sorted(doomed):
        destination.delete(key)
        deleted.append(destination.object_url(key))
    if deleted:
        with engine.begin() as conn:
            conn.execute(
                job_table.update()
                .where(job_table.c.fileUrl.in_(deleted), job_table.c.status == "completed")
                .values(status="expired")
            )
            record_audit(
                conn,
                user_id=user_id,
                operation="backup_retention",
                operation_type="delete",
                record_count=len(deleted),
                details={
                    "deleted": deleted,
                    "retention": retention.as_dict(),
                    "newestVerified": destination.object_url(newest_verified),
                },
            )
    return deleted


# ---------------------------------------------------------------- listing


@dataclass(frozen=True)
class BackupFile:
    url: str
    key: str
    created_at: dt.datetime
    size: int
    encrypted: bool
    verified: bool  # passed its restore drill when written


def list_backups(
    engine: sa.Engine,
    storage: ObjectStorage,
    user_id: str,
    config: BackupConfig | None = None,
) -> list[BackupFile]:
    """The user's backup files at their destination, newest first."""
    config = config or get_backup_config(engine, user_id) or BackupConfig(user_id=user_id)
    destination = _destination(config, storage)
    keys = [k for k in destination.list(f"backups/{user_id}") if backup_time_of(k)]
    urls = [destination.object_url(k) for k in keys]
    with engine.connect() as conn:
        verified = set(
            conn.execute(
                sa.select(job_table.c.fileUrl).where(
                    job_table.c.userId == user_id,
                    job_table.c.exportType == BACKUP_EXPORT_TYPE,
                    job_table.c.status == "completed",
                    job_table.c.fileUrl.in_(urls),
                )
            ).scalars()
        )
    files = [
        BackupFile(
            url=url,
            key=key,
            created_at=backup_time_of(key),
            size=int(destination.info(key).get("size") or 0),
            encrypted=key.endswith(".age"),
            verified=url in verified,
        )
        for key, url in zip(keys, urls, strict=True)
    ]
    return sorted(files, key=lambda f: f.created_at, reverse=True)


def erase_user_backups(engine: sa.Engine, storage: ObjectStorage, user_id: str) -> int:
    """Delete every backup file of the user (main storage and their configured destination)
    and their configuration; returns the number of files deleted. For erasure, which also
    destroys the user's key so that copies elsewhere become unreadable."""
    config = get_backup_config(engine, user_id)
    places = [storage]
    if config is not None and config.destination_url:
        places.append(_destination(config, storage))
    deleted = sum(place.delete_prefix(f"backups/{user_id}") for place in places)
    delete_backup_config(engine, user_id)
    return deleted


# ---------------------------------------------------------------- passphrase exports


def write_passphrase_export(
    database: AppDatabase,
    storage: ObjectStorage,
    user_id: str,
    passphrase: str,
    *,
    fmt: str = "json",
    include: Sequence[str] | None = None,
    requested_by: str = "cli",
    work_factor: int = age.DEFAULT_WORK_FACTOR,
) -> BackupResult:
    """An on-demand backup encrypted with the user's passphrase (age scrypt), stored under
    exports/<user>/ and expiring like any export; verified with the same passphrase before
    it is recorded. The passphrase is used here and forgotten: never stored or logged."""
    from assets.exports.queue import export_expiry

    fmt = check_backup_format(fmt)
    if not passphrase:
        raise BackupError("the passphrase is empty")
    include = tuple(include) if include else None
    extracted = database.extract([user_id], ExtractFilter(modules=include))
    if user_id not in extracted.found_user_ids:
        raise BackupError(f"unknown user id: {user_id}")
    tables = extracted.per_user()[user_id]
    counts = {name: t.num_rows for name, t in tables.items()}
    created_at = utc_now()
    ((_uid, files),) = render_batch(
        {user_id: tables},
        [fmt],
        exported_at=created_at,
        filters=extracted.filters.as_dict(),
        workers=1,
    )
    archive, _ = build_backup_archive(
        user_id=user_id,
        created_at=created_at,
        fmt=fmt,
        export=files[fmt],
        row_counts=counts,
        include=include,
    )
    payload = age.encrypt(archive, passphrase=passphrase, work_factor=work_factor)
    stamp = created_at.strftime("%Y%m%dT%H%M%S%fZ")
    job_id = new_id("exp_")
    key = f"exports/{user_id}/goalport-backup-{stamp}-{job_id}.zip.age"
    stored = storage.write_bytes(key, payload)
    try:
        opened = open_backup(
            storage.read_bytes(key),
            file_name=stored.url,
            passphrase=passphrase,
            max_work_factor=max(work_factor, age.DEFAULT_MAX_WORK_FACTOR),
        )
        if opened.records != sum(counts.values()):
            raise BackupVerificationError("the export read back does not hold every row")
    except BackupError:
        storage.delete(key)
        raise
    now = utc_now()
    records = sum(counts.values())
    with database.engine.begin() as conn:
        conn.execute(
            job_table.insert().values(
                id=job_id,
                userId=user_id,
                exportType=BACKUP_EXPORT_TYPE,
                format=f"backup-{fmt}",
                filters=json.dumps(extracted.filters.as_dict()),
                status="completed",
                requestedBy=requested_by,
                recordsProcessed=records,
                recordsTotal=records,
                fileUrl=stored.url,
                fileSizeBytes=stored.size,
                checksum="sha256:" + stored.sha256,
                attempts=1,
                createdAt=created_at,
                startedAt=created_at,
                completedAt=now,
                expiresAt=now + export_expiry(),
            )
        )
        record_audit(
            conn,
            user_id=user_id,
            operation="backup",
            operation_type="passphrase_export",
            data_types=[t for t, n in counts.items() if n],
            record_count=records,
            actor=requested_by,
            details={
                "jobId": job_id,
                "format": fmt,
                "fileUrl": stored.url,
                "fileSizeBytes": stored.size,
                "checksum": "sha256:" + stored.sha256,
                "encrypted": "passphrase",
            },
        )
    return BackupResult(
        job_id=job_id,
        user_id=user_id,
        url=stored.url,
        size=stored.size,
        sha256=stored.sha256,
        records=records,
        row_counts=counts,
        encrypted=True,
        created_at=created_at,
        next_backup_at=None,
    )
