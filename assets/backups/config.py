"""A user's backup configuration (`BackupConfig`): what to back up, in which format, where,
how often and how long to keep it; the check of every setting; loading, saving and
deleting the row; and when the next backup is.

**When the next backup is** (`next_backup_after`). After a backup is written AND verified,
`nextBackupAt` becomes the first local 02:00 in the user's time zone
(`BackupConfig.timezone`) that is at least half a period after that backup: daily, any day;
weekly, a Monday; monthly, the 1st. Being computed from the backup's own time (not
incremented from the old value), a schedule that missed ticks, or a daemon that was down
for a week, catches up with ONE backup, not one per missed period. On the night clocks
spring forward, 02:00 does not exist and the backup is due at 03:00 local; on the night
they fall back, at the first 02:00. The rule lives here, beside the frequency and time
zone it reads, because saving a new frequency or time zone moves `nextBackupAt` too.

The other modules of `assets.backups` build on this one, which imports none of them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from assets.formats.registry import DATA_FORMATS
from resources import age, schema
from resources.audit import new_id, record_audit, utc_now
from resources.database import ExtractFilter, transaction
from resources.destinations.errors import DestinationError
from resources.destinations.urls import allowed_destination
from resources.schema import as_utc
from resources.schema import backup_config as config_table

FREQUENCIES = ("daily", "weekly", "monthly")
# Formats the importer reads back exactly (the HTML report is for people, not restores).
BACKUP_FORMATS = DATA_FORMATS
BACKUP_LOCAL_TIME = dt.time(2, 0)
# The next backup is at least this long after the last one, so a late or catch-up backup
# is not followed by another one an hour later.
MIN_GAP = {
    "daily": dt.timedelta(hours=12),
    "weekly": dt.timedelta(days=3, hours=12),
    "monthly": dt.timedelta(days=14),
}
DEFAULT_RETENTION = {"keep_last": 7}
# The `DataExportJob.exportType` of every backup row: scheduled, on demand, passphrase.
BACKUP_EXPORT_TYPE = "backup"


class BackupError(RuntimeError):
    """A backup cannot be configured, written, opened or verified; the message says why."""


class BackupConfigError(BackupError, ValueError):
    """A backup configuration value is wrong; the message names the option."""


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
            last_backup_at=as_utc(row["lastBackupAt"]),
            next_backup_at=as_utc(row["nextBackupAt"]),
            last_verified_at=as_utc(row["lastVerifiedAt"]),
            last_verified_url=row["lastVerifiedUrl"],
        )

    @property
    def extract_filter(self) -> ExtractFilter:
        return ExtractFilter(modules=self.include)

    @property
    def job_format(self) -> str:
        """The `DataExportJob.format` of this config's backups."""
        return backup_job_format(self.format)

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


def backup_job_format(fmt: str) -> str:
    """The `DataExportJob.format` of a backup in `fmt`. Never a plain export format, so the
    generic export claimer leaves backup rows to the backup path."""
    return f"backup-{fmt}"


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
    """A destination URL users may choose here (`resources.destinations.urls`), or None for
    the main storage. Whether it answers is tested where the credentials are given."""
    url = (url or "").strip()
    if not url:
        return None
    try:
        return allowed_destination(url).url
    except DestinationError as exc:
        raise BackupConfigError(f"destination: {exc}") from None


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
    engine: sa.Engine | sa.Connection, user_id: str, *, actor: str | None = None, **changes
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
    with transaction(engine) as conn:
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
        saved = (
            conn.execute(sa.select(config_table).where(config_table.c.userId == user_id))
            .mappings()
            .one()
        )
    return BackupConfig.from_row(saved)


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


def load_configs(engine: sa.Engine, user_ids: Sequence[str]) -> dict[str, BackupConfig]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(config_table).where(config_table.c.userId.in_(list(user_ids)))
        ).mappings()
        return {r["userId"]: BackupConfig.from_row(r) for r in rows}


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
    earliest = as_utc(moment) + MIN_GAP[frequency]
    day = earliest.astimezone(zone).date()
    while True:
        if _slot_matches(day, frequency):
            # A nonexistent local time (clocks spring forward) resolves to the moment after
            # the gap; an ambiguous one (clocks fall back) to its first occurrence.
            slot = dt.datetime.combine(day, BACKUP_LOCAL_TIME, tzinfo=zone).astimezone(dt.UTC)
            if slot >= earliest:
                return slot
        day += dt.timedelta(days=1)
