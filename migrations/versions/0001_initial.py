"""initial schema: the app tables and goalport tables

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "BackupConfig",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("frequency", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), server_default="UTC", nullable=False),
        sa.Column("include", sa.Text(), nullable=True),
        sa.Column("format", sa.Text(), server_default="json", nullable=False),
        sa.Column("destinationUrl", sa.Text(), nullable=True),
        sa.Column("encrypt", sa.Boolean(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=True),
        sa.Column("retention", sa.Text(), nullable=True),
        sa.Column("lastBackupAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nextBackupAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lastVerifiedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lastVerifiedUrl", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("userId"),
    )
    op.create_table(
        "DataAuditLog",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=True),
        sa.Column("subjectRef", sa.Text(), nullable=True),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("operationType", sa.Text(), nullable=True),
        sa.Column("dataTypes", sa.Text(), nullable=True),
        sa.Column("recordCount", sa.Integer(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("DataAuditLog", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_DataAuditLog_subjectRef"), ["subjectRef"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_DataAuditLog_userId"), ["userId"], unique=False)

    op.create_table(
        "DataExportJob",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("exportType", sa.Text(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("batchId", sa.Text(), nullable=True),
        sa.Column("runId", sa.Text(), nullable=True),
        sa.Column("requestedBy", sa.Text(), nullable=True),
        sa.Column("recordsProcessed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("recordsTotal", sa.Integer(), nullable=True),
        sa.Column("fileUrl", sa.Text(), nullable=True),
        sa.Column("fileSizeBytes", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.Text(), nullable=True),
        sa.Column("completeness", sa.Text(), nullable=True),
        sa.Column("errorMessage", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("startedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expiresAt", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("DataExportJob", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_DataExportJob_batchId"), ["batchId"], unique=False)
        batch_op.create_index(batch_op.f("ix_DataExportJob_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_DataExportJob_userId"), ["userId"], unique=False)

    op.create_table(
        "DataImportJob",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("sourceApp", sa.Text(), nullable=True),
        sa.Column("format", sa.Text(), nullable=True),
        sa.Column("fileName", sa.Text(), nullable=True),
        sa.Column("fileUrl", sa.Text(), nullable=True),
        sa.Column("fileChecksum", sa.Text(), nullable=True),
        sa.Column("mode", sa.Text(), server_default="merge", nullable=False),
        sa.Column("conflictPolicy", sa.Text(), server_default="fail", nullable=False),
        sa.Column("modules", sa.Text(), nullable=True),
        sa.Column("previewData", sa.Text(), nullable=True),
        sa.Column("planFingerprint", sa.Text(), nullable=True),
        sa.Column("recordsTotal", sa.Integer(), nullable=True),
        sa.Column("recordsImported", sa.Integer(), server_default="0", nullable=False),
        sa.Column("conflictsDetected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("errorMessage", sa.Text(), nullable=True),
        sa.Column("requestedBy", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completedAt", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("DataImportJob", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_DataImportJob_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_DataImportJob_userId"), ["userId"], unique=False)

    op.create_table(
        "ErasureRequest",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=True),
        sa.Column("subjectRef", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("requestedAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notBefore", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.Column("errorMessage", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ErasureRequest", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ErasureRequest_userId"), ["userId"], unique=False)

    op.create_table(
        "ExternalRef",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("sourceApp", sa.Text(), nullable=False),
        sa.Column("externalId", sa.Text(), nullable=False),
        sa.Column("tableName", sa.Text(), nullable=False),
        sa.Column("localId", sa.Text(), nullable=False),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("userId", "sourceApp", "tableName", "externalId"),
    )
    with op.batch_alter_table("ExternalRef", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ExternalRef_userId"), ["userId"], unique=False)

    op.create_table(
        "GoalTemplate",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("templateKey", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("authorId", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("visibility", sa.Text(), server_default="private", nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("downloadCount", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ratingSum", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ratingCount", sa.Integer(), server_default="0", nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("templateKey", "version"),
    )
    with op.batch_alter_table("GoalTemplate", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_GoalTemplate_authorId"), ["authorId"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_GoalTemplate_templateKey"), ["templateKey"], unique=False
        )

    op.create_table(
        "ImportChange",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("importJobId", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("tableName", sa.Text(), nullable=False),
        sa.Column("rowId", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ImportChange", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ImportChange_importJobId"), ["importJobId"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ImportChange_userId"), ["userId"], unique=False)

    op.create_table(
        "NotificationOutbox",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lastError", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sentAt", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("NotificationOutbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_NotificationOutbox_userId"), ["userId"], unique=False)

    op.create_table(
        "User",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("timezone", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    with op.batch_alter_table("User", schema=None) as batch_op:
        batch_op.create_index("ix_User_userId", ["id"], unique=False)

    op.create_table(
        "UserKey",
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("wrappedIdentity", sa.LargeBinary(), nullable=False),
        sa.Column("masterKeyId", sa.Text(), nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("userId"),
    )
    op.create_table(
        "BibleReadingPlan",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("startDate", sa.Date(), nullable=False),
        sa.Column("endDate", sa.Date(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("BibleReadingPlan", schema=None) as batch_op:
        batch_op.create_index("ix_BibleReadingPlan_userId", ["userId"], unique=False)

    op.create_table(
        "Module",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("isActive", sa.Boolean(), nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("Module", schema=None) as batch_op:
        batch_op.create_index("ix_Module_userId", ["userId"], unique=False)

    op.create_table(
        "UserSetting",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("userId", "key"),
    )
    with op.batch_alter_table("UserSetting", schema=None) as batch_op:
        batch_op.create_index("ix_UserSetting_userId", ["userId"], unique=False)

    op.create_table(
        "BibleReading",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("planId", sa.Text(), nullable=False),
        sa.Column("book", sa.Text(), nullable=False),
        sa.Column("chapter", sa.Integer(), nullable=False),
        sa.Column("verseStart", sa.Integer(), nullable=True),
        sa.Column("verseEnd", sa.Integer(), nullable=True),
        sa.Column("scheduledDate", sa.Date(), nullable=True),
        sa.Column("completedAt", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["planId"], ["BibleReadingPlan.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("BibleReading", schema=None) as batch_op:
        batch_op.create_index("ix_BibleReading_userId", ["userId"], unique=False)

    op.create_table(
        "Goal",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("moduleId", sa.Text(), nullable=True),
        sa.Column("parentGoalId", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("difficulty", sa.Integer(), nullable=True),
        sa.Column("targetDate", sa.Date(), nullable=True),
        sa.Column("isCompleted", sa.Boolean(), nullable=False),
        sa.Column("completedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["moduleId"], ["Module.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["parentGoalId"], ["Goal.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("Goal", schema=None) as batch_op:
        batch_op.create_index("ix_Goal_userId", ["userId"], unique=False)

    op.create_table(
        "Achievement",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("goalId", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("earnedAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["goalId"], ["Goal.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("Achievement", schema=None) as batch_op:
        batch_op.create_index("ix_Achievement_userId", ["userId"], unique=False)

    op.create_table(
        "BibleStudyNote",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("readingId", sa.Text(), nullable=True),
        sa.Column("book", sa.Text(), nullable=False),
        sa.Column("chapter", sa.Integer(), nullable=False),
        sa.Column("verse", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["readingId"], ["BibleReading.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("BibleStudyNote", schema=None) as batch_op:
        batch_op.create_index("ix_BibleStudyNote_userId", ["userId"], unique=False)

    op.create_table(
        "Progress",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("goalId", sa.Text(), nullable=False),
        sa.Column("value", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("maxValue", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("recordedAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["goalId"], ["Goal.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("Progress", schema=None) as batch_op:
        batch_op.create_index("ix_Progress_userId", ["userId"], unique=False)

    op.create_table(
        "WorkProject",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("goalId", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("budget", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("startDate", sa.Date(), nullable=True),
        sa.Column("dueDate", sa.Date(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["goalId"], ["Goal.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("WorkProject", schema=None) as batch_op:
        batch_op.create_index("ix_WorkProject_userId", ["userId"], unique=False)

    op.create_table(
        "WorkTask",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("projectId", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("estimateHours", sa.Numeric(precision=6, scale=2), nullable=True),
        sa.Column("dueAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["projectId"], ["WorkProject.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("WorkTask", schema=None) as batch_op:
        batch_op.create_index("ix_WorkTask_userId", ["userId"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("WorkTask", schema=None) as batch_op:
        batch_op.drop_index("ix_WorkTask_userId")

    op.drop_table("WorkTask")
    with op.batch_alter_table("WorkProject", schema=None) as batch_op:
        batch_op.drop_index("ix_WorkProject_userId")

    op.drop_table("WorkProject")
    with op.batch_alter_table("Progress", schema=None) as batch_op:
        batch_op.drop_index("ix_Progress_userId")

    op.drop_table("Progress")
    with op.batch_alter_table("BibleStudyNote", schema=None) as batch_op:
        batch_op.drop_index("ix_BibleStudyNote_userId")

    op.drop_table("BibleStudyNote")
    with op.batch_alter_table("Achievement", schema=None) as batch_op:
        batch_op.drop_index("ix_Achievement_userId")

    op.drop_table("Achievement")
    with op.batch_alter_table("Goal", schema=None) as batch_op:
        batch_op.drop_index("ix_Goal_userId")

    op.drop_table("Goal")
    with op.batch_alter_table("BibleReading", schema=None) as batch_op:
        batch_op.drop_index("ix_BibleReading_userId")

    op.drop_table("BibleReading")
    with op.batch_alter_table("UserSetting", schema=None) as batch_op:
        batch_op.drop_index("ix_UserSetting_userId")

    op.drop_table("UserSetting")
    with op.batch_alter_table("Module", schema=None) as batch_op:
        batch_op.drop_index("ix_Module_userId")

    op.drop_table("Module")
    with op.batch_alter_table("BibleReadingPlan", schema=None) as batch_op:
        batch_op.drop_index("ix_BibleReadingPlan_userId")

    op.drop_table("BibleReadingPlan")
    op.drop_table("UserKey")
    with op.batch_alter_table("User", schema=None) as batch_op:
        batch_op.drop_index("ix_User_userId")

    op.drop_table("User")
    with op.batch_alter_table("NotificationOutbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_NotificationOutbox_userId"))

    op.drop_table("NotificationOutbox")
    with op.batch_alter_table("ImportChange", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ImportChange_userId"))
        batch_op.drop_index(batch_op.f("ix_ImportChange_importJobId"))

    op.drop_table("ImportChange")
    with op.batch_alter_table("GoalTemplate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_GoalTemplate_templateKey"))
        batch_op.drop_index(batch_op.f("ix_GoalTemplate_authorId"))

    op.drop_table("GoalTemplate")
    with op.batch_alter_table("ExternalRef", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ExternalRef_userId"))

    op.drop_table("ExternalRef")
    with op.batch_alter_table("ErasureRequest", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ErasureRequest_userId"))

    op.drop_table("ErasureRequest")
    with op.batch_alter_table("DataImportJob", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_DataImportJob_userId"))
        batch_op.drop_index(batch_op.f("ix_DataImportJob_status"))

    op.drop_table("DataImportJob")
    with op.batch_alter_table("DataExportJob", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_DataExportJob_userId"))
        batch_op.drop_index(batch_op.f("ix_DataExportJob_status"))
        batch_op.drop_index(batch_op.f("ix_DataExportJob_batchId"))

    op.drop_table("DataExportJob")
    with op.batch_alter_table("DataAuditLog", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_DataAuditLog_userId"))
        batch_op.drop_index(batch_op.f("ix_DataAuditLog_subjectRef"))

    op.drop_table("DataAuditLog")
    op.drop_table("BackupConfig")
