"""The claim that lets test runs and benchmarks share TEST_REDIS_URL by taking turns."""

from __future__ import annotations

import threading
import time

import pytest

from tests import redis_claim
from tests.redis_claim import CLAIM_KEY, ClaimTimeout, claimed_redis

pytestmark = pytest.mark.integration


def test_a_second_user_waits_for_the_first_and_finds_the_database_empty() -> None:
    entered = threading.Event()
    left: list[float] = []

    def first() -> None:
        with claimed_redis() as r:
            r.set("left-behind", "1")
            entered.set()
            time.sleep(0.6)
            left.append(time.monotonic())

    holder = threading.Thread(target=first)
    holder.start()
    assert entered.wait(60)
    with claimed_redis() as r:
        arrived = time.monotonic()
        assert r.get("left-behind") is None  # emptied between the two users
        assert r.exists(CLAIM_KEY)  # ... but not of the claim it now holds
    holder.join()
    assert left and arrived >= left[0]


def test_a_user_that_cannot_get_the_claim_in_time_gives_up_and_touches_nothing() -> None:
    with claimed_redis() as r:
        r.set("mine", "1")
        with pytest.raises(ClaimTimeout), claimed_redis(wait_seconds=0.3):
            pass
        assert r.get("mine") == b"1"


def test_the_claim_of_a_holder_that_died_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    with claimed_redis() as r:
        monkeypatch.setattr(redis_claim, "CLAIM_SECONDS", 1)
        # A run killed while holding: its claim is never deleted, only its expiry frees it.
        r.set(CLAIM_KEY, "dead-run", ex=1)
        with claimed_redis(wait_seconds=10) as again:
            assert again.get(CLAIM_KEY) != b"dead-run"
