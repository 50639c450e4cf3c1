"""Every word the portal shows, in one place so that it can be translated: `T` by key (the
templates read `t.<key>`), the labels of formats and choices, the notices a page shows
after a form did its work, and how dates and sizes are written."""

from __future__ import annotations

import datetime as dt

T: dict[str, str] = {
    "site": "Your data",
    "skip": "Skip to the content",
    "nav_label": "Your data",
    "nav_overview": "Overview",
    "nav_export": "Export",
    "nav_import": "Import",
    "nav_privacy": "Privacy",
    "nav_backups": "Backups",
    "nav_templates": "Templates",
    "sign_out": "Sign out",
    "back_overview": "Back to your data",
    # overview
    "overview_title": "Your data",
    "overview_intro": "Take your goals with you, bring them from another app, back them up, "
    "or ask us to delete them. Everything here works on your account only.",
    "overview_export": "Download your data as JSON, CSV, Excel, Parquet, XML or a report.",
    "overview_import": "Move from another app, or restore one of your exports.",
    "overview_privacy": "Your data bundle, your activity, and deleting your account.",
    "overview_backups": "Automatic, encrypted backups of your data.",
    "overview_templates": "Start from a ready-made plan, or share yours.",
    "signed_in_until": "Signed in until",
    # sign-in
    "signin_expired_title": "This sign-in link has expired",
    "signin_expired_message": "Sign-in links work for 15 minutes. Open “Your data” in the app "
    "again to get a new link.",
    "signin_used_title": "This sign-in link was already used",
    "signin_used_message": "Each sign-in link works once. Open “Your data” in the app again to "
    "get a new link.",
    "signin_invalid_title": "This sign-in link is not valid",
    "signin_invalid_message": "The link may have been cut short when it was copied. Open “Your "
    "data” in the app again to get a new link.",
    "signed_out_title": "You are signed out",
    "signed_out_message": "To see your data, open “Your data” in the app: it signs you in "
    "with a new link.",
    "csrf_title": "This form could not be sent",
    "csrf_message": "The page was too old or did not come from us. Go back, reload the page "
    "and try again.",
    "not_found_title": "Not found",
    "refused_title": "That did not work",
    # export
    "export_title": "Export your data",
    "export_intro": "Choose one or more formats. Large exports take a few minutes; this page "
    "shows their progress, and each file stays available for download until it expires.",
    "export_formats": "Formats",
    "export_modules": "Modules",
    "export_modules_hint": "Leave all unticked to export everything.",
    "export_dates": "Date range (optional)",
    "export_from": "From",
    "export_until": "Until",
    "export_submit": "Export",
    "export_history": "Your exports",
    "export_none": "You have not exported anything yet.",
    "export_choose_format": "Choose at least one format.",
    "export_format": "Format",
    "export_status": "Status",
    "export_requested": "Requested",
    "export_expires": "Available until",
    "export_size": "Size",
    "export_progress": "Progress",
    "export_download": "Download",
    "export_open_report": "Open the offline report",
    "export_refresh": "Refresh",
    "export_expired": "Expired",
    "records": "records",
    "older": "Older",
    # import
    "import_title": "Import your data",
    "import_intro": "Bring your goals from another app, or restore a goalport export. You "
    "see exactly what will change before anything is changed, and you can undo it afterwards.",
    "import_choose_app": "Where does your data come from?",
    "import_goalport": "A goalport export or backup",
    "import_any": "Upload a file",
    "import_guide": "How to get your file",
    "import_file": "Your file",
    "import_mode": "What to do with your current data",
    "import_policy": "When a goal was changed in both places",
    "import_upload": "Upload and preview",
    "import_history": "Your imports",
    "import_none": "You have not imported anything yet.",
    "import_job_title": "Import preview",
    "import_reading": "We are reading your file. This page updates by itself.",
    "import_detected": "Recognised as",
    "import_unknown_source": "not recognised yet",
    "import_encrypted": "encrypted",
    "import_counts": "What would change",
    "import_table": "Table",
    "import_changes": "Row by row",
    "import_conflicts": "Changed in both places",
    "import_conflicts_fail": "Some rows were changed both here and in your file. Nothing can be "
    "imported until you choose what wins: upload the file again with another choice below "
    "“When a goal was changed in both places”.",
    "import_conflict_mark": "conflict",
    "import_mapping": "How your file was read",
    "import_mapping_source": "In your file",
    "import_mapping_action": "Became",
    "import_mapping_note": "Note",
    "import_invalid": "Rows that cannot be imported",
    "import_warnings": "Warnings",
    "import_confirm": "Import these changes",
    "import_confirm_question": "Import these changes into your account?",
    "import_applying": "Your import is being applied. This page updates by itself.",
    "import_applied": "Imported",
    "import_undo": "Undo this import",
    "import_undo_question": "Put back everything this import changed?",
    "import_failed": "This import failed",
    "import_more": "More changes",
    "import_action": "Change",
    "import_row": "Row",
    "import_fields": "Fields",
    "import_nothing": "Nothing would change.",
    "import_file_name": "File",
    "import_status": "Status",
    "import_view": "View",
    # privacy
    "privacy_title": "Privacy",
    "privacy_bundle": "Your data bundle",
    "privacy_bundle_intro": "Everything we hold about you, with an explanation of how we "
    "process it (GDPR Art. 15), as one zip file. It is prepared in the background and "
    "appears under Export when ready.",
    "privacy_bundle_request": "Prepare my data bundle",
    "privacy_delete": "Delete your account",
    "privacy_delete_intro": "We delete your account and every copy of your data. You can "
    "cancel until the date shown.",
    "privacy_delete_warning": "Your backups are encrypted with a key only we hold for you: "
    "after the deletion they cannot be opened by anyone. Download your backup key first if "
    "you want to keep them.",
    "privacy_delete_request": "Request deletion",
    "privacy_delete_question": "Delete your account and all your data after the grace period?",
    "privacy_delete_pending": "Your account will be deleted on",
    "privacy_delete_cancel": "Cancel the deletion",
    "privacy_delete_status": "Last deletion request",
    "privacy_key": "Your backup key",
    "privacy_key_intro": "With this key your backups open with the standard age tool, "
    "without us. Keep it secret: whoever has it can read your backups.",
    "privacy_key_confirm": "I understand that anyone with this key can read my backups",
    "privacy_key_download": "Download my backup key",
    "privacy_key_email": "Type your account's e-mail address to confirm",
    "privacy_key_mismatch": "That is not your account's e-mail address: the key was not shown.",
    "privacy_audit": "Your activity",
    "privacy_audit_intro": "Everything that read or changed your data, newest first.",
    "privacy_audit_when": "When",
    "privacy_audit_what": "What",
    "privacy_audit_by": "By",
    "privacy_audit_none": "Nothing yet.",
    "privacy_audit_from": "From",
    # backups
    "backups_title": "Backups",
    "backups_intro": "Automatic backups of all your data, encrypted so that only you (and our "
    "restore check) can open them.",
    "backups_settings": "Settings",
    "backups_enabled": "Back up automatically",
    "backups_frequency": "How often",
    "backups_timezone": "Time zone",
    "backups_timezone_hint": "For example Europe/Berlin or America/New_York.",
    "backups_format": "Format",
    "backups_encrypt": "Encrypt backups",
    "backups_recipients": "Your own age public keys (optional, one per line)",
    "backups_recipients_hint": "Backups are also encrypted to these keys, so your own age "
    "identity opens them.",
    "backups_keep_last": "Keep the last",
    "backups_keep_hint": "backups",
    "backups_destination": "Stored in goalport's own storage.",
    "backups_save": "Save settings",
    "backups_state": "State",
    "backups_last": "Last backup",
    "backups_verified": "Last verified backup",
    "backups_next": "Next backup",
    "backups_never": "not yet",
    "backups_files": "Your backups",
    "backups_none": "No backups yet.",
    "backups_run": "Back up now",
    "backups_requests": "Latest backup requests",
    "backups_requested": "Asked for",
    "backups_restore": "Restore (preview first)",
    "backups_file": "File",
    "backups_created": "Made",
    "backups_verified_yes": "verified",
    "backups_verified_no": "not verified",
    "yes": "Yes",
    "no": "No",
    # templates
    "templates_title": "Templates",
    "templates_intro": "Ready-made goal plans. Preview one, pick the goals you want, rename "
    "them, choose a start date, and add them to your goals.",
    "templates_category": "Category",
    "templates_tag": "Tag",
    "templates_search": "Words",
    "templates_filter": "Show",
    "templates_all": "All",
    "templates_none": "No templates match.",
    "templates_goals": "goals",
    "templates_days": "days",
    "templates_rating": "Rating",
    "templates_unrated": "not rated yet",
    "templates_open": "Preview",
    "templates_mine": "yours",
    "template_tree": "The plan",
    "template_customise": "Make it yours",
    "template_include": "Include",
    "template_rename": "Title",
    "template_start": "Start date",
    "template_apply": "Add to my goals",
    "template_applied": "Added to your goals",
    "template_rate": "Rate this template",
    "template_stars": "Stars",
    "template_rate_submit": "Rate",
    "template_day": "day",
    "template_publish": "Share your own goals as a template",
    "template_publish_intro": "Choose goals (their sub-goals come along). Before anything is "
    "saved we check that the template does not contain your name or e-mail address.",
    "template_publish_name": "Template name",
    "template_publish_description": "Description",
    "template_publish_category": "Category",
    "template_publish_tags": "Tags (comma-separated)",
    "template_publish_public": "Show it in the public catalog",
    "template_publish_submit": "Check and publish",
    "template_publish_goals": "Your goals",
    "template_published": "Published",
    "template_check": "Personal-data check",
    "template_check_passed": "Passed: the template holds none of",
    "template_check_failed": "Not published: the template holds personal data.",
    "no_goals": "You have no goals yet.",
    "template_choose_goal": "Choose at least one goal.",
    "template_added": "These goals were added to your goals:",
    "template_target": "Target date",
    "template_view": "View the template",
    "template_invalid": "Not published:",
}

