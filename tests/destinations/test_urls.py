"""Destination URLs (resources/destinations/urls.py) and opening their filesystems
(resources/destinations/filesystems.py): what parses, what is refused and why, the
operator's allow-list, and that error messages never echo a secret."""

from __future__ import annotations

import pytest

from resources.destinations.errors import (
    DestinationCredentialError,
    DestinationError,
    DestinationNotAllowed,
)
from resources.destinations.filesystems import describe_failure, destination_filesystem
from resources.destinations.urls import check_allowed, parse_destination


def test_every_scheme_parses_to_its_service_root():
    s3 = parse_destination("s3://my-bucket/backups/goalport?endpoint=https://minio.example.com")
    assert (s3.protocol, s3.root, s3.host, s3.endpoint) == (
        "s3",
        "my-bucket/backups/goalport",
        "minio.example.com",
        "https://minio.example.com",
    )
    assert parse_destination("s3://my-bucket").host == "s3.amazonaws.com"
    az = parse_destination("az://backups/me?account=acme01")
    assert (az.root, az.account, az.host) == (
        "backups/me",
        "acme01",
        "acme01.blob.core.windows.net",
    )
    assert parse_destination("gs://bucket-1/x/y").root == "bucket-1/x/y"
    dav = parse_destination("webdav+https://bob@cloud.example.org:8443/remote.php/dav/files/bob/")
    assert (dav.protocol, dav.base_url, dav.root, dav.username) == (
        "webdav",
        "https://cloud.example.org:8443",
        "/remote.php/dav/files/bob",
        "bob",
    )
    sftp = parse_destination("sftp://alice@[::1]:2222/home/alice/backups")
    assert (sftp.host, sftp.port, sftp.username, sftp.root) == (
        "::1",
        2222,
        "alice",
        "/home/alice/backups",
    )
    assert parse_destination("dropbox://Apps/goalport").root == "Apps/goalport"


@pytest.mark.parametrize(
    ("url", "error", "says"),
    [
        ("/srv/backups", DestinationNotAllowed, "local path"),
        ("file:///srv/backups", DestinationNotAllowed, "local path"),
        ("memory://x", DestinationNotAllowed, "local path"),
        ("ftp://host/x", DestinationError, "not a supported destination"),
        ("webdav+http://cloud.example.org/dav", DestinationNotAllowed, "loopback only"),
        ("s3://b-1/x?endpoint=http://10.0.0.5:9000", DestinationNotAllowed, "loopback only"),
        ("sftp://host.example.org/x", DestinationError, "name the user"),
        ("sftp://a@host.example.org:99999/x", DestinationError, "port"),
        ("s3://UPPER_case/x", DestinationError, "not a valid bucket"),
        ("s3://bucket/a/../../etc", DestinationError, "'..'"),
        ("az://container/x", DestinationError, "storage account"),
        ("s3://bucket/x?acl=public-read", DestinationError, "unknown option acl"),
        ("webdav+https://cloud.example.org/a\x00b", DestinationError, "control character"),
        ("dropbox://me@Apps/x", DestinationError, "from connecting"),
        ("dropbox://[", DestinationError, "unbalanced brackets"),  # found by schemathesis
        ("sftp://u@[::1/x", DestinationError, "unbalanced brackets"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url, error, says):
    with pytest.raises(error, match=says):
        parse_destination(url)


def test_a_password_in_the_url_is_refused_without_echoing_it():
    with pytest.raises(DestinationError, match="holds a password") as caught:
        parse_destination("webdav+https://bob:hunter2secret@cloud.example.org/dav")
    assert "hunter2secret" not in str(caught.value)


def test_the_operators_allow_list_narrows_schemes_and_hosts(monkeypatch):
    nextcloud = parse_destination("webdav+https://bob@files.nextcloud.example/dav")
    other = parse_destination("webdav+https://bob@evil.example.net/dav")
    sftp = parse_destination("sftp://bob@anything.example/x")
    allow = ["webdav+https://*.nextcloud.example", "sftp"]
    check_allowed(nextcloud, allow)
    check_allowed(sftp, allow)
    with pytest.raises(DestinationNotAllowed, match="evil.example.net is not among"):
        check_allowed(other, allow)
    with pytest.raises(DestinationNotAllowed, match="s3:// to s3.amazonaws.com"):
        check_allowed(parse_destination("s3://bucket"), allow)
    monkeypatch.setenv("GOALPORT_DESTINATIONS_ALLOW", " sftp://anything.example , gs ")
    check_allowed(sftp)
    with pytest.raises(DestinationNotAllowed):
        check_allowed(nextcloud)
    with pytest.raises(DestinationNotAllowed):  # the list is checked when opening too
        destination_filesystem(nextcloud.url, {"password": "x"}, lambda s: None)


def test_goalports_own_bucket_is_refused(monkeypatch):
    monkeypatch.setenv("GOALPORT_STORAGE_URL", "s3://goalport-main/prod")
    monkeypatch.setenv("GOALPORT_S3_ENDPOINT_URL", "https://s3.internal.example")
    with pytest.raises(DestinationNotAllowed, match="goalport's own storage"):
        check_allowed(
            parse_destination("s3://goalport-main/elsewhere?endpoint=https://s3.internal.example")
        )
    # the same bucket name at another service is another place
    check_allowed(parse_destination("s3://goalport-main/x?endpoint=https://s3.other.example"))


def test_missing_credentials_never_fall_back_to_goalports_own(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operators-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operators-secret")
    with pytest.raises(DestinationCredentialError, match="no access_key_id"):
        destination_filesystem("s3://users-bucket/x", {}, lambda s: None)
    with pytest.raises(DestinationCredentialError, match="no host_key"):
        destination_filesystem("sftp://a@127.0.0.1:2222/x", {"password": "p"}, lambda s: None)


def test_cloud_drives_go_to_their_module():
    try:
        import resources.destinations.cloud_drives  # noqa: F401
    except ImportError:
        with pytest.raises(DestinationError, match="not available"):
            destination_filesystem("dropbox://Apps/goalport", {}, lambda s: None)
    else:  # dest-b's module is there: it is what answers (its own tests cover it)
        with pytest.raises(DestinationError):
            destination_filesystem("dropbox://Apps/goalport", {}, lambda s: None)


def test_failures_are_described_without_quoting_the_service():
    destination = parse_destination("s3://bucket/x")
    refused = describe_failure(
        destination, PermissionError("AccessDenied for https://x?X-Amz-Signature=abc")
    )
    assert isinstance(refused, DestinationCredentialError)
    assert "refused goalport's credentials" in str(refused) and "Signature" not in str(refused)

    class HTTPError(Exception):
        status_code = 401

    wrapped = RuntimeError("upload failed")
    wrapped.__cause__ = HTTPError("token=secret")
    assert isinstance(describe_failure(destination, wrapped), DestinationCredentialError)
    other = describe_failure(destination, TimeoutError("slow"))
    assert type(other) is DestinationError and "TimeoutError" in str(other)
