"""The loopback servers of tests/destinations/servers.py, as session fixtures here."""

from tests.destinations.servers import (  # noqa: F401 - fixtures
    azurite_server,
    gcs_server,
    s3_auth_server,
    ssh_server,
    webdav_server,
)
