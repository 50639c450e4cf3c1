"""Configuration from the environment, failing closed to the embedded default.

A forgotten variable means the local SQLite file and storage folder under ./var, never
somebody's production. Read when a resource or command is built, not at import time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import uuid
from pathlib import Path

DEFAULT_VAR_DIR = Path("var")


def database_url() -> str:
    """GOALPORT_DATABASE_URL, else a SQLite file under ./var."""
    url = os.environ.get("GOALPORT_DATABASE_URL", "").strip()
    if url:
        return normalise_database_url(url)
    database = private_var_dir() / "goalport.db"
    if not database.exists():
        # SQLite gives its journal and WAL files the database file's mode.
        _create_private_file(database)
    return f"sqlite:///{database.resolve()}"


def storage_url() -> str:
    """GOALPORT_STORAGE_URL (a folder or `s3://bucket/prefix`), else ./var/storage."""
    url = os.environ.get("GOALPORT_STORAGE_URL", "").strip()
    return url or str((DEFAULT_VAR_DIR / "storage").resolve())


def s3_endpoint_url() -> str | None:
    """GOALPORT_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself."""
    for name in ("GOALPORT_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL and use psycopg 3 for all of them."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def dagster_home() -> str | None:
    """DAGSTER_HOME: the Dagster instance's folder when set (runs then show in `make dev`)."""
    return os.environ.get("DAGSTER_HOME") or None


def secret_from_variable(name: str) -> str | None:
    """The value of the environment variable a person named (`--passphrase-env VAR`), or
    None when it is unset or empty: secrets travel in variables, never on command lines,
    where `ps` and shell history would keep them."""
    return os.environ.get(name) or None


class SettingError(ValueError):
    """A variable is set to something goalport cannot use; the message names it and says
    what to give instead."""


DEFAULT_EXPORT_EXPIRY = dt.timedelta(days=7)
DEFAULT_DOWNLOAD_BASE_URL = "http://127.0.0.1:8765"


def export_expiry() -> dt.timedelta:
    """How long a finished export stays downloadable: GOALPORT_EXPORT_EXPIRY_DAYS, else 7."""
    raw = os.environ.get("GOALPORT_EXPORT_EXPIRY_DAYS", "").strip()
    if not raw:
        return DEFAULT_EXPORT_EXPIRY
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if days <= 0:
        raise SettingError(f"GOALPORT_EXPORT_EXPIRY_DAYS={raw!r}: give a positive number of days")
    return dt.timedelta(days=days)


def webhook_url() -> str:
    """GOALPORT_WEBHOOK_URL, where export notifications are POSTed; "" when unset (the
    outbox is then left for the app to read)."""
    return os.environ.get("GOALPORT_WEBHOOK_URL", "").strip()


def webhook_secret() -> str:
    """GOALPORT_WEBHOOK_SECRET, the key webhooks are signed under; "" when unset (nothing
    is sent: an unsigned webhook cannot be trusted)."""
    return os.environ.get("GOALPORT_WEBHOOK_SECRET", "")


DOWNLOAD_SECRET_ENV = "GOALPORT_DOWNLOAD_SECRET"
MIN_SECRET_BYTES = 32


def download_secret(*, required: bool = False) -> bytes:
    """GOALPORT_DOWNLOAD_SECRET, else this install's secret generated once into
    ./var/download-secret (0600), so a forgotten setting still signs. A secret shorter
    than 32 bytes is refused, saying where it came from; `required=True` accepts only the
    variable."""
    return _install_secret(
        DOWNLOAD_SECRET_ENV,
        "download-secret",
        required=required,
        regenerate_hint="delete it and goalport makes a new one (links already sent stop working)",
    )


def download_base_url() -> str:
    """Where `goalport serve-downloads` is reached: GOALPORT_DOWNLOAD_BASE_URL, else
    loopback port 8765."""
    return os.environ.get("GOALPORT_DOWNLOAD_BASE_URL", "").strip() or DEFAULT_DOWNLOAD_BASE_URL


