"""What one API process is configured with, read from `resources.settings` once when the
app is built (tests build theirs directly, with small rate limits)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from api.rate_limit import Network, RateLimit, parse_networks
from assets.imports.detect import DEFAULT_LIMITS
from resources import settings
from resources.database import AppDatabase
from resources.keys import KeyVault
from resources.storage import ObjectStorage

MAX_JSON_BODY = 64 * 1024
MULTIPART_FRAMING = 64 * 1024  # an upload's body: the file plus its form around it


@dataclass(frozen=True)
class ApiConfig:
    database: AppDatabase
    storage: ObjectStorage
    download_secret: bytes
    public_url: str = ""  # "" -> relative links
    service_token: str | None = None
    token_limit: RateLimit = RateLimit(600, 60)
    service_limit: RateLimit = RateLimit(20_000, 60)
    max_upload_bytes: int = DEFAULT_LIMITS.max_file_bytes  # what `goalport import` accepts
    link_limit: RateLimit = RateLimit(120, 60)  # per download link
    address_limit: RateLimit = RateLimit(300, 60)  # per client address, without a credential
    trusted_proxies: tuple[Network, ...] = ()  # whose X-Forwarded-For is believed
    sweep_every: int = 1000  # one request without a credential in this many sweeps counters

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
            link_limit=RateLimit(settings.api_link_rate_limit(), window),
            address_limit=RateLimit(settings.api_address_rate_limit(), window),
            trusted_proxies=parse_networks(settings.trusted_proxies()),
        )
