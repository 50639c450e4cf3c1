"""The database schema goalport reads and owns, as SQLAlchemy Core metadata.

The app's tables follow its Prisma naming (PascalCase tables, camelCase columns, text ids).
Every app table carries `userId` (denormalised where the app reaches the user through a
parent), so one query per table per batch of users selects exactly their rows and nothing
else, and erasure can prove that no row is left.

The Arrow schema of each app table is derived from the same metadata, so extraction,
renderers and importers agree on one set of types: exact decimals, UTC timestamps, dates.
The conventions every reader and writer of rows shares are here too, written once: which
column names a row's user (`owner_column`) and how a stored timestamp reads (`as_utc`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import overload

import pyarrow as pa
import sqlalchemy as sa

metadata = sa.MetaData()


def owner_column(table_name: str) -> str:
    """The column naming the user a row belongs to: `id` in `User`, `userId` elsewhere."""
    return "id" if table_name == "User" else "userId"


@overload
def as_utc(value: dt.datetime) -> dt.datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A stored timestamp, aware: every timestamp goalport stores is UTC, and SQLite gives
    them back naive. An aware value is returned as it is."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user_fk() -> sa.Column:
    return sa.Column(
        "userId", sa.Text, sa.ForeignKey("User.id", ondelete="CASCADE"), nullable=False
    )


# ---------------------------------------------------------------- the app's tables

user = sa.Table(
    "User",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    # The app's User: first and last name (until migration 0007_user_names one `name`).
    sa.Column("firstName", sa.Text),
    sa.Column("lastName", sa.Text),
    sa.Column("timezone", sa.Text),
    _ts("createdAt"),
    _ts("updatedAt"),
)

module = sa.Table(
    "Module",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("kind", sa.Text, nullable=False),  # fitness, learning, bible, work, personal, ...
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("isActive", sa.Boolean, nullable=False),
    _ts("createdAt"),
)

goal = sa.Table(
    "Goal",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("moduleId", sa.Text, sa.ForeignKey("Module.id", ondelete="SET NULL")),
    sa.Column("parentGoalId", sa.Text, sa.ForeignKey("Goal.id", ondelete="CASCADE")),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("priority", sa.Integer, nullable=False),  # 1 (low) .. 5 (urgent)
    sa.Column("difficulty", sa.Integer),  # 1 .. 5
    sa.Column("targetDate", sa.Date),
    sa.Column("isCompleted", sa.Boolean, nullable=False),
    _ts("completedAt", nullable=True),
    _ts("createdAt"),
    _ts("updatedAt"),
)

progress = sa.Table(
    "Progress",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("goalId", sa.Text, sa.ForeignKey("Goal.id", ondelete="CASCADE"), nullable=False),
    sa.Column("value", sa.Numeric(12, 2), nullable=False),
    sa.Column("maxValue", sa.Numeric(12, 2)),
    sa.Column("notes", sa.Text),
    _ts("recordedAt"),
)

achievement = sa.Table(
    "Achievement",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("goalId", sa.Text, sa.ForeignKey("Goal.id", ondelete="SET NULL")),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("points", sa.Integer, nullable=False),
    _ts("earnedAt"),
)

user_setting = sa.Table(
    "UserSetting",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("value", sa.Text),  # JSON-encoded
    _ts("updatedAt"),
    sa.UniqueConstraint("userId", "key"),
)

bible_reading_plan = sa.Table(
    "BibleReadingPlan",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("startDate", sa.Date, nullable=False),
    sa.Column("endDate", sa.Date),
    _ts("createdAt"),
)

bible_reading = sa.Table(
    "BibleReading",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column(
        "planId", sa.Text, sa.ForeignKey("BibleReadingPlan.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("book", sa.Text, nullable=False),
    sa.Column("chapter", sa.Integer, nullable=False),
    sa.Column("verseStart", sa.Integer),
    sa.Column("verseEnd", sa.Integer),
    sa.Column("scheduledDate", sa.Date),
    _ts("completedAt", nullable=True),
)

bible_study_note = sa.Table(
    "BibleStudyNote",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("readingId", sa.Text, sa.ForeignKey("BibleReading.id", ondelete="SET NULL")),
    sa.Column("book", sa.Text, nullable=False),
    sa.Column("chapter", sa.Integer, nullable=False),
    sa.Column("verse", sa.Integer),
    sa.Column("title", sa.Text),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("tags", sa.Text),  # comma-separated
    _ts("createdAt"),
    _ts("updatedAt"),
)

work_project = sa.Table(
    "WorkProject",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("goalId", sa.Text, sa.ForeignKey("Goal.id", ondelete="SET NULL")),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("status", sa.Text, nullable=False),  # planned, active, on_hold, done
    sa.Column("budget", sa.Numeric(12, 2)),
    sa.Column("startDate", sa.Date),
    sa.Column("dueDate", sa.Date),
    _ts("createdAt"),
    _ts("updatedAt"),
)

work_task = sa.Table(
    "WorkTask",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column(
        "projectId", sa.Text, sa.ForeignKey("WorkProject.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("notes", sa.Text),
    sa.Column("status", sa.Text, nullable=False),  # todo, doing, done
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("estimateHours", sa.Numeric(6, 2)),
    _ts("dueAt", nullable=True),
    _ts("completedAt", nullable=True),
    _ts("createdAt"),
)

# Parents before children: the order to insert in, and the reverse order to delete in.
APP_TABLES: tuple[sa.Table, ...] = (
    user,
    module,
    goal,
    progress,
    achievement,
    user_setting,
    bible_reading_plan,
    bible_reading,
    bible_study_note,
    work_project,
    work_task,
)
APP_TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in APP_TABLES)

# Which module kind a table belongs to, for selective exports (`--modules bible,work`).
# Tables not listed belong to every selection.
MODULE_TABLES: dict[str, tuple[str, ...]] = {
    "bible": ("BibleReadingPlan", "BibleReading", "BibleStudyNote"),
    "work": ("WorkProject", "WorkTask"),
}

# The column each activity table's date-range filter applies to (`--since/--until`). The
# structure (user, modules, goals, plans, projects) is never cut by dates, so that every
# reference in an export resolves.
DATE_COLUMNS: dict[str, str] = {
    "Progress": "recordedAt",
    "Achievement": "earnedAt",
    "BibleReading": "scheduledDate",
    "BibleStudyNote": "createdAt",
    "WorkTask": "createdAt",
}

for _t in APP_TABLES:
    sa.Index(f"ix_{_t.name}_userId", _t.c[owner_column(_t.name)])
    for _fk in _t.foreign_keys:
        if _fk.parent.name != "userId":
            sa.Index(f"ix_{_t.name}_{_fk.parent.name}", _fk.parent)

# ---------------------------------------------------------------- goalport's own tables

data_export_job = sa.Table(
    "DataExportJob",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False, index=True),
    sa.Column("exportType", sa.Text, nullable=False),  # full, selective, template, backup, gdpr
    sa.Column("format", sa.Text, nullable=False),
    sa.Column("filters", sa.Text),  # JSON: modules, since, until
    sa.Column(
        "status", sa.Text, nullable=False, index=True
    ),  # pending, processing, completed, failed, expired
    sa.Column("batchId", sa.Text, index=True),
    sa.Column("runId", sa.Text),
    sa.Column("requestedBy", sa.Text),
    sa.Column("recordsProcessed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("recordsTotal", sa.Integer),
    sa.Column("fileUrl", sa.Text),
    sa.Column("fileSizeBytes", sa.BigInteger),
    sa.Column("checksum", sa.Text),
    sa.Column("completeness", sa.Text),  # JSON: the completeness check's result
    sa.Column("errorMessage", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("createdAt"),
    _ts("startedAt", nullable=True),
    _ts("completedAt", nullable=True),
    _ts("expiresAt", nullable=True),
    _ts("heartbeatAt", nullable=True),  # renewed by the claimant while it works
)

data_import_job = sa.Table(
    "DataImportJob",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False, index=True),
    sa.Column(
        "status", sa.Text, nullable=False, index=True
    ),  # pending, staged, previewed, applying, applied, failed, undone
    sa.Column("sourceApp", sa.Text),  # goalport, todoist, notion, trello, ...
    sa.Column("format", sa.Text),
    sa.Column("fileName", sa.Text),
    sa.Column("fileUrl", sa.Text),
    sa.Column("fileChecksum", sa.Text),
    sa.Column("mode", sa.Text, nullable=False, server_default="merge"),  # merge, replace, append
    sa.Column("conflictPolicy", sa.Text, nullable=False, server_default="fail"),
    sa.Column("modules", sa.Text),  # JSON list
    sa.Column("previewData", sa.Text),  # JSON
    sa.Column("planFingerprint", sa.Text),  # the user's data as previewed
    sa.Column("recordsTotal", sa.Integer),
    sa.Column("recordsImported", sa.Integer, nullable=False, server_default="0"),
    sa.Column("conflictsDetected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errorMessage", sa.Text),
    sa.Column("requestedBy", sa.Text),
    _ts("createdAt"),
    _ts("completedAt", nullable=True),
)

goal_template = sa.Table(
    "GoalTemplate",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("templateKey", sa.Text, nullable=False, index=True),  # shared by all versions
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("authorId", sa.Text, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("tags", sa.Text),  # JSON list
    sa.Column("visibility", sa.Text, nullable=False, server_default="private"),  # private, public
    sa.Column("content", sa.Text, nullable=False),  # the template file (JSON)
    sa.Column("downloadCount", sa.Integer, nullable=False, server_default="0"),
    sa.Column("ratingSum", sa.Integer, nullable=False, server_default="0"),
    sa.Column("ratingCount", sa.Integer, nullable=False, server_default="0"),
    _ts("createdAt"),
    _ts("updatedAt"),
    sa.UniqueConstraint("templateKey", "version"),
)

backup_config = sa.Table(
    "BackupConfig",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False, unique=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("frequency", sa.Text, nullable=False),  # daily, weekly, monthly
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("include", sa.Text),  # JSON list of modules, null = everything
    sa.Column("format", sa.Text, nullable=False, server_default="json"),
    sa.Column("destinationUrl", sa.Text),
    sa.Column("encrypt", sa.Boolean, nullable=False),
    sa.Column("recipients", sa.Text),  # JSON list of the user's own age public keys
    sa.Column("retention", sa.Text),  # JSON: {"keep_last": N} or tiers
    _ts("lastBackupAt", nullable=True),
    _ts("nextBackupAt", nullable=True),
    _ts("lastVerifiedAt", nullable=True),
    sa.Column("lastVerifiedUrl", sa.Text),
    _ts("createdAt"),
    _ts("updatedAt"),
)

data_audit_log = sa.Table(
    "DataAuditLog",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, index=True),  # null once the user is erased
    sa.Column("subjectRef", sa.Text, index=True),  # pseudonymous: HMAC of the user id
    sa.Column("operation", sa.Text, nullable=False),  # export, import, backup, erase, template, ...
    sa.Column("operationType", sa.Text),
    sa.Column("dataTypes", sa.Text),  # JSON list of table names
    sa.Column("recordCount", sa.Integer),
    sa.Column("actor", sa.Text),
    sa.Column("details", sa.Text),  # JSON; never file contents or secrets
    _ts("createdAt"),
    sa.Column("ipAddress", sa.Text),  # of an API call; null once the user is erased
    sa.Column("userAgent", sa.Text),
)

import_change = sa.Table(
    "ImportChange",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("importJobId", sa.Text, nullable=False, index=True),
    sa.Column("userId", sa.Text, nullable=False, index=True),
    sa.Column("tableName", sa.Text, nullable=False),
    # one changed row (before migration 0009_import_change_batches) ...
    sa.Column("rowId", sa.Text),
    sa.Column("action", sa.Text, nullable=False),  # create, update, delete
    sa.Column("before", sa.Text),  # JSON: the row, or the batch's rows as an array
    sa.Column("after", sa.Text),  # JSON: the row, or the batch's rows as an array
    _ts("createdAt"),
    # ... or a batch of them: their ids as a JSON array (assets/imports/change_journal.py)
    sa.Column("rowIds", sa.Text),
    sa.Column("rowCount", sa.Integer, nullable=False, server_default="1"),
)

external_ref = sa.Table(
    "ExternalRef",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False, index=True),
    sa.Column("sourceApp", sa.Text, nullable=False),
    sa.Column("externalId", sa.Text, nullable=False),
    sa.Column("tableName", sa.Text, nullable=False),
    sa.Column("localId", sa.Text, nullable=False),
    sa.Column("extra", sa.Text),  # JSON: source fields with no place in the app
    _ts("createdAt"),
    _ts("updatedAt"),
    sa.UniqueConstraint("userId", "sourceApp", "tableName", "externalId"),
)

erasure_request = sa.Table(
    "ErasureRequest",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, index=True),  # cleared when the erasure completes
    sa.Column("subjectRef", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # pending, cancelled, completed, failed
    _ts("requestedAt"),
    _ts("notBefore"),
    _ts("completedAt", nullable=True),
    sa.Column("receipt", sa.Text),  # JSON, no personal data
    sa.Column("errorMessage", sa.Text),
    # executions that failed so far; a failed request is retried after a back-off that
    # doubles with each (assets.gdpr.erasure)
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
)

user_key = sa.Table(
    "UserKey",
    metadata,
    sa.Column("userId", sa.Text, primary_key=True),
    sa.Column("recipient", sa.Text, nullable=False),  # age1... public key
    sa.Column("wrappedIdentity", sa.LargeBinary, nullable=False),  # AES-GCM under the master key
    sa.Column("masterKeyId", sa.Text, nullable=False),
    _ts("createdAt"),
)

notification_outbox = sa.Table(
    "NotificationOutbox",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, index=True),  # NULL: about no one (an erasure completed)
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON
    sa.Column("status", sa.Text, nullable=False),  # pending, sent, failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lastError", sa.Text),
    _ts("createdAt"),
    _ts("sentAt", nullable=True),
    # When the next attempt is due (the queued time, then after each failure its back-off);
    # the delivery sensor finds due rows by the index below.
    sa.Column(
        "nextAttemptAt",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.text("CURRENT_TIMESTAMP"),
    ),
    sa.Index("ix_NotificationOutbox_due", "status", "nextAttemptAt"),
)

# The erasure fence (resources/erasure_fence.py): one row per erased user, keyed by the audit
# pseudonym, never the id. Every writer checks it in its final transaction.
erasure_tombstone = sa.Table(
    "ErasureTombstone",
    metadata,
    sa.Column("subjectRef", sa.Text, primary_key=True),
    _ts("erasedAt"),
)

# Every place goalport wrote a file of a user outside their folders of the main storage
# (`--out`, the bulk job's out_url, backup destinations) and its GDPR bundles: erasure
# deletes from each, and expiry deletes those past `expiresAt`. Keyed by pseudonym, so that
# a re-run erasure finds them after the user's rows are gone.
file_location = sa.Table(
    "FileLocation",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("subjectRef", sa.Text, nullable=False, index=True),
    sa.Column("storageUrl", sa.Text, nullable=False),  # the storage's root URL
    sa.Column("key", sa.Text, nullable=False),  # the file's key below it
    sa.Column("kind", sa.Text, nullable=False),  # export, gdpr-bundle, backup
    _ts("createdAt"),
    _ts("expiresAt", nullable=True),
)

# The credentials of a user's own backup destinations (resources/destinations/credentials.py):
# a JSON mapping wrapped AES-256-GCM under the master key, never in clear. Keyed by pseudonym
# like FileLocation, so an erasure can still open the destination to empty it after the
# user's rows are gone; it deletes them once nothing of the user is left there.
destination_credential = sa.Table(
    "DestinationCredential",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("subjectRef", sa.Text, nullable=False, index=True),
    sa.Column("destinationUrl", sa.Text, nullable=False),
    sa.Column("wrappedSecrets", sa.LargeBinary, nullable=False),
    sa.Column("masterKeyId", sa.Text, nullable=False),
    _ts("createdAt"),
    _ts("updatedAt"),
    sa.UniqueConstraint("subjectRef", "destinationUrl", name="uq_DestinationCredential_place"),
)

# Every goalport table that can hold a user's personal data, by the column naming the user.
OWN_TABLES_WITH_USER: tuple[sa.Table, ...] = (
    data_export_job,
    data_import_job,
    backup_config,
    data_audit_log,
    import_change,
    external_ref,
    user_key,
    notification_outbox,
)

# ---------------------------------------------------------------- the HTTP API's tables

api_token = sa.Table(
    "ApiToken",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False, index=True),
    sa.Column("name", sa.Text),
    sa.Column("tokenHash", sa.Text, nullable=False, unique=True),  # SHA-256; never the token
    sa.Column("scopes", sa.Text, nullable=False),  # comma-separated: exports,imports,...
    _ts("createdAt"),
    _ts("expiresAt", nullable=True),
    _ts("revokedAt", nullable=True),
    _ts("lastUsedAt", nullable=True),
)

# One fixed-window request counter per credential (a token id, or "service"): no user id.
api_rate_limit = sa.Table(
    "ApiRateLimit",
    metadata,
    sa.Column("bucket", sa.Text, primary_key=True),
    _ts("windowStart"),
    sa.Column("count", sa.Integer, nullable=False),
)

OWN_TABLES_WITH_USER += (api_token,)

# ---------------------------------------------------------------- the portal's tables

# A sign-in link (kind "link", consumed once: usedAt) or the session it opened (kind
# "session": the SHA-256 of its cookie, never the cookie; endedAt on sign-out).
portal_session = sa.Table(
    "PortalSession",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False, index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("secretHash", sa.Text, unique=True),
    _ts("createdAt"),
    _ts("expiresAt"),
    _ts("usedAt", nullable=True),
    _ts("endedAt", nullable=True),
)

OWN_TABLES_WITH_USER += (portal_session,)

# An encrypted export request's encryption (assets/exports/encryption.py): the recipient
# (a public key), or the passphrase wrapped under the master key, wiped when the job ends.
export_encryption = sa.Table(
    "ExportEncryption",
    metadata,
    sa.Column("jobId", sa.Text, primary_key=True),  # the DataExportJob it encrypts
    sa.Column("userId", sa.Text, nullable=False, index=True),
    sa.Column("kind", sa.Text, nullable=False),  # passphrase, recipient
    sa.Column("recipient", sa.Text),  # age1... public key
    sa.Column("wrappedPassphrase", sa.LargeBinary),  # AES-GCM; NULL once the job has ended
    sa.Column("masterKeyId", sa.Text),
    _ts("createdAt"),
)
OWN_TABLES_WITH_USER += (export_encryption,)

# ---------------------------------------------------------------- Arrow types

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def arrow_type(column: sa.Column) -> pa.DataType:
    """The Arrow type that carries this column's values exactly."""
    t = column.type
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Float):
        return pa.decimal128(t.precision, t.scale)
    if isinstance(t, sa.DateTime):
        return UTC_TIMESTAMP
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.BigInteger):
        return pa.int64()
    if isinstance(t, sa.Integer):
        return pa.int32()
    if isinstance(t, sa.LargeBinary):
        return pa.binary()
    return pa.string()


