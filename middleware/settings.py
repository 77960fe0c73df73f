"""Settings: the one place that reads the process environment (12-factor) into a frozen object.

Every variable the service understands is declared once in ``_SPECS`` with its default and a
one-line description; ``Settings.from_env`` parses them, ``settings_table`` feeds the README's
configuration table and ``.env.example``. Required secrets have no default: start-up stops with
one ``ConfigError`` naming every missing or malformed variable, so an operator fixes them in one go.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

DEFAULT_SQLITE_PATH = "instance/middleware.sqlite3"
# A Salesforce connection signs in at SALESFORCE_LOGIN_URL (production, the default) or at
# SALESFORCE_SANDBOX_LOGIN_URL (sandbox).
SALESFORCE_LOGIN_HOSTS = ("production", "sandbox")


class ConfigError(RuntimeError):
    """The environment cannot configure the service; the message names every offending variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "cannot start: fix these environment variables (see .env.example):\n  - "
            + "\n  - ".join(problems)
        )


@dataclass(frozen=True)
class _Spec:
    name: str  # environment variable name
    attr: str  # Settings attribute
    default: str | None  # raw default as it would appear in the environment; None = required
    description: str
    parse: Callable[[str], Any] = str
    required: bool = False
    secret: bool = False


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _parse_positive_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _parse_share(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be a fraction above 0 and at most 1")
    return value


def _parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def _parse_fernet_keys(raw: str) -> tuple[str, ...]:
    # Several comma-separated keys allow rotation: the first encrypts, all decrypt.
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not keys:
        raise ValueError("must hold at least one Fernet key")
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(
                f"key #{index} is not a Fernet key (32 url-safe base64-encoded bytes; "
                'generate one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            ) from None
    return keys


def _strip_slash(raw: str) -> str:
    return raw.strip().rstrip("/")


def normalise_database_url(raw: str) -> str:
    """A SQLAlchemy URL: Heroku's ``postgres://`` and bare ``postgresql://`` use psycopg 3."""
    url = raw.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _optional(raw: str) -> str | None:
    return raw.strip() or None


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _parse_pubsub_url(raw: str) -> str:
    """``host:port`` (TLS), ``https://host:port``, or ``http://`` to a loopback host only (the
    local sandbox without TLS): access tokens never leave the machine unencrypted."""
    text = raw.strip().rstrip("/")
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path:
        raise ValueError("expected host:port, e.g. api.pubsub.salesforce.com:7443")
    if port is None:
        raise ValueError("name the port, e.g. api.pubsub.salesforce.com:7443")
    host = parts.hostname
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS and not host.startswith("127."):
        raise ValueError("plain http:// only to this machine (127.0.0.1, localhost); use TLS")
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}:{port}"


_SPECS: tuple[_Spec, ...] = (
    _Spec(
        "SECRET_KEY",
        "secret_key",
        None,
        "Flask secret for signing sessions and OAuth state; long and random.",
        required=True,
        secret=True,
    ),
    _Spec(
        "ADMIN_TOKEN",
        "admin_token",
        None,
        "Bearer token for /admin/api and the dashboard.",
        required=True,
        secret=True,
    ),
    _Spec(
        "TOKEN_ENCRYPTION_KEY",
        "token_encryption_keys",
        None,
        "Fernet key(s) encrypting OAuth tokens and webhook secrets at rest; comma-separated "
        "for rotation, newest first.",
        parse=_parse_fernet_keys,
        required=True,
        secret=True,
    ),
    _Spec(
        "DATABASE_URL",
        "database_url",
        f"sqlite:///{DEFAULT_SQLITE_PATH}",
        "SQLAlchemy database URL; Heroku's postgres:// is accepted (psycopg 3).",
        parse=normalise_database_url,
    ),
    _Spec(
        "REDIS_URL",
        "redis_url",
        "",
        "Redis URL for the queues and webhook hints (rediss:// with self-signed certs accepted); "
        "empty = embedded in-process stand-in.",
        parse=_optional,
    ),
    _Spec(
        "EMBEDDED_WORKER",
        "embedded_worker",
        "",
        "Run jobs in a thread of the web process; default on when REDIS_URL is empty.",
        parse=lambda raw: None if not raw.strip() else _parse_bool(raw),
    ),
    _Spec(
        "EMBEDDED_LISTENER",
        "embedded_listener",
        "",
        "Run the Pub/Sub listener in a thread of the web process (REDIS_URL empty only); default "
        "on when the embedded worker runs without REDIS_URL.",
        parse=lambda raw: None if not raw.strip() else _parse_bool(raw),
    ),
    _Spec(
        "PUBLIC_URL",
        "public_url",
        "http://localhost:5000",
        "Public base URL of this service (OAuth callbacks, webhook URLs shown to users).",
        parse=_strip_slash,
    ),
    _Spec(
        "SALESFORCE_CLIENT_ID",
        "salesforce_client_id",
        "",
        "Consumer key of the Salesforce connected app.",
    ),
    _Spec(
        "SALESFORCE_CLIENT_SECRET",
        "salesforce_client_secret",
        "",
        "Consumer secret of the Salesforce connected app.",
        secret=True,
    ),
    _Spec(
        "SALESFORCE_LOGIN_URL",
        "salesforce_login_url",
        "https://login.salesforce.com",
        "Salesforce login host (https://test.salesforce.com for sandboxes, or the local sandbox).",
        parse=_strip_slash,
    ),
    _Spec(
        "SALESFORCE_SANDBOX_LOGIN_URL",
        "salesforce_sandbox_login_url",
        "https://test.salesforce.com",
        "Salesforce login host of the dashboard's and the API's 'sandbox' choice when connecting.",
        parse=_strip_slash,
    ),
    _Spec(
        "SALESFORCE_API_VERSION",
        "salesforce_api_version",
        "66.0",
        "Salesforce REST/Bulk API version pinned for every call.",
    ),
    _Spec(
        "SALESFORCE_CA_BUNDLE",
        "salesforce_ca_bundle",
        "",
        "Path to a CA bundle trusted for Salesforce calls (the local sandbox's self-signed cert).",
        parse=_optional,
    ),
    _Spec(
        "SALESFORCE_CALL_CLIENT",
        "salesforce_call_client",
        "ctct-sync",
        "Sforce-Call-Options client id marking our own writes, so their change events are dropped.",
    ),
    _Spec(
        "SALESFORCE_PUBSUB_URL",
        "salesforce_pubsub_url",
        "api.pubsub.salesforce.com:7443",
        "Salesforce Pub/Sub API (gRPC, TLS trusting SALESFORCE_CA_BUNDLE) the listener subscribes "
        "to; http:// only to a loopback host.",
        parse=_parse_pubsub_url,
    ),
    _Spec(
        "CC_CLIENT_ID",
        "cc_client_id",
        "",
        "Constant Contact application API key (OAuth client id).",
    ),
    _Spec(
        "CC_CLIENT_SECRET",
        "cc_client_secret",
        "",
        "Constant Contact application secret.",
        secret=True,
    ),
    _Spec(
        "CC_API_URL",
        "cc_api_url",
        "https://api.cc.email/v3",
        "Constant Contact V3 API base URL.",
        parse=_strip_slash,
    ),
    _Spec(
        "CC_AUTH_URL",
        "cc_auth_url",
        "https://authz.constantcontact.com/oauth2/default/v1",
        "Constant Contact OAuth2 authorization server base URL.",
        parse=_strip_slash,
    ),
    _Spec(
        "CC_RATE_PER_SECOND",
        "cc_rate_per_second",
        "4",
        "Constant Contact requests per second allowed for this application.",
        parse=_parse_positive_float,
    ),
    _Spec(
        "CC_DAILY_QUOTA",
        "cc_daily_quota",
        "10000",
        "Constant Contact requests per day allowed for this application (resets 00:00 UTC).",
        parse=_parse_positive_int,
    ),
    _Spec(
        "CC_WEBHOOK_SECRET",
        "cc_webhook_secret",
        "",
        "Secret verifying Constant Contact partner webhooks (x-ctct-hmac-sha256); empty = none.",
        secret=True,
    ),
    _Spec(
        "FLUSH_DELAY_SECONDS",
        "flush_delay_seconds",
        "1.0",
        "Coalescing window: how long a setup's dirty records wait for more before one flush job.",
        parse=_parse_positive_float,
    ),
    _Spec(
        "WEBHOOK_MAX_BYTES",
        "webhook_max_bytes",
        "1048576",
        "Largest webhook body accepted (413 above).",
        parse=_parse_positive_int,
    ),
    _Spec(
        "FULL_SYNC_CC_SHARE",
        "full_sync_cc_share",
        "0.5",
        "Share of the Constant Contact daily quota one Full Sync may spend before it pauses.",
        parse=_parse_share,
    ),
    _Spec(
        "FULL_SYNC_SF_SHARE",
        "full_sync_sf_share",
        "0.5",
        "Share of the Salesforce org's daily API calls one Full Sync may spend before it pauses.",
        parse=_parse_share,
    ),
    _Spec(
        "LOG_LEVEL",
        "log_level",
        "INFO",
        "Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
        parse=_parse_log_level,
    ),
)


@dataclass(frozen=True)
class Settings:
    """The service's configuration: ``Settings.from_env()``, or ``Settings.for_tests()``."""

    secret_key: str
    admin_token: str
    token_encryption_keys: tuple[str, ...]
    database_url: str = f"sqlite:///{DEFAULT_SQLITE_PATH}"
    redis_url: str | None = None
    embedded_worker: bool = True
    embedded_listener: bool = True
    public_url: str = "http://localhost:5000"
    salesforce_client_id: str = ""
    salesforce_client_secret: str = field(default="", repr=False)
    salesforce_login_url: str = "https://login.salesforce.com"
    salesforce_sandbox_login_url: str = "https://test.salesforce.com"
    salesforce_api_version: str = "66.0"
    salesforce_ca_bundle: str | None = None
    salesforce_call_client: str = "ctct-sync"
    salesforce_pubsub_url: str = "https://api.pubsub.salesforce.com:7443"
    cc_client_id: str = ""
    cc_client_secret: str = field(default="", repr=False)
    cc_api_url: str = "https://api.cc.email/v3"
    cc_auth_url: str = "https://authz.constantcontact.com/oauth2/default/v1"
    cc_rate_per_second: float = 4.0
    cc_daily_quota: int = 10000
    cc_webhook_secret: str = field(default="", repr=False)
    flush_delay_seconds: float = 1.0
    webhook_max_bytes: int = 1048576
    full_sync_cc_share: float = 0.5
    full_sync_sf_share: float = 0.5
    log_level: str = "INFO"

    def __repr__(self) -> str:
        # Secrets never reach logs or tracebacks through a repr.
        secret_attrs = {spec.attr for spec in _SPECS if spec.secret}
        parts = [
            f"{f.name}={'***' if f.name in secret_attrs else repr(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
        ]
        return f"Settings({', '.join(parts)})"

    @property
    def embedded(self) -> bool:
        """True when no Redis server is configured and the in-process stand-in is used."""
        return self.redis_url is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse ``environ`` (default ``os.environ``); ``ConfigError`` names every problem."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in _SPECS:
            raw = env.get(spec.name)
            if raw is None or (spec.required and not raw.strip()):
                if spec.required:
                    problems.append(f"{spec.name} is required: {spec.description}")
                    continue
                raw = spec.default or ""
            try:
                values[spec.attr] = spec.parse(raw)
            except ValueError as exc:
                # The value itself may be a secret: name the variable, never echo it.
                problems.append(f"{spec.name} is invalid: {exc}")
        if problems:
            raise ConfigError(problems)
        if values["embedded_worker"] is None:
            values["embedded_worker"] = values["redis_url"] is None
        if values["embedded_listener"] is None:
            # Its changes are flushed by jobs only the embedded worker can run (the queue is in
            # this process), so it follows that worker.
            values["embedded_listener"] = values["redis_url"] is None and values["embedded_worker"]
        elif values["embedded_listener"] and values["redis_url"] is not None:
            # With Redis the listener is a process of its own (`flask --app app listen`): in
            # every web process it would only compete for the leases.
            raise ConfigError(
                ["EMBEDDED_LISTENER is only for REDIS_URL empty; run `flask --app app listen`"]
            )
        return cls(**values)

    @classmethod
    def for_tests(cls, **overrides: Any) -> Settings:
        """Settings with throwaway secrets and an in-memory SQLite store, for tests and tools."""
        values: dict[str, Any] = {
            "secret_key": "test-secret-key",
            "admin_token": "test-admin-token",
            "token_encryption_keys": (Fernet.generate_key().decode(),),
            "database_url": "sqlite://",
            "embedded_worker": False,
            "embedded_listener": False,
        }
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some attributes changed (settings are frozen)."""
        return dataclasses.replace(self, **changes)


def settings_table() -> list[tuple[str, str, str]]:
    """``(variable, default, description)`` rows for the README and ``.env.example``.

    Required variables show ``(required)`` as their default; an empty default shows as ``""``.
    """
    rows = []
    for spec in _SPECS:
        if spec.required:
            default = "(required)"
        elif spec.default == "":
            default = '""'
        else:
            default = str(spec.default)
        rows.append((spec.name, default, spec.description))
    return rows


def env_names() -> list[str]:
    """Every environment variable ``Settings.from_env`` reads."""
    return [spec.name for spec in _SPECS]


def attr_for(name: str) -> str:
    """The ``Settings`` attribute that an environment variable fills."""
    for spec in _SPECS:
        if spec.name == name:
            return spec.attr
    raise KeyError(name)
