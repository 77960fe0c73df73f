"""Rate limiting for Constant Contact: 4 requests/s and 10,000/day per *application*, shared by all.

Constant Contact counts requests per API key, across every connected account and every worker
(api-notes §2), and sends no rate-limit headers, so we meter ourselves before each call:

- :class:`RedisLimiter` is what production uses: one atomic Lua script per acquisition keeps a
  sliding-window log (a sorted set) plus a per-UTC-day counter in Redis, so any number of worker
  processes on any number of machines together never exceed the rate.
- :class:`LocalLimiter` is the same contract in-process, for the embedded mode (one process).

Both block in ``acquire()`` (with an injected ``sleep`` and clock), count the day's calls, log a
warning once a day when ``warn_at`` is crossed, and raise :class:`QuotaExceeded` instead of sending
a call past ``daily_limit`` – set it somewhat below the vendor's 10,000 so that a budget is left for
interactive actions. ``block_until`` lets the client stop every worker at once when Constant
Contact itself answers ``quota_exceeded``; ``unblock`` lifts that when an operator resumes (the
next call asks Constant Contact again, and a second ``quota_exceeded`` blocks again).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from middleware.constantcontact.errors import QuotaExceeded, next_utc_midnight

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # seconds since the epoch (wall clock: the daily quota is per UTC day)
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class DailyUsage:
    """Calls counted today (UTC) against the daily budget."""

    day: str  # YYYY-MM-DD, UTC
    used: int
    limit: int  # 0 = no local limit

    @property
    def remaining(self) -> int | None:
        return None if not self.limit else max(self.limit - self.used, 0)


class RateLimiter(Protocol):
    """What the client needs from a limiter."""

    def acquire(self) -> None:
        """Wait until one more call fits in the rate; count it. Raises ``QuotaExceeded``."""

    def block_until(self, when: datetime) -> None:
        """Refuse every acquisition (all workers) until ``when``."""

    def unblock(self) -> None:
        """Lift a ``block_until`` at once (an operator's resume: try again now)."""

    def blocked_until(self) -> datetime | None:
        """When a ``block_until`` in force ends, or ``None``."""

    def usage(self) -> DailyUsage:
        """Today's count."""


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class _Common:
    def __init__(
        self,
        *,
        rate: int,
        per: float,
        daily_limit: int,
        warn_at: float,
        clock: Clock,
        sleep: Sleep,
        max_wait: float,
        on_grant: Callable[[float], None] | None = None,
    ) -> None:
        if rate < 1 or per <= 0:
            raise ValueError("rate must be ≥ 1 per a positive period")
        self.rate = rate
        self.per = per
        self.daily_limit = daily_limit
        self.warn_at = warn_at
        self.clock = clock
        self.sleep = sleep
        # A single wait longer than this means something is wrong (clock jump, a stuck key): we
        # would rather re-check than sleep for minutes.
        self.max_wait = max_wait
        # Called with the grant time after each acquisition (metrics, tests).
        self.on_grant = on_grant
        self._warned_day = ""

    def _quota_error(
        self, now: float, used: int, blocked_until: float | None = None
    ) -> QuotaExceeded:
        current = datetime.fromtimestamp(now, UTC)
        if blocked_until:
            resume = datetime.fromtimestamp(blocked_until, UTC)
            message = f"Constant Contact calls paused until {resume:%Y-%m-%d %H:%M} UTC"
        else:
            resume = next_utc_midnight(current)
            message = f"daily budget of {self.daily_limit} Constant Contact calls used ({used})"
        return QuotaExceeded(message, resume_at=resume, status=None, error_key="local_budget")

    def _maybe_warn(self, day: str, used: int) -> None:
        if not self.daily_limit or not self.warn_at or self._warned_day == day:
            return
        if used >= self.daily_limit * self.warn_at:
            self._warned_day = day
            log.warning(
                "Constant Contact daily budget %d%% used: %d of %d calls on %s",
                int(self.warn_at * 100),
                used,
                self.daily_limit,
                day,
            )


class LocalLimiter(_Common):
    """In-process sliding-window limiter (embedded mode: one process, any number of threads)."""

    def __init__(
        self,
        rate: int = 4,
        per: float = 1.0,
        *,
        daily_limit: int = 0,
        warn_at: float = 0.8,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        max_wait: float = 60.0,
        on_grant: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            rate=rate,
            per=per,
            daily_limit=daily_limit,
            warn_at=warn_at,
            clock=clock,
            sleep=sleep,
            max_wait=max_wait,
            on_grant=on_grant,
        )
        self._lock = threading.Lock()
        self._granted: deque[float] = deque()
        self._day = ""
        self._used = 0
        self._blocked_until = 0.0
        self._last = 0.0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = max(self.clock(), self._last)  # never let a clock step back open the window
                if now < self._blocked_until:
                    raise self._quota_error(now, self._used, self._blocked_until)
                day = _day(now)
                if day != self._day:
                    self._day, self._used = day, 0
                while self._granted and self._granted[0] <= now - self.per:
                    self._granted.popleft()
                if len(self._granted) < self.rate:
                    if self.daily_limit and self._used >= self.daily_limit:
                        raise self._quota_error(now, self._used)
                    self._granted.append(now)
                    self._last = now
                    self._used += 1
                    self._maybe_warn(day, self._used)
                    if self.on_grant:
                        self.on_grant(now)
                    return
                wait = self._granted[0] + self.per - now
            self.sleep(min(max(wait, 0.001), self.max_wait))

    def block_until(self, when: datetime) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, when.timestamp())

    def unblock(self) -> None:
        with self._lock:
            self._blocked_until = 0.0

    def blocked_until(self) -> datetime | None:
        with self._lock:
            if self._blocked_until <= max(self.clock(), self._last):
                return None
            return datetime.fromtimestamp(self._blocked_until, UTC)

    def usage(self) -> DailyUsage:
        with self._lock:
            today = _day(max(self.clock(), self._last))
            return DailyUsage(today, self._used if self._day == today else 0, self.daily_limit)