def arrow_schema(table: sa.Table | str) -> pa.Schema:
    """The Arrow schema of a table, with nullability from the database."""
    if isinstance(table, str):
        table = metadata.tables[table]
    return pa.schema(
        [pa.field(c.name, arrow_type(c), nullable=bool(c.nullable)) for c in table.columns]
    )


APP_ARROW_SCHEMAS: dict[str, pa.Schema] = {t.name: arrow_schema(t) for t in APP_TABLES}


def empty_table(schema: pa.Schema) -> pa.Table:
    """An empty table of `schema`. pyarrow's `Schema.empty_table()` builds each column
    through Python (about 10 µs a column, 100 µs a table); this costs 2 µs, which matters
    where every user of a batch has several empty tables."""
    return pa.Table.from_batches([], schema=schema)


def empty_app_table(name: str) -> pa.Table:
    """An empty Arrow table of the app table `name`, typed."""
    return empty_table(APP_ARROW_SCHEMAS[name])


def table_or_empty(tables, name: str) -> pa.Table:
    """`tables[name]`, or an empty app table `name` when `tables` has none."""
    table = tables.get(name)
    return empty_app_table(name) if table is None else table


def empty_app_tables() -> dict[str, pa.Table]:
    """One empty Arrow table per app table, typed: what a user with no data exports."""
    return {name: empty_table(schema) for name, schema in APP_ARROW_SCHEMAS.items()}