ERASURE_GRACE_ENV = "GOALPORT_ERASURE_GRACE_DAYS"
DEFAULT_ERASURE_GRACE = dt.timedelta(days=7)


def erasure_grace_period() -> dt.timedelta:
    """How long an erasure request waits, cancellable, before it runs:
    GOALPORT_ERASURE_GRACE_DAYS (0 allowed), else 7 days."""
    raw = os.environ.get(ERASURE_GRACE_ENV, "").strip()
    if not raw:
        return DEFAULT_ERASURE_GRACE
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if days < 0:
        raise SettingError(f"{ERASURE_GRACE_ENV}={raw!r}: give a number of days, 0 or more")
    return dt.timedelta(days=days)


PSEUDONYM_KEY_ENV = "GOALPORT_PSEUDONYM_KEY"


def pseudonym_key(*, required: bool = False) -> bytes:
    """GOALPORT_PSEUDONYM_KEY, the HMAC key of the pseudonyms that outlive an erasure, else
    this install's key generated once into ./var/pseudonym-key (0600). Changing it changes
    every stored pseudonym, so the generated file is never replaced: back it up.
    `required=True` (the production profile) accepts only the variable. Never log it."""
    return _install_secret(
        PSEUDONYM_KEY_ENV,
        "pseudonym-key",
        required=required,
        regenerate_hint=(
            "restore it from a backup (a new key changes every stored pseudonym), or set "
            f"{PSEUDONYM_KEY_ENV} to the key this install used"
        ),
    )


MASTER_KEY_ENV = "GOALPORT_MASTER_KEY"


def configured_master_key() -> str | None:
    """GOALPORT_MASTER_KEY, the key that wraps every user's age identity, or None when
    unset. Its holder decodes it and keeps only its fingerprint: never log or store it."""
    return os.environ.get(MASTER_KEY_ENV)


GDPR_TEXTS_ENV = "GOALPORT_GDPR_TEXTS"


def gdpr_texts_path() -> str | None:
    """GOALPORT_GDPR_TEXTS: a JSON file of Art. 15 texts over the built-in ones; None if unset."""
    return os.environ.get(GDPR_TEXTS_ENV, "").strip() or None


# ---------------------------------------------------------------- production profile

PROFILE_ENV = "GOALPORT_PROFILE"
PRODUCTION = "production"
# What a production install must be given: without any of them goalport would fall back to
# a SQLite file, a folder on the container's ephemeral disk, or secrets it made up itself.
PRODUCTION_REQUIRED = (
    "GOALPORT_DATABASE_URL",
    "GOALPORT_STORAGE_URL",
    MASTER_KEY_ENV,
    "GOALPORT_DOWNLOAD_SECRET",
    "GOALPORT_PSEUDONYM_KEY",
)


def profile() -> str:
    """GOALPORT_PROFILE: "production", or "" (unset or empty) for the embedded default."""
    value = os.environ.get(PROFILE_ENV, "").strip().lower()
    if value not in ("", PRODUCTION):
        raise SettingError(f"{PROFILE_ENV}={value!r}: give {PRODUCTION!r} or leave it unset")
    return value


def missing_production_settings() -> list[str]:
    """The variables the production profile needs that are unset or empty."""
    return [name for name in PRODUCTION_REQUIRED if not os.environ.get(name, "").strip()]


def require_production_settings() -> None:
    """In the production profile, refuse to start (a SettingError naming every missing
    variable) instead of falling back to ./var; outside it, do nothing."""
    if profile() != PRODUCTION:
        return
    missing = missing_production_settings()
    if missing:
        raise SettingError(
            f"{PROFILE_ENV}=production, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: goalport will not fall back "
            "to ./var in production. Set them (see README, Deployment) or unset "
            f"{PROFILE_ENV}."
        )
    # given: each secret must also be usable (at least 32 bytes), said without showing it
    download_secret(required=True)
    pseudonym_key(required=True)


STALE_AFTER_ENV = "GOALPORT_STALE_AFTER"
DEFAULT_STALE_AFTER = dt.timedelta(minutes=5)