# KEYS: window zset, day counter, last-now, blocked-until
# ARGV: now, per, rate, member, daily_limit, day_ttl_seconds
# Returns {status, value[, granted_at]}: 1 = granted (value = calls today), 0 = wait (seconds),
# -1 = daily budget used (value = calls today), -2 = blocked (value = until). Numbers go back as
# strings because Redis truncates Lua numbers to integers, formatted to the microsecond because
# Lua's tostring keeps only 14 digits (a tenth of a millisecond at today's epoch).
_ACQUIRE_LUA = """
local now = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local daily_limit = tonumber(ARGV[5])
local blocked = tonumber(redis.call('GET', KEYS[4]) or '0')
if now < blocked then
  return {-2, tostring(blocked)}
end
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if now < last then now = last end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - per)
if redis.call('ZCARD', KEYS[1]) >= rate then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, string.format('%.6f', tonumber(oldest[2]) + per - now)}
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if daily_limit > 0 and used >= daily_limit then
  return {-1, tostring(used)}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(per * 1000) + 1000)
redis.call('SET', KEYS[3], string.format('%.6f', now), 'PX', math.ceil(per * 1000) + 1000)
used = redis.call('INCR', KEYS[2])
if used == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6])) end
return {1, tostring(used), string.format('%.6f', now)}
"""


# Keep the later of two blocks (two workers hitting quota_exceeded at once).
_BLOCK_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
end
return 1
"""


class RedisLimiter(_Common):
    """Sliding-window limiter shared through Redis by every worker of the application.

    ``prefix`` names the budget: use one per Constant Contact application (client id), not per
    connected account, because that is how Constant Contact counts. Time comes from ``clock`` on
    the caller's side; the script never lets time run backwards, so small clock differences
    between machines can only make us slower, never faster.
    """

    def __init__(
        self,
        redis: Any,
        prefix: str = "cc:limit",
        rate: int = 4,
        per: float = 1.0,
        *,
        daily_limit: int = 0,
        warn_at: float = 0.8,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        max_wait: float = 60.0,
        on_grant: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            rate=rate,
            per=per,
            daily_limit=daily_limit,
            warn_at=warn_at,
            clock=clock,
            sleep=sleep,
            max_wait=max_wait,
            on_grant=on_grant,
        )
        self.redis = redis
        self.prefix = prefix
        self._script = redis.register_script(_ACQUIRE_LUA)
        self._block = redis.register_script(_BLOCK_LUA)

    def _keys(self, day: str) -> list[str]:
        p = self.prefix
        return [f"{p}:window", f"{p}:day:{day}", f"{p}:last", f"{p}:blocked"]

    def acquire(self) -> None:
        while True:
            now = self.clock()
            day = _day(now)
            status, value, *granted_at = self._script(
                keys=self._keys(day),
                args=[
                    repr(now),
                    repr(self.per),
                    self.rate,
                    uuid.uuid4().hex,
                    self.daily_limit,
                    2 * 86400,
                ],
            )
            status = int(status)
            if status == 1:
                self._maybe_warn(day, int(value))
                if self.on_grant:
                    self.on_grant(float(granted_at[0]))
                return
            if status == -1:
                raise self._quota_error(now, int(value))
            if status == -2:
                raise self._quota_error(now, 0, float(value))
            self.sleep(min(max(float(value), 0.001), self.max_wait))

    def block_until(self, when: datetime) -> None:
        until = when.timestamp()
        ttl_ms = max(int((until - self.clock()) * 1000) + 1000, 1000)
        self._block(keys=[self._keys("")[3]], args=[repr(until), ttl_ms])

    def unblock(self) -> None:
        self.redis.delete(self._keys("")[3])

    def blocked_until(self) -> datetime | None:
        raw = self.redis.get(self._keys("")[3])
        until = float(raw) if raw else 0.0
        return datetime.fromtimestamp(until, UTC) if until > self.clock() else None

    def usage(self) -> DailyUsage:
        day = _day(self.clock())
        return DailyUsage(day, int(self.redis.get(self._keys(day)[1]) or 0), self.daily_limit)


class NoLimiter:
    """For tests and one-off tools that must not wait: counts but never blocks."""

    def __init__(self) -> None:
        self.count = 0

    def acquire(self) -> None:
        self.count += 1

    def block_until(self, when: datetime) -> None:
        pass

    def unblock(self) -> None:
        pass

    def blocked_until(self) -> datetime | None:
        return None

    def usage(self) -> DailyUsage:
        return DailyUsage(_day(time.time()), self.count, 0)
