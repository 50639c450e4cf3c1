"""Fake cloud drives (tests/destinations/fake_clouds.py) on loopback, with goalport's
settings pointed at them."""

from __future__ import annotations

import pytest

from tests.destinations.fake_clouds import make_fake, point_goalport_at, serve, stop

# one request carries the smallest chunk goalport allows, so a few MB take several requests
CHUNK = 1280 * 1024


@pytest.fixture
def chunked(monkeypatch):
    monkeypatch.setenv("GOALPORT_CLOUD_DRIVE_CHUNK_BYTES", str(CHUNK))
    monkeypatch.setenv("GOALPORT_CLOUD_DRIVE_TIMEOUT_SECONDS", "10")
    return CHUNK


@pytest.fixture
def start_fake(monkeypatch, chunked):
    """start_fake("dropbox" | "gdrive" | "onedrive") -> the running fake, goalport pointed at it."""
    running = []

    def start(provider: str):
        fake = make_fake(provider)
        running.append(serve(fake))
        point_goalport_at(fake, monkeypatch)
        return fake

    yield start
    for serving in running:
        stop(serving)
