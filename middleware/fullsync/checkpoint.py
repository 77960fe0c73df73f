"""Full Sync checkpoints: how far a run got, kept in the store so a killed worker resumes there.

A checkpoint is one JSON document in the setup's ``cursors`` (name ``fullsync:<partition>``). The
engine saves it after every flush, *after* the flush's links were recorded, so everything before
``last_sf_id`` is written and remembered, and a retry starts at the next record. The records a
flush is about to import are listed in ``inflight`` (with the fingerprint of what is sent)
*before* anything is posted: a run killed between posting and recording finds those contacts in
its next export (Constant Contact completes queued activities in order, before the export) and
marries them to their records instead of importing them twice.

The lead's schema may later give checkpoints a table of their own; the shape stays this one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from middleware.store import cursors
from middleware.store.db import Store

PREFIX = "fullsync:"
WHOLE = "all"

PHASES = ("prepare", "read", "sync", "duplicates", "verify",
          "reconcile", "optouts", "done")  # fmt: skip


@dataclass
class Checkpoint:
    """The resumable state of one Full Sync run (or of one partition of it)."""

    run_id: int
    reset: bool = False
    partition: str = WHOLE
    phase: str = "prepare"
    # Every record with an Id <= this one has been planned, written and recorded.
    last_sf_id: str = ""
    # [sf_id, fingerprint] of the imports of the flush in progress (see the module docstring).
    inflight: list[list[str]] = field(default_factory=list)
    # Import activities posted and recorded, not yet checked for rejected rows.
    pending_activities: list[str] = field(default_factory=list)
    done: int = 0
    total: int | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    attempts: int = 1
    # Set when the run stopped for its API budget: when it may go on (ISO-8601 UTC).
    resume_at: str | None = None
    # Partition runs: the range (see partitions.Partition.as_json).
    range: dict[str, object] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        raw: dict[str, Any] = json.loads(text)
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def cursor_name(partition: str = WHOLE) -> str:
    return f"{PREFIX}{partition}"


def load(store: Store, setup_id: int, partition: str = WHOLE) -> Checkpoint | None:
    """The setup's unfinished run checkpoint, or ``None``."""
    with store.transaction() as session:
        text = cursors.get_cursor(session, setup_id, cursor_name(partition))
    if not text:
        return None
    try:
        return Checkpoint.from_json(text)
    except (ValueError, TypeError):
        return None  # an unreadable checkpoint is no checkpoint: start over (writes are keyed)


def save(store: Store, setup_id: int, checkpoint: Checkpoint) -> None:
    with store.transaction() as session:
        cursors.set_cursor(
            session, setup_id, cursor_name(checkpoint.partition), checkpoint.to_json()
        )


def clear(store: Store, setup_id: int, partition: str = WHOLE) -> None:
    with store.transaction() as session:
        cursors.reset_cursors(session, setup_id, [cursor_name(partition)])


def clear_all(store: Store, setup_id: int) -> None:
    """Forget every checkpoint of the setup (a reset Full Sync starts from nothing)."""
    with store.transaction() as session:
        names = [n for n in cursors.all_cursors(session, setup_id) if n.startswith(PREFIX)]
        if names:
            cursors.reset_cursors(session, setup_id, names)