def stale_claim_after() -> dt.timedelta:
    """GOALPORT_STALE_AFTER (seconds): a claim whose heartbeat is older than this was lost
    with its worker and is requeued by the next claimer. Default 300 s."""
    raw = os.environ.get(STALE_AFTER_ENV, "").strip()
    if not raw:
        return DEFAULT_STALE_AFTER
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise SettingError(f"{STALE_AFTER_ENV}={raw!r}: give a positive number of seconds")
    return dt.timedelta(seconds=seconds)


def heartbeat_interval() -> float:
    """How often a claimant beats: a quarter of GOALPORT_STALE_AFTER, at most 30 s, so a
    live claim is never taken for a dead one."""
    return min(30.0, stale_claim_after().total_seconds() / 4)


RETRY_DELAY_ENV = "GOALPORT_RETRY_DELAY_SECONDS"
DEFAULT_RETRY_DELAY = 10.0


def retry_delay_seconds() -> float:
    """GOALPORT_RETRY_DELAY_SECONDS: the first back-off of a retried I/O step (doubled on
    each retry, with jitter); default 10 s, short in tests."""
    raw = os.environ.get(RETRY_DELAY_ENV, "").strip()
    if not raw:
        return DEFAULT_RETRY_DELAY
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise SettingError(f"{RETRY_DELAY_ENV}={raw!r}: give a number of seconds, 0 or more")
    return seconds


PAUSE_AFTER_USERS_ENV = "GOALPORT_TEST_PAUSE_AFTER_USERS"


def test_pause_after_users() -> int | None:
    """A fault-injection hook for tests only: GOALPORT_TEST_PAUSE_AFTER_USERS=N makes an
    export worker stop for good after N users are written, so a test can kill it mid-batch.
    None (no pause) when unset."""
    raw = os.environ.get(PAUSE_AFTER_USERS_ENV, "").strip()
    return int(raw) if raw else None


RUNS_SHARING_CPUS_ENV = "GOALPORT_RUNS_SHARING_CPUS"


