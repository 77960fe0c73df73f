"""The one real Redis database the tests and benchmarks own, and the claim that serialises them.

``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) names a database that belongs to the
test suite: it is emptied before and after each use, so it must not hold anything else. No other
database on that server is ever read or written. Runs that share the URL (two ``make test`` at
once, a benchmark during a test run) take turns: each use first sets a claim key in that same
database (``SET NX`` with a short expiry that a thread keeps renewing), waits while another run
holds it, and deletes it afterwards. A run that dies leaves a claim that expires by itself.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or DEFAULT_TEST_REDIS_URL
CLAIM_KEY = "ctct-test:claim"
CLAIM_SECONDS = 30  # how long a dead holder blocks the others
WAIT_SECONDS = 1800  # a full-size benchmark may hold the claim this long


class ClaimTimeout(RuntimeError):
    """Another run held the test database for longer than we were willing to wait."""


def empty_except_claim(client: Redis) -> None:
    """Delete every key of the database but the claim (FLUSHDB would drop the claim too)."""
    batch: list[bytes] = []
    for key in client.scan_iter(count=1000):
        if key != CLAIM_KEY.encode():
            batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def _take(client: Redis, token: str, wait_seconds: float, on_wait: str) -> None:
    deadline = time.monotonic() + wait_seconds
    told = False
    while not client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_SECONDS):
        if time.monotonic() > deadline:
            raise ClaimTimeout(f"{redact(client)} stayed claimed by another run")
        if on_wait and not told:
            print(on_wait, flush=True)
            told = True
        time.sleep(0.2)


def redact(client: Redis) -> str:
    """host:port/db of a client, for messages (never its password)."""
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"


@contextmanager
def claimed_redis(
    url: str = TEST_REDIS_URL, *, wait_seconds: float = WAIT_SECONDS, on_wait: str = ""
) -> Iterator[Redis]:
    """The test database, claimed for this caller alone and emptied before and after."""
    client = Redis.from_url(url, socket_connect_timeout=2)
    token = uuid.uuid4().hex
    try:
        _take(client, token, wait_seconds, on_wait)
    except BaseException:
        client.close()
        raise
    stop = threading.Event()

    def keep_claim() -> None:
        while not stop.wait(CLAIM_SECONDS / 3):
            client.expire(CLAIM_KEY, CLAIM_SECONDS)

    keeper = threading.Thread(target=keep_claim, name="test-redis-claim", daemon=True)
    keeper.start()
    try:
        empty_except_claim(client)
        yield client
    finally:
        stop.set()
        keeper.join()
        try:
            empty_except_claim(client)
        finally:
            # Release only our own claim: compare and delete in one step.
            client.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then"
                " return redis.call('del', KEYS[1]) end return 0",
                1,
                CLAIM_KEY,
                token,
            )
            client.close()
