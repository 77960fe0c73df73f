"""Tests for middleware.settings: required secrets, URL rewriting, defaults, the config table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from middleware.settings import ConfigError, Settings, env_names, settings_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env() -> dict[str, str]:
    return {
        "SECRET_KEY": "s3cret",
        "ADMIN_TOKEN": "adm-tok-123",
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }


def test_missing_secrets_are_all_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({})
    message = str(info.value)
    for name in ("SECRET_KEY", "ADMIN_TOKEN", "TOKEN_ENCRYPTION_KEY"):
        assert name in message
    assert len(info.value.problems) == 3


def test_blank_secret_counts_as_missing(env: dict[str, str]) -> None:
    env["ADMIN_TOKEN"] = "   "
    with pytest.raises(ConfigError, match="ADMIN_TOKEN is required"):
        Settings.from_env(env)


def test_bad_fernet_key_is_named_without_echoing_it(env: dict[str, str]) -> None:
    env["TOKEN_ENCRYPTION_KEY"] = "not-a-key-but-a-secret-value"
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert "TOKEN_ENCRYPTION_KEY is invalid" in str(info.value)
    assert "not-a-key-but-a-secret-value" not in str(info.value)


def test_invalid_values_are_collected_with_missing_ones() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"CC_RATE_PER_SECOND": "fast", "LOG_LEVEL": "LOUD"})
    text = str(info.value)
    assert "CC_RATE_PER_SECOND is invalid" in text
    assert "LOG_LEVEL is invalid" in text
    assert "SECRET_KEY is required" in text


def test_defaults(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert settings.database_url == "sqlite:///instance/middleware.sqlite3"
    assert settings.redis_url is None
    assert settings.embedded and settings.embedded_worker
    assert settings.salesforce_login_url == "https://login.salesforce.com"
    assert settings.salesforce_api_version == "66.0"
    assert settings.salesforce_call_client == "ctct-sync"
    assert settings.cc_api_url == "https://api.cc.email/v3"
    assert settings.cc_auth_url == "https://authz.constantcontact.com/oauth2/default/v1"
    assert settings.cc_rate_per_second == 4.0
    assert settings.cc_daily_quota == 10000
    assert settings.flush_delay_seconds == 1.0
    assert settings.webhook_max_bytes == 1024 * 1024
    assert settings.log_level == "INFO"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:p@host:5432/db", "postgresql+psycopg://u:p@host:5432/db"),
        ("postgresql://u@host/db", "postgresql+psycopg://u@host/db"),
        ("postgresql+psycopg://u@host/db", "postgresql+psycopg://u@host/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_rewrite(env: dict[str, str], raw: str, expected: str) -> None:
    env["DATABASE_URL"] = raw
    assert Settings.from_env(env).database_url == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("api.pubsub.salesforce.com:7443", "https://api.pubsub.salesforce.com:7443"),
        ("https://api.pubsub.salesforce.com:7443/", "https://api.pubsub.salesforce.com:7443"),
        ("http://127.0.0.1:7011", "http://127.0.0.1:7011"),
        ("http://localhost:7011", "http://localhost:7011"),
        ("[::1]:7443", "https://[::1]:7443"),
    ],
)
def test_pubsub_url_forms(env: dict[str, str], raw: str, expected: str) -> None:
    env["SALESFORCE_PUBSUB_URL"] = raw
    assert Settings.from_env(env).salesforce_pubsub_url == expected


def test_the_pubsub_default_is_salesforce_over_tls(env: dict[str, str]) -> None:
    assert (
        Settings.from_env(env).salesforce_pubsub_url == Settings.for_tests().salesforce_pubsub_url
    )
    assert Settings.for_tests().salesforce_pubsub_url == "https://api.pubsub.salesforce.com:7443"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("api.pubsub.salesforce.com", "name the port"),
        ("api.pubsub.salesforce.com:port", "port must be a number"),
        ("http://api.pubsub.salesforce.com:7443", "only to this machine"),
        ("grpc://api.pubsub.salesforce.com:7443", "expected host:port"),
        ("https://api.pubsub.salesforce.com:7443/path", "expected host:port"),
    ],
)
def test_bad_pubsub_urls_are_named(env: dict[str, str], raw: str, why: str) -> None:
    env["SALESFORCE_PUBSUB_URL"] = raw
    with pytest.raises(ConfigError, match=f"SALESFORCE_PUBSUB_URL is invalid: .*{why}"):
        Settings.from_env(env)


def test_redis_url_turns_embedded_worker_off_by_default(env: dict[str, str]) -> None:
    env["REDIS_URL"] = "rediss://:pw@example.com:6380"
    settings = Settings.from_env(env)
    assert settings.redis_url == "rediss://:pw@example.com:6380"
    assert not settings.embedded and not settings.embedded_worker
    env["EMBEDDED_WORKER"] = "yes"
    assert Settings.from_env(env).embedded_worker is True


def test_key_rotation_list(env: dict[str, str]) -> None:
    keys = [Fernet.generate_key().decode() for _ in range(2)]
    env["TOKEN_ENCRYPTION_KEY"] = f" {keys[0]} , {keys[1]} "
    assert Settings.from_env(env).token_encryption_keys == tuple(keys)


def test_urls_lose_trailing_slash(env: dict[str, str]) -> None:
    env["PUBLIC_URL"] = "https://sync.example.org/"
    env["CC_API_URL"] = "http://127.0.0.1:8002/v3/"
    settings = Settings.from_env(env)
    assert settings.public_url == "https://sync.example.org"
    assert settings.cc_api_url == "http://127.0.0.1:8002/v3"


def test_repr_hides_secrets(env: dict[str, str]) -> None:
    env["CC_CLIENT_SECRET"] = "cc-secret-value"
    text = repr(Settings.from_env(env))
    for secret in ("s3cret", "adm-tok-123", env["TOKEN_ENCRYPTION_KEY"], "cc-secret-value"):
        assert secret not in text


def test_settings_are_frozen(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    with pytest.raises(AttributeError):
        settings.log_level = "DEBUG"  # type: ignore[misc]
    assert settings.replace(log_level="DEBUG").log_level == "DEBUG"


def test_table_covers_every_variable_with_a_description() -> None:
    rows = settings_table()
    assert [name for name, _, _ in rows] == env_names()
    required = {name for name, default, _ in rows if default == "(required)"}
    assert required == {"SECRET_KEY", "ADMIN_TOKEN", "TOKEN_ENCRYPTION_KEY"}
    assert all(description.strip() for _, _, description in rows)


def test_env_example_lists_every_variable() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert set(env_names()) <= listed


def test_embedded_listener_follows_the_embedded_worker(env: dict[str, str]) -> None:
    assert Settings.from_env(env).embedded_listener is True
    env["EMBEDDED_WORKER"] = "no"
    assert Settings.from_env(env).embedded_listener is False
    env["EMBEDDED_LISTENER"] = "yes"
    assert Settings.from_env(env).embedded_listener is True
    env.pop("EMBEDDED_WORKER")
    env["EMBEDDED_LISTENER"] = "off"
    assert Settings.from_env(env).embedded_listener is False


def test_embedded_listener_is_off_with_redis_and_refused_if_asked(env: dict[str, str]) -> None:
    env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    env["EMBEDDED_WORKER"] = "yes"
    assert Settings.from_env(env).embedded_listener is False
    env["EMBEDDED_LISTENER"] = "yes"
    with pytest.raises(ConfigError, match="EMBEDDED_LISTENER is only for REDIS_URL empty"):
        Settings.from_env(env)