def rows_to_arrow(table: sa.Table, rows: Sequence[Sequence]) -> pa.Table:
    """Rows read through SQLAlchemy as an Arrow table of `table`'s schema, naive timestamps
    (SQLite's) taken as UTC."""
    target = APP_ARROW_SCHEMAS.get(table.name)
    if target is None:
        target = arrow_schema(table)
    columns: list[Sequence] = list(zip(*rows, strict=True)) if rows else [() for _ in target]
    arrays = []
    for values, f in zip(columns, target, strict=True):
        if pa.types.is_timestamp(f.type):
            values = [as_utc(v) if isinstance(v, dt.datetime) else v for v in values]
        arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=target)


# ---------------------------------------------------------------- users' cloud drives

# A started OAuth connection (resources/destinations/oauth.py): the state is kept only as
# its SHA-256, the PKCE verifier only wrapped under the master key; used once, short-lived.
oauth_state = sa.Table(
    "OAuthState",
    metadata,
    sa.Column("stateHash", sa.Text, primary_key=True),
    _user_fk(),
    sa.Column("provider", sa.Text, nullable=False),  # dropbox | gdrive | onedrive
    sa.Column("destinationUrl", sa.Text, nullable=False),
    sa.Column("redirectUri", sa.Text, nullable=False),
    sa.Column("wrappedVerifier", sa.LargeBinary, nullable=False),
    sa.Column("masterKeyId", sa.Text, nullable=False),
    _ts("createdAt"),
    _ts("expiresAt"),
    sa.Index("ix_OAuthState_userId", "userId"),
)
OWN_TABLES_WITH_USER += (oauth_state,)
# ---------------------------------------------------------------- sync across devices
# Written by the app tables' triggers (migration 0008_sync) and by assets/sync: each live
# app row's latest change (its `seq` is the row's version), tombstones of deleted rows, the
# row images a three-way merge reads, the user's devices and what each pushed change got.

