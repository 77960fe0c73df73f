"""Intake: each setup's dirty Salesforce records in Redis, what webhooks add and flushes take.

A webhook adds the record ids its events name (and, for `GAP_OVERFLOW`, a catch-up marker for the
object) in one atomic step together with the event's dedupe mark, so a crash can never leave an
event marked as seen but its ids unrecorded. A flush job `take`s a batch, re-reads those records
from Salesforce, syncs them, and then `ack`s exactly the versions it read: an id that changed
again meanwhile keeps its newer version and is synced by the next flush. Nothing is removed
before it is synced, so a killed worker loses nothing.

Keys (per setup): `ctct:dirty:<setup>` hash "<Entity>:<Id>" → version, `ctct:dirtyseq:<setup>`
version counter, `ctct:catchup:<setup>` hash Entity → earliest commit time (ms), and
`ctct:seen:<setup>:<event key>` dedupe marks that outlive the senders' retry windows (only for
events with a real id: replayId, transaction key + sequence number, or EventUuid).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis
from redis.exceptions import NoScriptError

from middleware.salesforce.events import ChangeHint

# Longer than any sender's retry window (Salesforce: 24 h; Stripe-like senders: 3 days).
SEEN_TTL_SECONDS = 3 * 24 * 3600

_ADD = """
local prefix, ttl, n, job_prefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local i = 5
local fresh, dup = 0, 0
for e = 1, n do
  local key, entity, ts, nids = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  if key == '' or redis.call('SET', prefix .. key, '1', 'NX', 'EX', ttl) then
    fresh = fresh + 1
    if ts ~= '' then
      local cur = redis.call('HGET', KEYS[3], entity)
      if (not cur) or tonumber(ts) < tonumber(cur) then redis.call('HSET', KEYS[3], entity, ts) end
    end
    for j = 0, nids - 1 do
      redis.call('HSET', KEYS[1], entity .. ':' .. ARGV[i + j], redis.call('INCR', KEYS[2]))
    end
  else
    dup = dup + 1
  end
  i = i + nids
end
local guard, status = false, false
if KEYS[4] then guard = redis.call('GET', KEYS[4]) end
if guard and job_prefix ~= '' then
  status = redis.call('HGET', job_prefix .. string.match(guard, '^[^|]*'), 'status')
end
local waiting = redis.call('HLEN', KEYS[1]) + redis.call('HLEN', KEYS[3])
return {fresh, dup, guard, waiting, status}
"""

# Remove a field only if it still holds the value the flush read.
_ACK = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    removed = removed + 1
  end
end
return removed
"""


