"""The intake's dirty sets: atomic add with dedupe, take/ack that never loses a newer change."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime

import pytest
from redis import Redis
from redis.exceptions import RedisError

from middleware import intake
from middleware.salesforce.events import ChangeHint


def hint(
    key: str, ids: tuple[str, ...], entity: str = "Contact", kind: str = "UPDATE"
) -> ChangeHint:
    return ChangeHint(
        entity=entity,
        record_ids=ids,
        change_type=kind,
        is_own_echo=False,
        event_key=key,
        transaction_key=None,
        commit_timestamp=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
        changed_fields=None,
    )


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def redis(request, fake_redis):
    return fake_redis if request.param == "fake" else request.getfixturevalue("real_redis")


def test_duplicate_events_are_counted_not_recorded_twice(redis) -> None:
    first = intake.add_hints(redis, 7, [hint("e1", ("003A",)), hint("e2", ("003B", "003C"))])
    again = intake.add_hints(redis, 7, [hint("e1", ("003A",))])
    assert (first.fresh, first.duplicates) == (2, 0)
    assert (again.fresh, again.duplicates) == (0, 1)
    assert intake.pending(redis, 7) == 3


def test_same_record_in_many_events_coalesces(redis) -> None:
    intake.add_hints(redis, 1, [hint(f"e{i}", ("003A",)) for i in range(50)])
    batch = intake.take(redis, 1, 100)
    assert batch.ids == {"Contact": ["003A"]}


def test_take_is_bounded_and_ack_forgets_only_what_was_read(redis) -> None:
    intake.add_hints(redis, 1, [hint(f"e{i}", (f"003{i:03d}",)) for i in range(10)])
    batch = intake.take(redis, 1, 4)
    assert len(batch) == 4
    # One of the taken records changes again while the flush is running.
    changed = batch.ids["Contact"][0]
    intake.add_hints(redis, 1, [hint("later", (changed,))])
    assert intake.ack(redis, 1, batch) == 3
    assert intake.pending(redis, 1) == 7
    rest = intake.take(redis, 1, 100)
    assert changed in rest.ids["Contact"]


def test_nothing_is_lost_when_a_flush_dies_before_ack(redis) -> None:
    intake.add_hints(redis, 1, [hint("e1", ("003A", "003B"))])
    intake.take(redis, 1, 10)  # the worker is killed here
    assert sorted(intake.take(redis, 1, 10).ids["Contact"]) == ["003A", "003B"]


def test_entities_are_kept_apart_and_setups_isolated(redis) -> None:
    intake.add_hints(redis, 1, [hint("e1", ("001X",), entity="Account"), hint("e2", ("003A",))])
    intake.add_hints(redis, 2, [hint("e1", ("003Z",))])  # same event key, other setup
    assert intake.take(redis, 1, 10).ids == {"Account": ["001X"], "Contact": ["003A"]}
    assert intake.take(redis, 2, 10).ids == {"Contact": ["003Z"]}


def test_overflow_marks_a_catch_up_with_the_earliest_commit(redis) -> None:
    late = hint("o1", (), kind="GAP_OVERFLOW")
    early = ChangeHint(
        **{
            **late.__dict__,
            "event_key": "o2",
            "commit_timestamp": datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        }
    )
    intake.add_hints(redis, 3, [late, early])
    taken = intake.take_catchups(redis, 3)
    assert taken == {"Contact": int(datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp() * 1000)}
    assert intake.pending(redis, 3) == 0
    assert intake.ack_catchups(redis, 3, taken) == 1
    assert intake.take_catchups(redis, 3) == {}


def test_mark_dirty_adds_ids_without_events(redis) -> None:
    assert intake.mark_dirty(redis, 4, "Lead", ["00QA", "00QB"]) == 2
    assert sorted(intake.take(redis, 4, 10).ids["Lead"]) == ["00QA", "00QB"]


def test_events_without_a_key_are_recorded_every_time(redis) -> None:
    first = intake.add_hints(redis, 5, [hint("", ("003A",))])
    batch = intake.take(redis, 5, 10)
    intake.ack(redis, 5, batch)
    keyless = ChangeHint(**{**hint("x", ("003A",)).__dict__, "event_key": None})
    again = intake.add_hints(redis, 5, [keyless, keyless])
    assert (first.fresh, again.fresh, again.duplicates) == (1, 2, 0)
    assert intake.pending(redis, 5) == 1
    assert list(redis.scan_iter("ctct:seen:5:*")) == []


def test_add_reports_what_is_waiting_even_for_a_duplicate(redis) -> None:
    first = intake.add_hints(redis, 6, [hint("e1", ("003A", "003B"))])
    again = intake.add_hints(redis, 6, [hint("e1", ("003A", "003B"))])
    assert (first.waiting, again.fresh, again.waiting) == (2, 0, 2)
    intake.ack(redis, 6, intake.take(redis, 6, 10))
    assert intake.add_hints(redis, 6, [hint("e1", ("003A",))]).waiting == 0
    overflow = intake.add_hints(redis, 6, [hint("o1", (), kind="GAP_OVERFLOW")])
    assert overflow.waiting == 1  # a catch-up marker is work too


def test_the_guards_job_status_comes_in_the_same_round_trip(redis) -> None:
    redis.set("guard:8", "job-8|100|101")
    redis.hset("rq:job:job-8", mapping={"status": "queued", "origin": "webhooks"})
    read = intake.add_hints(redis, 8, [hint("e1", ("003A",))], guard_key="guard:8",
                            job_key_prefix="rq:job:")  # fmt: skip
    assert (read.guard, read.guard_job_status) == ("job-8|100|101", "queued")
    # Not asked for, or the job's hash gone: no status (the caller then looks closer).
    unasked = intake.add_hints(redis, 8, [hint("e2", ("003A",))], guard_key="guard:8")
    assert (unasked.guard, unasked.guard_job_status) == ("job-8|100|101", None)
    redis.delete("rq:job:job-8")
    gone = intake.add_hints(redis, 8, [hint("e3", ("003A",))], guard_key="guard:8",
                            job_key_prefix="rq:job:")  # fmt: skip
    assert (gone.guard, gone.guard_job_status) == ("job-8|100|101", None)
    redis.delete("guard:8")
    none = intake.add_hints(redis, 8, [hint("e4", ("003A",))], guard_key="guard:8",
                            job_key_prefix="rq:job:")  # fmt: skip
    assert (none.guard, none.guard_job_status, none.fresh) == (None, None, 1)


def test_a_server_without_the_script_loads_it_and_runs_it(redis) -> None:
    # A text no server has seen (the real server's scripts are shared: never SCRIPT FLUSH it).
    fresh = intake._Lua(f"return {{KEYS[1], ARGV[1]}} -- {uuid.uuid4()}")
    assert redis.script_exists(fresh.sha) == [False]
    assert intake._run(redis, fresh, ["k"], ["v"]) == [b"k", b"v"]
    assert redis.script_exists(fresh.sha) == [True]


def test_the_intakes_scripts_survive_a_flushed_script_cache(fake_redis) -> None:
    intake.add_hints(fake_redis, 9, [hint("e1", ("003A",))])
    fake_redis.script_flush()  # a restarted server
    assert intake.add_hints(fake_redis, 9, [hint("e2", ("003B",))]).fresh == 1
    assert intake.pending(fake_redis, 9) == 2


def test_redis_down_raises_a_redis_error() -> None:
    """What the webhook answers 503 for: redis-py's own connection error, after its retries."""
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    with pytest.raises(RedisError):
        intake.add_hints(down, 1, [hint("e1", ("003A",))])
