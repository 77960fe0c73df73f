"""The clock process runs the catch-up tick every minute."""

from __future__ import annotations

from redis import Redis


def test_the_clock_process_config_registers_the_catch_up_tick(fake_redis: Redis) -> None:
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=fake_redis)
    scheduler.load_config_from_file("jobs/cron.py")
    jobs = {job.func_name: job for job in scheduler.get_jobs()}
    job = jobs["jobs.catch_up.catch_up_tick"]
    assert job.interval == 60 and job.queue_name == "default"