sync_change = sa.Table(
    "SyncChange",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("tableName", sa.Text, primary_key=True),
    sa.Column("rowId", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False),
    _ts("changedAt"),
    sa.Index("ix_SyncChange_userId_seq", "userId", "seq"),
)

sync_tombstone = sa.Table(
    "SyncTombstone",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("tableName", sa.Text, nullable=False),
    sa.Column("rowId", sa.Text, nullable=False),
    sa.Column("userId", sa.Text, nullable=False),
    _ts("changedAt"),
    sa.Index("ix_SyncTombstone_userId_seq", "userId", "seq"),
    sa.Index("ix_SyncTombstone_row", "tableName", "rowId"),
)

sync_row_history = sa.Table(
    "SyncRowHistory",
    metadata,
    sa.Column("tableName", sa.Text, primary_key=True),
    sa.Column("rowId", sa.Text, primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True),  # the row's seq this image was
    sa.Column("userId", sa.Text, nullable=False, index=True),
    sa.Column("image", sa.Text, nullable=False),  # JSON of the row at that version
    _ts("savedAt"),
    sa.Index("ix_SyncRowHistory_savedAt", "savedAt"),
)

sync_device = sa.Table(
    "SyncDevice",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False),
    sa.Column("deviceId", sa.Text, nullable=False),  # the device's own name for itself
    sa.Column("name", sa.Text),
    sa.Column("lastCursor", sa.BigInteger),
    _ts("createdAt"),
    _ts("lastSeenAt"),
    _ts("revokedAt", nullable=True),
    sa.UniqueConstraint("userId", "deviceId"),
)

sync_push_receipt = sa.Table(
    "SyncPushReceipt",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False),
    sa.Column("deviceId", sa.Text, nullable=False),
    sa.Column("changeId", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),  # JSON: what the change got
    _ts("createdAt"),
    sa.UniqueConstraint("userId", "deviceId", "changeId"),
    sa.Index("ix_SyncPushReceipt_createdAt", "createdAt"),
)

sync_state = sa.Table(
    "SyncState",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("purgedThrough", sa.BigInteger, nullable=False),  # the log's horizon (a seq)
    sa.Column("lastSeq", sa.BigInteger, nullable=False),  # SQLite's seq counter
)

# Deleted with the user by erasure, after the app rows (whose deletes leave tombstones here).
OWN_TABLES_WITH_USER += (
    sync_change,
    sync_tombstone,
    sync_row_history,
    sync_device,
    sync_push_receipt,
)
