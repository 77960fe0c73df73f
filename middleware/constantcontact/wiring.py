"""Builds Constant Contact clients from settings: the shared limiters, token source and client.

Jobs and web views call these instead of assembling the parts themselves, so that every client of
one application draws from the same limiter keys (Constant Contact counts per application) and
every connection refreshes under the same lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from middleware.constantcontact.client import ConstantContactClient
from middleware.constantcontact.limiter import LocalLimiter, RateLimiter, RedisLimiter
from middleware.constantcontact.oauth import (
    OAuthClient,
    RedisRefreshLock,
    RefreshingTokenSource,
    TokenStore,
    thread_lock,
)

# Our grant times are not Constant Contact's arrival times: network jitter can land five of our
# "four per second" in one of its one-second windows, and every 429 still counts against the
# daily quota. A window 10% longer than the vendor's costs little and keeps us clear.
WINDOW_SLACK = 1.1

# Share of the daily quota kept back from background work, so a person connecting an account or
# pressing "Sync now" late in the day still gets through.
DAILY_RESERVE = 0.02

_local_limiters: dict[tuple[str, str], LocalLimiter] = {}
_local_locks: dict[str, Callable[[], Any]] = {}


def _rate(per_second: float) -> tuple[int, float]:
    """A whole number of calls per window for fractional rates (2.5/s → 5 per 2 s)."""
    if per_second >= 1 and float(per_second).is_integer():
        return int(per_second), 1.0
    window = 1.0 / per_second if per_second < 1 else 2.0
    return max(1, math.floor(per_second * window)), window


def api_limiter(
    settings: Any,
    redis: Any = None,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RateLimiter:
    """The application's API limiter: in Redis when given one, else one per process (embedded)."""
    rate, per = _rate(settings.cc_rate_per_second)
    per *= WINDOW_SLACK
    quota = int(settings.cc_daily_quota)
    daily_limit = max(1, quota - math.ceil(quota * DAILY_RESERVE)) if quota else 0
    app = settings.cc_client_id or "default"
    if redis is not None:
        return RedisLimiter(
            redis, f"cc:limit:{app}", rate, per, daily_limit=daily_limit, clock=clock, sleep=sleep
        )
    key = (app, "api")
    if key not in _local_limiters:
        _local_limiters[key] = LocalLimiter(
            rate, per, daily_limit=daily_limit, clock=clock, sleep=sleep
        )
    return _local_limiters[key]


def token_limiter(
    settings: Any,
    redis: Any = None,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RateLimiter:
    """The token endpoint's own limit: 1 request/s per application."""
    app = settings.cc_client_id or "default"
    if redis is not None:
        return RedisLimiter(redis, f"cc:limit:{app}:token", 1, 1.0, clock=clock, sleep=sleep)
    key = (app, "token")
    if key not in _local_limiters:
        _local_limiters[key] = LocalLimiter(1, 1.0, clock=clock, sleep=sleep)
    return _local_limiters[key]


def oauth_client(
    settings: Any, session: requests.Session, redis: Any = None, **kwargs: Any
) -> OAuthClient:
    return OAuthClient(
        settings.cc_client_id,
        settings.cc_client_secret,
        session,
        auth_url=settings.cc_auth_url,
        limiter=token_limiter(settings, redis),
        **kwargs,
    )


def refresh_lock(connection_id: str, redis: Any = None) -> Callable[[], Any]:
    """The lock serialising one connection's refreshes (Redis across processes, else a mutex)."""
    if redis is not None:
        return RedisRefreshLock(redis, f"cc:refresh-lock:{connection_id}")
    if connection_id not in _local_locks:
        _local_locks[connection_id] = thread_lock()
    return _local_locks[connection_id]


def build_client(
    settings: Any,
    session: requests.Session,
    store: TokenStore,
    connection_id: str,
    redis: Any = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> ConstantContactClient:
    """A client for one stored Constant Contact connection, sharing the application's limits."""
    oauth = oauth_client(settings, session, redis, now=now)
    tokens = RefreshingTokenSource(
        oauth,
        store,
        refresh_lock(connection_id, redis),
        now=now,
        sleep=sleep,
        connection_id=connection_id,
    )
    return ConstantContactClient(
        settings.cc_api_url,
        session,
        tokens,
        api_limiter(settings, redis, sleep=sleep),
        now=now,
        sleep=sleep,
    )