class _Lua:
    """A Lua script's text and its SHA1, computed once at import."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest()


_ADD_SCRIPT = _Lua(_ADD)
_ACK_SCRIPT = _Lua(_ACK)


def _run(redis: Redis, script: _Lua, keys: list[str], args: list[Any]) -> Any:
    """Run a Lua script by its SHA (EVALSHA), loading its text once per server (NOSCRIPT).

    `redis.evalsha` directly rather than redis-py's `Script.__call__`, which does the same with
    more steps (about 10 µs of CPU per webhook event); the command still goes through the
    client's `execute_command`, so its retries on connection errors and the `RedisError` the
    webhook answers 503 for are redis-py's own.
    """
    try:
        return redis.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        # A server that has not seen the script yet (restarted, flushed, another server).
        redis.script_load(script.source)
        return redis.evalsha(script.sha, len(keys), *keys, *args)


def dirty_key(setup_id: int) -> str:
    return f"ctct:dirty:{setup_id}"


def _seq_key(setup_id: int) -> str:
    return f"ctct:dirtyseq:{setup_id}"


def catchup_key(setup_id: int) -> str:
    return f"ctct:catchup:{setup_id}"


def flush_job_key(setup_id: int) -> str:
    """The ``queue.ensure_scheduled`` key of the one flush job that drains this intake."""
    return f"flush-{setup_id}"


def _seen_prefix(setup_id: int) -> str:
    return f"ctct:seen:{setup_id}:"


@dataclass(frozen=True)
class Added:
    fresh: int  # events recorded now
    duplicates: int  # events seen before (a sender's retry, an echo of a replay)
    guard: str | None = None  # the value of `guard_key`, read in the same round trip
    waiting: int = 0  # dirty ids + catch-up markers of the setup after the add (0: nothing to do)
    guard_job_status: str | None = None  # the status field of the guard's job, if asked for


def add_hints(
    redis: Redis,
    setup_id: int,
    hints: Sequence[ChangeHint],
    *,
    guard_key: str | None = None,
    job_key_prefix: str = "",
) -> Added:
    """Record the hints' record ids (or catch-up markers) and their dedupe marks, atomically.

    `guard_key` (the flush job's pending-job guard) is read in the same round trip, so the webhook
    knows without another call whether a flush is already waiting, and so is how much work is
    waiting (`Added.waiting`): a retried delivery whose first attempt stored its ids but failed to
    schedule their flush still finds them there. With `job_key_prefix` (the job hashes' key
    prefix, the guard's value starting with the job id) the guard's job status is read too: a
    flush past its due time but still queued behind a busy worker then needs no further calls.

    A hint without an `event_key` (no real event id) is recorded every time, never deduplicated.
    """
    if not hints:
        return Added(0, 0)
    argv: list[Any] = [_seen_prefix(setup_id), SEEN_TTL_SECONDS, len(hints), job_key_prefix]
    for hint in hints:
        ts = ""
        ids: Sequence[str] = hint.record_ids
        if hint.catch_up:
            stamp = hint.commit_timestamp
            ts = str(int(stamp.timestamp() * 1000)) if stamp is not None else "0"
            ids = ()
        argv += [hint.event_key or "", hint.entity, ts, len(ids), *ids]
    keys = [dirty_key(setup_id), _seq_key(setup_id), catchup_key(setup_id)]
    if guard_key:
        keys.append(guard_key)
    fresh, dup, guard, waiting, status = _run(redis, _ADD_SCRIPT, keys, argv)
    return Added(
        int(fresh),
        int(dup),
        _text(guard) if guard else None,
        int(waiting),
        _text(status) if status else None,
    )


@dataclass(frozen=True)
class Batch:
    """Dirty records taken for one flush: {entity: [ids]} plus the versions to ack."""

    ids: dict[str, list[str]]
    versions: dict[str, str]  # "<Entity>:<Id>" → version read

    def __len__(self) -> int:
        return len(self.versions)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def take(redis: Redis, setup_id: int, limit: int) -> Batch:
    """Up to `limit` dirty records (oldest versions first); they stay dirty until `ack`ed."""
    fields: dict[str, str] = {}
    cursor = 0
    key = dirty_key(setup_id)
    # HSCAN keeps memory and latency flat even when a backlog of a million ids has built up.
    while True:
        cursor, chunk = redis.hscan(key, cursor, count=max(100, limit))  # type: ignore[misc]
        for field, version in cast(dict[Any, Any], chunk).items():
            fields[_text(field)] = _text(version)
        if cursor == 0 or len(fields) >= limit * 2:
            break
    chosen = sorted(fields.items(), key=lambda kv: int(kv[1]))[:limit]
    ids: dict[str, list[str]] = {}
    for field, _version in chosen:
        entity, _, record_id = field.partition(":")
        ids.setdefault(entity, []).append(record_id)
    return Batch(ids=ids, versions=dict(chosen))


def ack(redis: Redis, setup_id: int, batch: Batch) -> int:
    """Forget the records of `batch` unless they changed again since `take`."""
    if not batch.versions:
        return 0
    argv: list[str] = []
    for field, version in batch.versions.items():
        argv += [field, version]
    return int(_run(redis, _ACK_SCRIPT, [dirty_key(setup_id)], argv))


def pending(redis: Redis, setup_id: int) -> int:
    """How many records of the setup are waiting to be synced."""
    return int(redis.hlen(dirty_key(setup_id)))  # type: ignore[arg-type]


def take_catchups(redis: Redis, setup_id: int) -> dict[str, int]:
    """Objects that need a SystemModstamp catch-up, with the earliest commit time (ms) each."""
    raw = redis.hgetall(catchup_key(setup_id))
    return {_text(k): int(_text(v)) for k, v in raw.items()}  # type: ignore[union-attr]


def ack_catchups(redis: Redis, setup_id: int, taken: dict[str, int]) -> int:
    if not taken:
        return 0
    argv: list[str] = []
    for entity, stamp in taken.items():
        argv += [entity, str(stamp)]
    return int(_run(redis, _ACK_SCRIPT, [catchup_key(setup_id)], argv))


def mark_dirty(redis: Redis, setup_id: int, entity: str, ids: Iterable[str]) -> int:
    """Add ids without an event (retrying sync errors, Sync Now catch-ups)."""
    ids = list(ids)
    if not ids:
        return 0
    with redis.pipeline() as pipe:
        for _ in ids:
            pipe.incr(_seq_key(setup_id))
        versions = pipe.execute()
        for record_id, version in zip(ids, versions, strict=True):
            pipe.hset(dirty_key(setup_id), f"{entity}:{record_id}", version)
        pipe.execute()
    return len(ids)
