"""What one API process is configured with, read from `resources.settings` once when the
app is built (tests build theirs directly, with small rate limits)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from api.rate_limit import RateLimit
from resources import settings
from resources.database import AppDatabase
from resources.keys import KeyVault
from resources.storage import ObjectStorage

MAX_JSON_BODY = 64 * 1024


@dataclass(frozen=True)
class ApiConfig:
    database: AppDatabase
    storage: ObjectStorage
    download_secret: bytes
    public_url: str = ""  # "" -> relative links
    service_token: str | None = None
    token_limit: RateLimit = RateLimit(600, 60)
    service_limit: RateLimit = RateLimit(20_000, 60)

    @functools.cached_property
    def key_vault(self) -> KeyVault:
        """The users' backup keys, in the API's database (the master key is read from
        GOALPORT_MASTER_KEY when a key is opened)."""
        return KeyVault(database_url=self.database.resolved_url)

    @classmethod
    def from_settings(cls) -> ApiConfig:
        requests, window = settings.api_rate_limit()
        return cls(
            database=AppDatabase(),
            storage=ObjectStorage(),
            download_secret=settings.download_secret(),
            public_url=settings.public_url(),
            service_token=settings.service_token(),
            token_limit=RateLimit(requests, window),
            service_limit=RateLimit(settings.api_service_rate_limit(), window),
        )
