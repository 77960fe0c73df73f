"""Wiring: clients of one application share one limiter; fractional rates; a working client."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from middleware.constantcontact import wiring
from middleware.constantcontact.limiter import LocalLimiter, RedisLimiter
from middleware.constantcontact.oauth import MemoryTokenStore, RefreshingTokenSource, Tokens

from .fakes import ScriptedSession, response


@dataclass
class FakeSettings:
    cc_client_id: str
    cc_client_secret: str = "secret"
    cc_api_url: str = "https://api.cc.test/v3"
    cc_auth_url: str = "https://authz.cc.test/oauth2/default/v1"
    cc_rate_per_second: float = 4.0
    cc_daily_quota: int = 10_000


@pytest.mark.parametrize(
    ("per_second", "expected"),
    [(4.0, (4, 1.0)), (10.0, (10, 1.0)), (2.5, (5, 2.0)), (0.5, (1, 2.0)), (1.0, (1, 1.0))],
)
def test_fractional_rates_become_whole_calls_per_window(per_second, expected):
    assert wiring._rate(per_second) == expected


def test_embedded_limiter_is_shared_per_application_and_stops_before_the_quota():
    app = f"app-{uuid.uuid4().hex}"
    one = wiring.api_limiter(FakeSettings(app))
    two = wiring.api_limiter(FakeSettings(app))
    other = wiring.api_limiter(FakeSettings(f"{app}-other"))
    assert isinstance(one, LocalLimiter)
    assert one is two and one is not other
    assert one.daily_limit == 9_800
    assert wiring.token_limiter(FakeSettings(app)).rate == 1


def test_redis_limiter_keys_are_per_application():
    import fakeredis

    redis = fakeredis.FakeRedis()
    limiter = wiring.api_limiter(FakeSettings("abc"), redis)
    assert isinstance(limiter, RedisLimiter)
    assert limiter.prefix == "cc:limit:abc"
    limiter.acquire()
    assert limiter.usage().used == 1
    assert wiring.api_limiter(FakeSettings("abc"), redis).usage().used == 1


def test_build_client_refreshes_and_calls_with_the_stored_connection():
    now = datetime(2026, 3, 14, tzinfo=UTC)
    store = MemoryTokenStore(Tokens("a0", "r0", now + timedelta(hours=1)))

    def answer(sent):
        return response(200, {"contact_id": "c1"})

    session = ScriptedSession([answer])
    client = wiring.build_client(
        FakeSettings(f"app-{uuid.uuid4().hex}"), session, store, "conn-1", now=lambda: now
    )  # type: ignore[arg-type]
    assert isinstance(client.tokens, RefreshingTokenSource)
    assert client.get_contact("c1") == {"contact_id": "c1"}
    assert session.sent[0].url == "https://api.cc.test/v3/contacts/c1"
    assert session.sent[0].headers["Authorization"] == "Bearer a0"
    assert wiring.refresh_lock("conn-1") is wiring.refresh_lock("conn-1")


def test_token_source_reads_the_store_only_when_needed():
    now = [datetime(2026, 3, 14, tzinfo=UTC)]

    class CountingStore(MemoryTokenStore):
        loads = 0

        def load(self):
            self.loads += 1
            return super().load()

    store = CountingStore(Tokens("a0", "r0", now[0] + timedelta(hours=1)))
    source = RefreshingTokenSource(None, store, wiring.refresh_lock("c-2"), now=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(5):
        assert source.access_token() == "a0"
    assert store.loads == 1
    # Another worker refreshed meanwhile; near expiry we read the store again and take its pair.
    store.save(Tokens("a1", "r1", now[0] + timedelta(days=1)), 1)
    now[0] += timedelta(minutes=56)
    assert source.access_token() == "a1"
    assert store.loads == 2
