"""The storage key layout, pinned: files already written under these keys must still be
found (listed, served, retained, erased) after any change to the code that names them."""

import datetime as dt

import pytest

from resources import storage_layout as layout

AT = dt.datetime(2026, 11, 1, 12, 0, 5, 123456, tzinfo=dt.UTC)


def test_every_key_of_a_user_is_below_one_of_their_prefixes():
    keys = [
        layout.export_key("u1", "csv.zip", AT),
        layout.export_key("u1", "json", AT, "exp_1"),
        layout.passphrase_export_key("u1", AT, "exp_2"),
        layout.backup_key("u1", AT, encrypted=True),
        layout.backup_key("u1", AT, encrypted=False),
        layout.gdpr_bundle_key("u1", AT),
        layout.plan_key("u1", "imp_3"),
        f"{layout.inbox_folder('u1')}/todoist.csv",
        layout.upload_key("u1", "imp_api_4", "../../Home [1].csv"),
    ]
    assert keys == [
        "exports/u1/20261101T120005123456Z.csv.zip",
        "exports/u1/20261101T120005123456Z-exp_1.json",
        "exports/u1/goalport-backup-20261101T120005123456Z-exp_2.zip.age",
        "backups/u1/goalport-backup-20261101T120005123456Z.zip.age",
        "backups/u1/goalport-backup-20261101T120005123456Z.zip",
        "gdpr/u1/20261101T120005123456Z.zip",
        "imports/plans/u1/imp_3.plan",
        "imports/inbox/u1/todoist.csv",
        "imports/uploads/u1/imp_api_4/Home _1_.csv",
    ]
    prefixes = layout.user_prefixes("u1").values()
    assert all(any(k.startswith(p + "/") for p in prefixes) for k in keys)
    assert list(layout.user_prefixes("u1")) == [
        "exports",
        "backups",
        "gdpr",
        "imports/inbox",
        "imports/plans",
        "imports/uploads",
    ]
    assert layout.destination_prefixes("u1") == ["backups/u1"]


def test_times_in_names_are_utc():
    elsewhere = AT.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert layout.gdpr_bundle_key("u1", elsewhere) == layout.gdpr_bundle_key("u1", AT)


def test_a_backup_name_gives_back_its_time():
    assert layout.backup_time_of(layout.backup_key("u1", AT, encrypted=True)) == AT
    assert layout.backup_time_of("backups/u1/notes.txt") is None


def test_the_template_catalog_is_shared():
    assert layout.catalog_index_key() == "templates/catalog/index.json"
    assert layout.catalog_version_key("tpl_a", 2) == "templates/catalog/tpl_a/v2.json"


@pytest.mark.parametrize("user_id", ["", ".", "..", "a/b"])
def test_an_id_that_cannot_be_a_folder_of_its_own_is_refused(user_id):
    with pytest.raises(layout.StorageLayoutError, match="cannot name a storage folder"):
        layout.user_prefixes(user_id)
