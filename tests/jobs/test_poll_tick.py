"""The clock's poll tick schedules one poll per due setup, and only one however often it ticks."""

from __future__ import annotations

from middleware import queue
from middleware.queue import Runtime, use_runtime
from middleware.store import setups as setup_repo
from schemas.setup import validate_setup


def test_poll_tick_schedules_each_due_setup_once(settings, sqlite_store, fake_redis) -> None:
    from jobs.poll import poll_tick

    options, _ = validate_setup({"name": "p", "main_list": "Main"})
    with sqlite_store.transaction() as session:
        setup_id = setup_repo.create(session, name="p", options=options).id
    runtime = Runtime(settings=settings, store=sqlite_store, redis=fake_redis)
    with use_runtime(runtime):
        first = poll_tick()
        second = poll_tick()
    assert first == [setup_id]
    assert second == [setup_id]  # still due (it has not run), but not scheduled twice
    assert queue.pending_job_id(f"poll-{setup_id}", connection=fake_redis) is not None
    jobs = queue.get_queue(fake_redis, queue.DEFAULT).job_ids
    assert len([j for j in jobs if j.startswith(f"poll-{setup_id}")]) == 1
