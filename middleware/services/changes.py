"""Salesforce changes in: what every door does with the change hints it has parsed.

The doors — the JSON webhook, Outbound Messages, the Pub/Sub listener — each authenticate and
parse in their own way, then call :func:`record`: the hints that matter to the setup are kept
(our own echoes and other objects dropped), their ids go into the setup's dirty set with their
dedupe marks in one Redis round trip (an event id seen before, through this door or another, is
a duplicate), and the setup's flush is scheduled. Only then may a door acknowledge the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from middleware import intake, queue, runner
from middleware.salesforce.events import ChangeHint

# Which change events matter to a setup of each object type. Account changes reach Contact
# setups too: a renamed Account changes its contacts' company name.
RELEVANT_ENTITIES = {
    "Contact": ("Contact", "Account"),
    "Lead": ("Lead",),
    "Account": ("Account",),
}
# With Campaign lists on, a member added to or removed from a Campaign (and a Campaign renamed,
# activated or deactivated) changes the setup's lists too.
CAMPAIGN_ENTITIES = ("Campaign", "CampaignMember")


@dataclass(frozen=True)
class Scope:
    """What the intake needs of a setup to keep a change or drop it."""

    setup_id: int
    object_type: str
    campaign_events: bool = False  # Campaign lists: CampaignMember and Campaign events count

    @classmethod
    def of(cls, setup_id: int, options: dict[str, Any]) -> Scope:
        """From a setup's stored options."""
        return cls(
            setup_id=setup_id,
            object_type=options.get("object_type", "Contact"),
            campaign_events=(options.get("campaign_lists") or {}).get("source") == "campaigns",
        )

    def entities(self) -> tuple[str, ...]:
        wanted = RELEVANT_ENTITIES.get(self.object_type, (self.object_type,))
        return (*wanted, *CAMPAIGN_ENTITIES) if self.campaign_events else wanted


def relevant(hints: list[ChangeHint], scope: Scope) -> tuple[list[ChangeHint], int, int]:
    """The hints to record, and how many were our own echoes or of other objects."""
    wanted = scope.entities()
    keep: list[ChangeHint] = []
    echoes = other = 0
    for hint in hints:
        if hint.is_own_echo:
            echoes += 1  # our own write coming back: we already know
        elif hint.entity not in wanted:
            other += 1
        else:
            keep.append(hint)
    return keep, echoes, other


@dataclass(frozen=True)
class Recorded:
    """What :func:`record` did: the document a door may answer with."""

    accepted: int
    duplicates: int
    echoes_ignored: int
    other_objects_ignored: int
    flush_scheduled: bool

    def document(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "echoes_ignored": self.echoes_ignored,
            "other_objects_ignored": self.other_objects_ignored,
            "flush_scheduled": self.flush_scheduled,
        }


class NotRecorded(Exception):
    """The hints are not durable, or their flush is not scheduled: the sender must retry.

    ``reason`` is ``redis_down`` (nothing recorded) or ``schedule_failed`` (recorded, but no
    flush scheduled: a retried delivery schedules it).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def record(redis: Redis, scope: Scope, hints: list[ChangeHint], *, flush_delay: float) -> Recorded:
    """Keep, record and schedule (see the module docstring); raise :class:`NotRecorded`."""
    keep, echoes, other = relevant(hints, scope)
    setup_id = scope.setup_id
    flush_job = runner.flush_resume(setup_id)
    try:
        added = intake.add_hints(
            redis,
            setup_id,
            keep,
            guard_key=queue.guard_key(flush_job.key),
            job_key_prefix=queue.JOB_KEY_PREFIX,
        )
    except RedisError as exc:
        raise NotRecorded("redis_down", "queue unavailable; retry later") from exc

    # Fresh ids need a flush; so do ids a duplicate delivery finds still waiting: its first
    # attempt may have stored them and then failed to schedule, and the sender's retry is what
    # schedules them now.
    scheduled = None
    if added.waiting and not queue.guard_is_fresh(added.guard, flush_delay, added.guard_job_status):
        try:
            scheduled = queue.ensure_scheduled(
                flush_job.key,
                flush_job.func,
                [setup_id],
                delay=flush_delay,
                queue=flush_job.queue,
                connection=redis,
            )
        except Exception as exc:
            raise NotRecorded(
                "schedule_failed",
                "the changes are recorded but their sync could not be scheduled; retry (a "
                "retried delivery schedules it)",
            ) from exc
    return Recorded(
        accepted=added.fresh,
        duplicates=added.duplicates,
        echoes_ignored=echoes,
        other_objects_ignored=other,
        flush_scheduled=scheduled is not None,
    )