def runs_sharing_cpus() -> int:
    """GOALPORT_RUNS_SHARING_CPUS: how many runs share this host's (or container's) CPUs at
    once, so that each forks its share of workers; default 1 (a pod per run)."""
    raw = os.environ.get(RUNS_SHARING_CPUS_ENV, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise SettingError(f"{RUNS_SHARING_CPUS_ENV}={raw!r}: give a whole number, 1 or more")
    return int(raw)


REQUEST_TICK_ENV = "GOALPORT_REQUEST_TICK_SECONDS"
DEFAULT_REQUEST_TICK = 15


def request_tick_seconds() -> int:
    """GOALPORT_REQUEST_TICK_SECONDS: the export request sensor's minimum interval (read
    when the code location loads); default 15. A shorter tick shortens a request's wait;
    each tick costs the daemon one claim query."""
    raw = os.environ.get(REQUEST_TICK_ENV, "").strip()
    if not raw:
        return DEFAULT_REQUEST_TICK
    if not raw.isdigit() or int(raw) < 1:
        raise SettingError(f"{REQUEST_TICK_ENV}={raw!r}: give a whole number of seconds, 1 or more")
    return int(raw)


class MissingSecretError(SettingError):
    """A secret that this profile requires from the environment is not set."""


def private_var_dir() -> Path:
    """./var, where the embedded default keeps its database, storage and secrets; created
    0700 (whatever the umask) when goalport makes it."""
    try:
        DEFAULT_VAR_DIR.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return DEFAULT_VAR_DIR
    DEFAULT_VAR_DIR.chmod(0o700)
    return DEFAULT_VAR_DIR


def _create_private_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


_generated_secrets: dict[Path, bytes] = {}


def _install_secret(
    variable: str, file_name: str, *, required: bool, regenerate_hint: str
) -> bytes:
    """The secret in `variable`, else the one in ./var/`file_name`, generated on first use.

    An empty variable counts as unset. Errors name where the secret came from and never
    show it. The file is created complete or not at all (written to a temporary file,
    then hard-linked into place, which fails if another process got there first: every
    process of the install then reads the same secret)."""
    configured = os.environ.get(variable, "")
    if configured:
        secret = configured.encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise SettingError(
                f"{variable} is {len(secret)} bytes long; it must be at least "
                f"{MIN_SECRET_BYTES} (e.g. `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`)"
            )
        return secret
    if required:
        raise MissingSecretError(
            f"{variable} is not set, and the production profile does not generate it: set it "
            f"to at least {MIN_SECRET_BYTES} random bytes (e.g. `python -c 'import secrets; "
            "print(secrets.token_hex(32))'`) and keep a copy where you keep your backups"
        )
    path = (private_var_dir() / file_name).resolve()
    if path in _generated_secrets:
        return _generated_secrets[path]
    if not path.exists():
        _create_secret_file(path)
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise SettingError(
            f"{path} holds {len(secret)} bytes, not the {MIN_SECRET_BYTES} or more a secret "
            f"needs (a crash while it was written?): {regenerate_hint}, or set {variable}"
        )
    _generated_secrets[path] = secret
    return secret


def _create_secret_file(path: Path) -> None:
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (secrets.token_hex(MIN_SECRET_BYTES) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: everyone uses that one
        _fsync_folder(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


PUBLIC_URL_ENV = "GOALPORT_PUBLIC_URL"
SERVICE_TOKEN_ENV = "GOALPORT_SERVICE_TOKEN"
MIN_SERVICE_TOKEN_BYTES = 32


def public_url() -> str:
    """GOALPORT_PUBLIC_URL, where `goalport serve` is reached from outside (links in API
    answers are built on it); "" when unset, and links are then relative."""
    return os.environ.get(PUBLIC_URL_ENV, "").strip().rstrip("/")


def service_token() -> str | None:
    """GOALPORT_SERVICE_TOKEN, the app backend's credential for acting on any user's
    behalf; None when unset (no service credential is accepted)."""
    value = os.environ.get(SERVICE_TOKEN_ENV, "")
    if not value:
        return None
    if len(value.encode()) < MIN_SERVICE_TOKEN_BYTES:
        raise SettingError(
            f"{SERVICE_TOKEN_ENV} is {len(value.encode())} bytes: give at least "
            f"{MIN_SERVICE_TOKEN_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
        )
    return value


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise SettingError(f"{name}={raw!r}: give a positive whole number")
    return int(raw)


def api_rate_limit() -> tuple[int, int]:
    """(requests, seconds): how many calls one API token may make per fixed window,
    GOALPORT_API_RATE_LIMIT (600) per GOALPORT_API_RATE_WINDOW_SECONDS (60)."""
    return _positive_int("GOALPORT_API_RATE_LIMIT", 600), _positive_int(
        "GOALPORT_API_RATE_WINDOW_SECONDS", 60
    )


def api_service_rate_limit() -> int:
    """Calls per window for the service credential (all of the app's users share it):
    GOALPORT_API_SERVICE_RATE_LIMIT, else 20,000."""
    return _positive_int("GOALPORT_API_SERVICE_RATE_LIMIT", 20_000)


def api_link_rate_limit() -> int:
    """Requests per window for one download link (a resumed download takes a few):
    GOALPORT_API_LINK_RATE_LIMIT, else 120."""
    return _positive_int("GOALPORT_API_LINK_RATE_LIMIT", 120)


def api_address_rate_limit() -> int:
    """Requests per window from one client address without a valid credential (download
    links, and calls whose token is missing or wrong): GOALPORT_API_ADDRESS_RATE_LIMIT,
    else 300."""
    return _positive_int("GOALPORT_API_ADDRESS_RATE_LIMIT", 300)


def trusted_proxies() -> tuple[str, ...]:
    """GOALPORT_TRUSTED_PROXIES: comma-separated addresses or networks (CIDR) of the proxies
    in front of the API, whose X-Forwarded-For is believed; none by default (the header is
    then ignored: anyone can send it)."""
    raw = os.environ.get("GOALPORT_TRUSTED_PROXIES", "")
    entries = tuple(e.strip() for e in raw.split(",") if e.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise SettingError(
                f"GOALPORT_TRUSTED_PROXIES: {entry!r} is not an address or a network"
            ) from exc
    return entries


ERASURE_RETRY_ENV = "GOALPORT_ERASURE_RETRY_SECONDS"
DEFAULT_ERASURE_RETRY = dt.timedelta(minutes=5)


def erasure_retry_base() -> dt.timedelta:
    """The first back-off of a failed erasure (it doubles with each further failure, up to a
    day): GOALPORT_ERASURE_RETRY_SECONDS, else 300."""
    raw = os.environ.get(ERASURE_RETRY_ENV, "").strip()
    if not raw:
        return DEFAULT_ERASURE_RETRY
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise SettingError(f"{ERASURE_RETRY_ENV}={raw!r}: give a number of seconds, 0 or more")
    return dt.timedelta(seconds=seconds)


def alert_webhook_url() -> str:
    """GOALPORT_ALERT_WEBHOOK_URL, where operators' alerts (failed runs, dead-lettered
    notifications) are POSTed; "" when unset (no alert is sent)."""
    return os.environ.get("GOALPORT_ALERT_WEBHOOK_URL", "").strip()


def alert_webhook_secret() -> str:
    """GOALPORT_ALERT_WEBHOOK_SECRET, the key alerts are signed under; the notifications'
    GOALPORT_WEBHOOK_SECRET when unset; "" when neither is (nothing is sent unsigned)."""
    return os.environ.get("GOALPORT_ALERT_WEBHOOK_SECRET", "") or webhook_secret()


def _positive_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise SettingError(f"{name}={raw!r}: give a positive number of seconds")
    return seconds


def webhook_backoff_seconds() -> float:
    """The first wait before a failed webhook delivery is tried again (it doubles with each
    further failure, up to 6 hours): GOALPORT_WEBHOOK_BACKOFF_SECONDS, else 30."""
    return _positive_seconds("GOALPORT_WEBHOOK_BACKOFF_SECONDS", 30.0)


def webhook_max_attempts() -> int:
    """Attempts before a notification is a dead letter: GOALPORT_WEBHOOK_MAX_ATTEMPTS, else 8."""
    return _positive_int("GOALPORT_WEBHOOK_MAX_ATTEMPTS", 8)


def webhook_timeout_seconds() -> float:
    """How long one webhook connection or read may wait: GOALPORT_WEBHOOK_TIMEOUT_SECONDS,
    else 10."""
    return _positive_seconds("GOALPORT_WEBHOOK_TIMEOUT_SECONDS", 10.0)


DESTINATIONS_ALLOW_ENV = "GOALPORT_DESTINATIONS_ALLOW"


def destinations_allow() -> list[str]:
    """Which destinations users may choose (`GOALPORT_DESTINATIONS_ALLOW`): comma-separated
    `scheme` (any host) or `scheme://host` entries, a host may start with `*.`; empty means
    every supported scheme to any host (resources/destinations/urls.py reads the entries)."""
    raw = os.environ.get(DESTINATIONS_ALLOW_ENV, "")
    return [entry.strip() for entry in raw.split(",") if entry.strip()]


# ---------------------------------------------------------------- users' cloud drives

# Where each provider's endpoints are, as its documentation gives them. Every one can be
# replaced by GOALPORT_<PROVIDER>_<ENDPOINT>_URL (e.g. GOALPORT_DROPBOX_API_URL): the tests
# point them at fake providers on loopback.
CLOUD_DRIVE_ENDPOINTS: dict[str, dict[str, str]] = {
    "dropbox": {
        "authorize": "https://www.dropbox.com/oauth2/authorize",
        "token": "https://api.dropboxapi.com/oauth2/token",
        "api": "https://api.dropboxapi.com/2",
        "content": "https://content.dropboxapi.com/2",
    },
    "gdrive": {
        "authorize": "https://accounts.google.com/o/oauth2/v2/auth",
        "token": "https://oauth2.googleapis.com/token",
        "api": "https://www.googleapis.com/drive/v3",
        "upload": "https://www.googleapis.com/upload/drive/v3",
    },
    "onedrive": {
        "authorize": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "token": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        "api": "https://graph.microsoft.com/v1.0",
    },
}


def cloud_drive_endpoint(provider: str, endpoint: str) -> str:
    """The URL of one of a cloud drive's endpoints (CLOUD_DRIVE_ENDPOINTS), or the
    GOALPORT_<PROVIDER>_<ENDPOINT>_URL that replaces it; no trailing slash."""
    default = CLOUD_DRIVE_ENDPOINTS[provider][endpoint]
    name = f"GOALPORT_{provider.upper()}_{endpoint.upper()}_URL"
    return (os.environ.get(name, "").strip() or default).rstrip("/")


def cloud_drive_client(provider: str) -> tuple[str, str]:
    """(client id, client secret) of this install's OAuth app at `provider`:
    GOALPORT_<PROVIDER>_CLIENT_ID and GOALPORT_<PROVIDER>_CLIENT_SECRET. The id is required
    to connect or refresh (a SettingError says which variable); the secret may be "" for a
    public client (PKCE alone). Never log the secret."""
    prefix = f"GOALPORT_{provider.upper()}"
    client_id = os.environ.get(f"{prefix}_CLIENT_ID", "").strip()
    if not client_id:
        raise SettingError(
            f"{prefix}_CLIENT_ID is not set: register an OAuth app at {provider} and set its "
            f"client id (and {prefix}_CLIENT_SECRET) to let users connect {provider}"
        )
    return client_id, os.environ.get(f"{prefix}_CLIENT_SECRET", "").strip()


UPLOAD_CHUNK_UNIT = 1280 * 1024  # divisible by Drive's 256 KiB and Graph's 320 KiB units


def cloud_drive_chunk_bytes() -> int:
    """How many bytes one request of a streamed upload to a cloud drive carries:
    GOALPORT_CLOUD_DRIVE_CHUNK_BYTES, a multiple of 1,310,720 (1280 KiB, which both Google
    Drive's 256 KiB and Graph's 320 KiB rules divide); default 8 x 1280 KiB (10 MiB)."""
    chunk = _positive_int("GOALPORT_CLOUD_DRIVE_CHUNK_BYTES", 8 * UPLOAD_CHUNK_UNIT)
    if chunk % UPLOAD_CHUNK_UNIT:
        raise SettingError(
            f"GOALPORT_CLOUD_DRIVE_CHUNK_BYTES={chunk}: give a multiple of {UPLOAD_CHUNK_UNIT}"
        )
    return chunk


def cloud_drive_timeout_seconds() -> float:
    """How long one request to a cloud drive may wait to connect or read:
    GOALPORT_CLOUD_DRIVE_TIMEOUT_SECONDS, else 60."""
    return _positive_seconds("GOALPORT_CLOUD_DRIVE_TIMEOUT_SECONDS", 60.0)


def cloud_drive_retries() -> int:
    """How often a request a cloud drive throttled (429, 503) is tried again:
    GOALPORT_CLOUD_DRIVE_RETRIES, else 4."""
    raw = os.environ.get("GOALPORT_CLOUD_DRIVE_RETRIES", "").strip()
    if not raw:
        return 4
    if not raw.isdigit():
        raise SettingError(f"GOALPORT_CLOUD_DRIVE_RETRIES={raw!r}: give a whole number, 0 or more")
    return int(raw)


def cloud_drive_max_wait_seconds() -> float:
    """The longest goalport waits before retrying a throttled request, whatever the provider's
    Retry-After says: GOALPORT_CLOUD_DRIVE_MAX_WAIT_SECONDS, else 60."""
    return _positive_seconds("GOALPORT_CLOUD_DRIVE_MAX_WAIT_SECONDS", 60.0)


OAUTH_STATE_TTL_ENV = "GOALPORT_OAUTH_STATE_TTL_SECONDS"


def oauth_state_ttl() -> dt.timedelta:
    """How long a started "connect your cloud drive" may take before its state expires:
    GOALPORT_OAUTH_STATE_TTL_SECONDS, else 600 (ten minutes)."""
    return dt.timedelta(seconds=_positive_seconds(OAUTH_STATE_TTL_ENV, 600.0))


def oauth_redirect_uri(provider: str) -> str:
    """Where the provider sends the user back after consent: GOALPORT_OAUTH_REDIRECT_BASE_URL,
    else GOALPORT_PUBLIC_URL, else the local API, + /api/v1/destinations/oauth/<provider>/callback.
    It must be registered, exactly, with the provider's app."""
    base = (
        os.environ.get("GOALPORT_OAUTH_REDIRECT_BASE_URL", "").strip().rstrip("/")
        or public_url()
        or "http://127.0.0.1:8000"
    )
    return f"{base}/api/v1/destinations/oauth/{provider}/callback"


QUALITY_ENGINE_ENV = "GOALPORT_QUALITY_ENGINE"
QUALITY_ENGINES = ("auto", "arrow", "great_expectations")


def quality_engine() -> str:
    """GOALPORT_QUALITY_ENGINE: which engine runs the data-quality rules, `arrow`,
    `great_expectations`, or `auto` (the default: by the batch's size, GOALPORT_GX_MIN_ROWS)."""
    raw = os.environ.get(QUALITY_ENGINE_ENV, "").strip() or "auto"
    if raw not in QUALITY_ENGINES:
        raise SettingError(
            f"{QUALITY_ENGINE_ENV}={raw!r}: give one of {', '.join(QUALITY_ENGINES)}"
        )
    return raw


def gx_min_rows() -> int:
    """GOALPORT_GX_MIN_ROWS: a batch of this many rows or more (all tables) is validated by
    great-expectations itself; smaller ones by the pyarrow engine. Default 2,000,000."""
    return _positive_int("GOALPORT_GX_MIN_ROWS", 2_000_000)


def request_wait_seconds() -> float:
    """GOALPORT_REQUEST_WAIT_SECONDS: how long the export request sensor, finding nothing to
    claim, waits for a request before its tick ends (polling the queue). Dagster's daemon
    evaluates sensors at most every 5 s; production waits 4 s of those 5. Default 0."""
    raw = os.environ.get("GOALPORT_REQUEST_WAIT_SECONDS", "").strip()
    if not raw:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 30:
        raise SettingError(
            f"GOALPORT_REQUEST_WAIT_SECONDS={raw!r}: give seconds from 0 to 30 (a sensor "
            "tick must end well within Dagster's 60 s sensor timeout)"
        )
    return seconds


def s3_max_attempts() -> int | None:
    """GOALPORT_S3_MAX_ATTEMPTS: how many times one S3 call is tried (botocore's retry
    budget, and s3fs's own) before the step fails and its RetryPolicy takes over; unset,
    botocore's and s3fs's defaults (and AWS_MAX_ATTEMPTS) apply."""
    if not os.environ.get("GOALPORT_S3_MAX_ATTEMPTS", "").strip():
        return None
    return _positive_int("GOALPORT_S3_MAX_ATTEMPTS", 5)


DEFAULT_SYNC_RETENTION = dt.timedelta(days=30)


def sync_retention() -> dt.timedelta:
    """How long the sync change log keeps tombstones, row images and push receipts
    (`assets.sync.changelog`): GOALPORT_SYNC_RETENTION_DAYS, else 30. A device offline
    longer must sync again from scratch."""
    raw = os.environ.get("GOALPORT_SYNC_RETENTION_DAYS", "").strip()
    if not raw:
        return DEFAULT_SYNC_RETENTION
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if days <= 0:
        raise SettingError(f"GOALPORT_SYNC_RETENTION_DAYS={raw!r}: give a positive number of days")
    return dt.timedelta(days=days)
