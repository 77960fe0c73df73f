"""One listener per Salesforce connection: a lease in Redis that its holder keeps renewing.

Two listener processes (a deploy overlapping the old dyno, a second one started by mistake) must
not both consume a connection: each would record every event and move the replay id. The lease
is a key `ctct:listener:lease:<connection>` holding its holder's token, taken with `SET NX PX`,
renewed (only by its holder, one Lua step) every few seconds, and deleted on a clean stop.
A holder that dies stops renewing: the key expires and another listener takes it over within
the lease's length. A holder that cannot renew (Redis unreachable, or the key gone) must stop
consuming, since it can no longer prove it is the only one.
"""

from __future__ import annotations

import logging
import uuid

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY_PREFIX = "ctct:listener:lease:"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(connection_id: int) -> str:
    return f"{KEY_PREFIX}{connection_id}"


class Lease:
    """The lease on one connection, held (or wanted) by this process under ``owner``."""

    def __init__(
        self, redis: Redis, connection_id: int, *, seconds: float, owner: str | None = None
    ) -> None:
        self.redis = redis
        self.connection_id = connection_id
        self.key = lease_key(connection_id)
        self.owner = owner or uuid.uuid4().hex
        self.ms = max(1, int(seconds * 1000))

    def acquire(self) -> bool:
        """Take the lease if nobody holds it (or we already do); False if another holds it."""
        try:
            if self.redis.set(self.key, self.owner, nx=True, px=self.ms):
                return True
            return self.renew()
        except RedisError as exc:
            log.warning("listener lease %s: Redis unavailable (%s)", self.key, exc)
            return False

    def renew(self) -> bool:
        """Extend our lease; False if it is no longer ours (expired and taken) or Redis fails."""
        try:
            return bool(self.redis.eval(_RENEW, 1, self.key, self.owner, self.ms))
        except RedisError as exc:
            log.warning("listener lease %s: cannot renew (%s)", self.key, exc)
            return False

    def release(self) -> None:
        """Give the lease up at once (a clean stop), if it is still ours."""
        try:
            self.redis.eval(_RELEASE, 1, self.key, self.owner)
        except RedisError as exc:
            log.warning("listener lease %s: cannot release (%s); it expires", self.key, exc)

    def holder(self) -> str | None:
        """Who holds the lease now (diagnostics and tests)."""
        value = self.redis.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
