"""The one reader of a file or URL (`resources.sources.read_source`) and its two rules: an
operator at the CLI reads local paths and file:// or s3:// URLs; a Dagster run reads only
objects inside goalport's storage, so a job row naming /etc/passwd, a `../` escape, another
bucket or an http URL is refused with an error that names it. On a real S3 endpoint too."""

import os

import pytest

from resources.sources import (
    OPERATOR,
    RUN,
    SourceRefusedError,
    read_source,
)
from resources.storage import ObjectStorage, StorageError

KEY = "imports/inbox/u1/export.json"


@pytest.fixture
def local(tmp_path):
    storage = ObjectStorage(url=str(tmp_path / "store"))
    storage.write_bytes(KEY, b'{"mine": true}')
    (tmp_path / "secret.txt").write_bytes(b"not goalport's")
    (tmp_path / "store-other").mkdir()
    (tmp_path / "store-other" / "x.json").write_bytes(b"{}")
    return storage


def test_a_run_reads_an_object_by_key_url_or_path(local):
    for location in (KEY, local.object_url(KEY), local.path(KEY)):
        source = read_source(location, local, rules=RUN)
        assert source.data == b'{"mine": true}'
        assert (source.location, source.name) == (location, "export.json")


REFUSED_ON_A_FOLDER = [
    "/etc/passwd",
    "file:///etc/passwd",
    "../secret.txt",
    "imports/../../secret.txt",
    "{root}/../secret.txt",
    "file://{root}/imports/../../secret.txt",
    "{root}-other/x.json",
    "file://{root}-other/x.json",
    "s3://another-bucket/goalport/imports/inbox/u1/export.json",
    "http://127.0.0.1:9/export.json",
    "https://example.com/export.json",
]


@pytest.mark.parametrize("location", REFUSED_ON_A_FOLDER)
def test_a_run_refuses_what_is_outside_the_storage(local, location):
    location = location.format(root=local.root)
    with pytest.raises(SourceRefusedError) as refused:
        read_source(location, local, rules=RUN)
    message = str(refused.value)
    assert location in message and "only objects inside goalport's storage" in message
    assert local.root in message


def test_a_run_refuses_a_link_out_of_the_storage(local, tmp_path):
    link = tmp_path / "store" / "imports" / "inbox" / "u1" / "link.json"
    os.symlink(tmp_path / "secret.txt", link)
    with pytest.raises(SourceRefusedError, match="a link that leads outside"):
        read_source("imports/inbox/u1/link.json", local, rules=RUN)


def test_a_run_names_a_missing_object(local):
    with pytest.raises(StorageError, match=f"no object at {local.object_url('imports/gone')}"):
        read_source("imports/gone", local, rules=RUN)
    with pytest.raises(SourceRefusedError, match="no file named"):
        read_source("", local, rules=RUN)


def test_the_strict_rules_are_the_default(local, tmp_path):
    with pytest.raises(SourceRefusedError):
        read_source(str(tmp_path / "secret.txt"), local)


def test_a_run_on_s3_reads_only_its_own_prefix(s3_url):
    storage = ObjectStorage(url=s3_url)
    storage.write_bytes(KEY, b"{}")
    bucket = s3_url.removeprefix("s3://").split("/")[0]
    assert read_source(storage.object_url(KEY), storage).data == b"{}"
    assert read_source(KEY, storage).data == b"{}"
    for location in (
        f"s3://another-{bucket}/goalport/{KEY}",
        f"s3://{bucket}/goalport-other/{KEY}",
        f"s3://{bucket}/{KEY}",
        f"s3://{bucket}/goalport/imports/../../{KEY}",
        "/etc/passwd",
        "file:///etc/passwd",
        "http://127.0.0.1:9/export.json",
    ):
        with pytest.raises(SourceRefusedError) as refused:
            read_source(location, storage, rules=RUN)
        assert location in str(refused.value) and s3_url in str(refused.value)


def test_an_operator_reads_local_paths_and_file_and_s3_urls(local, tmp_path, s3_url):
    secret = tmp_path / "secret.txt"
    for location in (str(secret), f"file://{secret}"):
        source = read_source(location, rules=OPERATOR)
        assert (source.data, source.location, source.name) == (
            b"not goalport's",
            str(secret),
            "secret.txt",
        )
    elsewhere = ObjectStorage(url=s3_url)
    elsewhere.write_bytes("backups/u1/b.age", b"age")
    url = elsewhere.object_url("backups/u1/b.age")
    assert read_source(url, rules=OPERATOR).data == b"age"
    assert read_source(local.object_url(KEY), local, rules=OPERATOR).data == b'{"mine": true}'


def test_an_operator_is_told_what_cannot_be_read(tmp_path):
    with pytest.raises(SourceRefusedError, match="give a local path, a file:// or s3:// URL"):
        read_source("http://127.0.0.1:9/export.json", rules=OPERATOR)
    with pytest.raises(StorageError, match="cannot read /no/such/file.json: No such file"):
        read_source("/no/such/file.json", rules=OPERATOR)
    with pytest.raises(StorageError, match=f"cannot read {tmp_path}: Is a directory"):
        read_source(str(tmp_path), rules=OPERATOR)
