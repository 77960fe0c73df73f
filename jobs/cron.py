"""Clock schedule for ``rq cron`` (Procfile ``clock: rq cron jobs/cron.py``; exactly one process).

One job a minute does the scheduling that depends on each setup's options (Full Sync times in
the setup's time zone, the missed-run guard, stranded intakes): see
``middleware.fullsync.clock``. Keeping the per-setup logic in a job, not here, means a changed
schedule applies at the next minute without restarting the clock.
"""

from __future__ import annotations

from rq import cron

from jobs.catch_up import catch_up_tick
from jobs.full_sync import clock_tick
from jobs.poll import poll_tick
from jobs.results import results_tick
from middleware.queue import DEFAULT

cron.register(clock_tick, DEFAULT, interval=60, job_timeout=120, result_ttl=600)
# Constant Contact pushes no contact changes: each setup is polled every schedule.poll_minutes.
cron.register(poll_tick, DEFAULT, interval=60, job_timeout=120, result_ttl=600)
# Change events can be lost (Redis restarted empty, a callout refused during an outage): each
# setup catches up on Salesforce changes every schedule.catch_up_minutes.
cron.register(catch_up_tick, DEFAULT, interval=60, job_timeout=120, result_ttl=600)
# Campaign results (opens, clicks... back to Salesforce) every campaign_results.every_hours.
cron.register(results_tick, DEFAULT, interval=60, job_timeout=120, result_ttl=600)
