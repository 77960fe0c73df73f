"""The application-wide limiter: sliding window, daily budget, blocks – in-process and on Redis."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from datetime import UTC, datetime

import pytest

from middleware.constantcontact import errors as e
from middleware.constantcontact.limiter import LocalLimiter, RedisLimiter
from middleware.constantcontact.oauth import RedisRefreshLock

START = datetime(2026, 3, 14, 23, 59, 0, tzinfo=UTC).timestamp()


class FakeTime:
    """A clock that moves only when someone sleeps."""

    def __init__(self, start: float = START):
        self.t = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def max_in_any_window(times: list[float], per: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= per - 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_local_limiter_lets_a_burst_of_rate_through_then_spaces_calls():
    clock = FakeTime()
    limiter = LocalLimiter(4, 1.0, clock=clock, sleep=clock.sleep)
    granted = []
    for _ in range(12):
        limiter.acquire()
        granted.append(clock())
    assert granted[:4] == [START] * 4
    assert max_in_any_window(granted, 1.0) == 4
    assert granted[-1] - START == pytest.approx(2.0)


def test_daily_budget_warns_once_then_stops_until_midnight(caplog):
    clock = FakeTime()
    limiter = LocalLimiter(100, 1.0, daily_limit=10, warn_at=0.5, clock=clock, sleep=clock.sleep)
    with caplog.at_level("WARNING"):
        for _ in range(10):
            limiter.acquire()
    warnings = [r for r in caplog.records if "daily budget" in r.getMessage()]
    assert len(warnings) == 1
    with pytest.raises(e.QuotaExceeded) as info:
        limiter.acquire()
    assert info.value.resume_at == datetime(2026, 3, 15, tzinfo=UTC)
    assert limiter.usage().remaining == 0
    clock.t += 61  # past midnight UTC: a new day, a new budget
    limiter.acquire()
    assert limiter.usage().used == 1


def test_local_limiter_threads_never_exceed_the_rate():
    clock = FakeTime()
    lock = threading.Lock()

    def sleep(seconds):
        with lock:
            clock.t += seconds / 8  # eight sleepers share the advancing clock

    granted: list[float] = []
    limiter = LocalLimiter(4, 1.0, clock=clock, sleep=sleep, on_grant=granted.append)

    def work():
        for _ in range(10):
            limiter.acquire()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(granted) == 80
    assert max_in_any_window(granted, 1.0) == 4
    assert limiter.usage().used == 80


@pytest.fixture
def redis_client(real_redis):
    """The suite's real Redis database (TEST_REDIS_URL) and a key prefix of this test's own."""
    yield real_redis, f"test:cc:{uuid.uuid4().hex}"


@pytest.mark.integration
def test_two_clients_sharing_redis_never_exceed_the_rate(redis_client):
    redis, prefix = redis_client
    clock = FakeTime()
    a = RedisLimiter(redis, prefix, 4, 1.0, clock=clock, sleep=clock.sleep)
    b = RedisLimiter(redis, prefix, 4, 1.0, clock=clock, sleep=clock.sleep)
    granted = []
    for i in range(40):
        (a if i % 2 else b).acquire()
        granted.append(clock())
    assert max_in_any_window(granted, 1.0) == 4
    assert granted[-1] - START == pytest.approx(9.0)  # as fast as allowed, no slower
    assert a.usage().used == 40 == b.usage().used


@pytest.mark.integration
def test_redis_daily_budget_and_block_are_shared(redis_client):
    redis, prefix = redis_client
    clock = FakeTime()
    a = RedisLimiter(redis, prefix, 100, 1.0, daily_limit=3, clock=clock, sleep=clock.sleep)
    b = RedisLimiter(redis, prefix, 100, 1.0, daily_limit=3, clock=clock, sleep=clock.sleep)
    a.acquire()
    b.acquire()
    a.acquire()
    with pytest.raises(e.QuotaExceeded):
        b.acquire()
    clock.t += 60  # next UTC day
    b.acquire()
    resume = datetime.fromtimestamp(clock.t + 3600, UTC)
    a.block_until(resume)
    with pytest.raises(e.QuotaExceeded) as info:
        b.acquire()
    assert info.value.resume_at == resume


@pytest.mark.integration
def test_redis_clock_going_backwards_cannot_open_the_window(redis_client):
    redis, prefix = redis_client
    ahead = FakeTime(START + 0.5)
    behind = FakeTime(START)
    fast = RedisLimiter(redis, prefix, 2, 1.0, clock=ahead, sleep=ahead.sleep)
    slow = RedisLimiter(redis, prefix, 2, 1.0, clock=behind, sleep=behind.sleep)
    fast.acquire()
    fast.acquire()
    slow.acquire()  # the script measures from the later clock, so it must wait a whole window
    assert behind.slept and sum(behind.slept) >= 1.0 - 1e-6


def _hammer(url: str, prefix: str, n: int, out) -> None:  # runs in a child process
    import redis as redis_lib

    limiter = RedisLimiter(redis_lib.Redis.from_url(url), prefix, 5, 0.2, on_grant=out.put)
    for _ in range(n):
        limiter.acquire()


@pytest.mark.integration
def test_processes_sharing_redis_never_exceed_the_rate_in_real_time(redis_client, real_redis_url):
    # The real thing, briefly: 3 processes, 24 calls at 5 per 0.2 s take about 0.8 s.
    _, prefix = redis_client
    redis_url = real_redis_url
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(redis_url, prefix, 8, out)) for _ in range(3)]
    for p in procs:
        p.start()
    times = [out.get(timeout=10) for _ in range(24)]
    for p in procs:
        p.join(10)
    # Grant times are the script's own, to the microsecond.
    assert max_in_any_window(times, 0.2 - 1e-5) == 5
    assert max(times) - min(times) >= 0.2 * (24 // 5) - 0.05


@pytest.mark.integration
def test_redis_refresh_lock_is_exclusive_across_clients(redis_client):
    import redis as redis_lib

    redis, prefix = redis_client
    other = redis_lib.Redis(connection_pool=redis.connection_pool)
    holder = RedisRefreshLock(redis, f"{prefix}:refresh", timeout=5, blocking_timeout=0.05)
    waiter = RedisRefreshLock(other, f"{prefix}:refresh", timeout=5, blocking_timeout=0.05)
    with holder(), pytest.raises(e.ServerError), waiter():
        pass
    with waiter():
        pass


@pytest.mark.integration
def test_redis_block_keeps_the_later_time(redis_client):
    redis, prefix = redis_client
    clock = FakeTime()
    limiter = RedisLimiter(redis, prefix, 4, 1.0, clock=clock, sleep=clock.sleep)
    later = datetime.fromtimestamp(clock.t + 3600, UTC)
    limiter.block_until(later)
    limiter.block_until(datetime.fromtimestamp(clock.t + 60, UTC))
    clock.t += 120
    with pytest.raises(e.QuotaExceeded) as info:
        limiter.acquire()
    assert info.value.resume_at == later
    clock.t += 3600
    limiter.acquire()


def _unblock_lifts_the_block_for_every_client(make) -> None:
    clock = FakeTime()
    a, b = make(clock), make(clock)
    resume = datetime.fromtimestamp(clock.t + 6 * 3600, UTC)
    a.block_until(resume)
    assert b.blocked_until() == resume
    with pytest.raises(e.QuotaExceeded):
        b.acquire()
    a.unblock()  # an operator's resume: try again now
    assert b.blocked_until() is None
    b.acquire()
    # Constant Contact saying quota_exceeded again blocks again.
    b.block_until(resume)
    with pytest.raises(e.QuotaExceeded):
        a.acquire()


def test_local_unblock_lifts_a_block_at_once():
    shared = {}

    def make(clock):
        return shared.setdefault("l", LocalLimiter(4, 1.0, clock=clock, sleep=clock.sleep))

    _unblock_lifts_the_block_for_every_client(make)


@pytest.mark.integration
def test_redis_unblock_lifts_a_block_for_every_worker(real_redis):
    _unblock_lifts_the_block_for_every_client(
        lambda clock: RedisLimiter(real_redis, "cc:limit:t", 4, 1.0, clock=clock, sleep=clock.sleep)
    )


def test_fakeredis_unblock_lifts_a_block_for_every_worker(fake_redis):
    _unblock_lifts_the_block_for_every_client(
        lambda clock: RedisLimiter(fake_redis, "cc:limit:t", 4, 1.0, clock=clock, sleep=clock.sleep)
    )