NOTICES: dict[str, str] = {
    "export": "Your export was requested. Its progress shows below.",
    "import-confirmed": "Confirmed: your import is being applied.",
    "import-undone": "Undone: your data is as it was before this import.",
    "erasure-requested": "Your deletion request is recorded.",
    "erasure-cancelled": "Your deletion request is cancelled. Nothing will be deleted.",
    "backups-saved": "Your backup settings are saved.",
    "backup-run": "A backup was requested. It appears below when it is done.",
    "gdpr-requested": "Your data bundle is being prepared. Its progress shows below.",
    "template-applied": "The template's goals were added to your goals.",
    "template-rated": "Thank you for your rating.",
}

FORMAT_LABELS: dict[str, str] = {
    "json": "JSON (for other apps and programs)",
    "csv": "CSV for spreadsheets (zip)",
    "csv-machine": "CSV for programs (zip; formulas not neutralised)",
    "xlsx": "Excel workbook",
    "parquet": "Parquet (zip, for data tools)",
    "xml": "XML",
    "report": "Offline report (a web page)",
    "gdpr-bundle": "Your data bundle (GDPR, zip)",
}

STATUS_LABELS: dict[str, str] = {
    "pending": "Waiting",
    "processing": "In progress",
    "completed": "Ready",
    "failed": "Failed",
    "expired": "Expired",
    "staged": "Reading",
    "previewed": "Ready to review",
    "confirmed": "Confirmed",
    "applying": "Being applied",
    "applied": "Imported",
    "undone": "Undone",
    "cancelled": "Cancelled",
    "erasing": "Deleting",
}

MODE_LABELS: dict[str, str] = {
    "merge": "Add and update; keep everything else",
    "append": "Only add what is new",
    "replace": "Replace my data with the file's",
}

POLICY_LABELS: dict[str, str] = {
    "fail": "Stop and show me",
    "keep-existing": "Keep what is here",
    "take-incoming": "Take the file's version",
    "newest-wins": "Take whichever is newer",
}

# What became of a row changed in both places, and the kind of each previewed change.
RESOLUTION_LABELS: dict[str, str] = {
    "unresolved": "waiting for your choice",
    "take-incoming": "the file's version wins",
    "keep-existing": "what is here stays",
}

ACTION_LABELS: dict[str, str] = {"create": "Add", "update": "Change", "delete": "Remove"}

FREQUENCY_LABELS: dict[str, str] = {"daily": "Daily", "weekly": "Weekly", "monthly": "Monthly"}


def when(value: dt.datetime | dt.date | None) -> str:
    """A date or time as people read it (UTC, said so)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%d %b %Y, %H:%M UTC")
    return value.strftime("%d %b %Y")


def size(value: int | None) -> str:
    if value is None:
        return ""
    amount = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} bytes"
