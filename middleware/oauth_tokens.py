"""OAuth tokens: the store contract, refresh lock and refreshing token source of both vendors.

A connection has an access token (sent on every call) and usually a refresh token. Several RQ
workers share one connection, so whatever the vendor a refresh follows two rules:

1. **Persist before use.** The new tokens are saved through the `TokenStore` (compare-and-swap on
   a version) before the new access token is handed to anyone; if saving fails it is not used.
2. **Serialise refreshes.** Only one worker refreshes a connection at a time (a lock the caller
   supplies: `RedisRefreshLock` across processes, `thread_lock()` in one). Inside the lock the
   store is read again: if another worker already refreshed, its token is used and no call spent.

What differs between vendors is a parameter (`TokenRules`): the vendor's name, its "connect
again" and "retry later" errors, whether refresh tokens rotate (then our new pair must win over a
writer that did not take the lock, since the vendor killed theirs), and what a refresh answer
leaves out that the stored tokens still know. The vendor's token endpoint is the `refresh_call`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from middleware import vendor_errors

log = logging.getLogger(__name__)


class OAuthTokens(Protocol):
    """What the token source reads of a vendor's tokens."""

    @property
    def access_token(self) -> str: ...

    @property
    def refresh_token(self) -> str | None: ...

    def expired(self, now: datetime, margin: timedelta) -> bool: ...


T = TypeVar("T", bound=OAuthTokens)

RefreshLock = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class StoredTokens(Generic[T]):
    """Tokens plus the store's version of them (for compare-and-swap saves)."""

    tokens: T
    version: int


class TokenStore(Protocol[T]):
    """Where one connection's tokens live (the service implements it over its connections table).

    ``load()`` returns the current tokens and their version, or ``None`` if the connection has
    none. ``save(tokens, expected_version)`` writes them only if the stored version still equals
    ``expected_version`` (``None`` = nothing stored yet), bumps the version, commits durably, and
    returns whether it wrote. It must not return before the write is durable: the caller uses the
    tokens right after.
    """

    def load(self) -> StoredTokens[T] | None: ...

    def save(self, tokens: T, expected_version: int | None) -> bool: ...


class MemoryTokenStore(Generic[T]):
    """A `TokenStore` in memory: for tests, the demo and one-off runs."""

    def __init__(self, tokens: T | None = None) -> None:
        self._lock = threading.Lock()
        self._stored = StoredTokens(tokens, 1) if tokens is not None else None
        self.saves = 0

    def load(self) -> StoredTokens[T] | None:
        with self._lock:
            return self._stored

    def save(self, tokens: T, expected_version: int | None) -> bool:
        with self._lock:
            current = self._stored.version if self._stored else None
            if current != expected_version:
                return False
            self._stored = StoredTokens(tokens, (current or 0) + 1)
            self.saves += 1
            return True


class RedisRefreshLock:
    """A cross-process lock around one connection's refresh (redis-py's ``Lock``, auto-expiring)."""

    #: Raised when another worker holds the lock too long: the vendor's retry-later error.
    unavailable: ClassVar[type[Exception]] = vendor_errors.RetryLater

    def __init__(
        self, redis: Any, name: str, timeout: float = 30.0, blocking_timeout: float = 60.0
    ):
        self.redis = redis
        self.name = name
        self.timeout = timeout
        self.blocking_timeout = blocking_timeout

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        lock = self.redis.lock(
            self.name, timeout=self.timeout, blocking_timeout=self.blocking_timeout
        )
        if not lock.acquire():
            raise type(self).unavailable(
                f"could not take the token refresh lock {self.name!r}; retry later"
            )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # expired lock: someone else may hold it now
                lock.release()


def thread_lock() -> RefreshLock:
    """A refresh lock for one process (embedded mode, tests)."""
    lock = threading.Lock()
    return lambda: lock


def _fresh(fresh: T, stored: T) -> T:
    return fresh


@dataclass(frozen=True)
class TokenRules(Generic[T]):
    """How one vendor's tokens are refreshed (see the module docstring)."""

    vendor: str
    #: The vendor's "connect again" error (a `vendor_errors.NeedsReauth`), from a message.
    revoked: Callable[[str], Exception]
    #: The vendor's "retry later" error (a `vendor_errors.RetryLater`), from a message.
    unavailable: Callable[[str], Exception]
    #: A refresh kills every earlier refresh token, so our newly issued pair must be saved.
    rotates: bool = False
    #: The tokens to save from (fresh, stored): fill in what the refresh answer left out.
    keep: Callable[[T, T], T] = _fresh


class TokenSource(Protocol):
    """What a vendor's API client needs: the current access token, and a new one after a 401."""

    def access_token(self) -> str: ...

    def refresh(self, rejected_token: str) -> str: ...


class StaticTokenSource:
    """A fixed access token (tests, sandbox demos): a refused token cannot be repaired."""

    def __init__(self, token: str, refused: Callable[[str], Exception]) -> None:
        self.token = token
        self.refused = refused

    def access_token(self) -> str:
        return self.token

    def refresh(self, rejected_token: str) -> str:
        raise self.refused("the access token was refused and this token source cannot refresh it")


class RefreshingTokenSource(Generic[T]):
    """One connection's tokens, refreshed before expiry or after a 401: once, for all workers."""

    def __init__(
        self,
        store: TokenStore[T],
        refresh_call: Callable[[str], T],
        lock: RefreshLock,
        rules: TokenRules[T],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        margin: timedelta = timedelta(minutes=5),
    ) -> None:
        self.store = store
        self.refresh_call = refresh_call
        self.lock = lock
        self.rules = rules
        self.now = now
        self.margin = margin
        self.refreshes = 0
        # The last tokens read; an access token stays valid after another worker's refresh, so
        # the store is read again only near expiry or after a 401, not before every call.
        self._cached: T | None = None

    def current(self) -> StoredTokens[T]:
        """The stored tokens, read now; no tokens at all means the account must be connected."""
        stored = self.store.load()
        if stored is None:
            raise self.rules.revoked(f"this {self.rules.vendor} connection has no tokens")
        self._cached = stored.tokens
        return stored

    def access_token(self) -> str:
        tokens = self._cached
        if tokens is None or tokens.expired(self.now(), self.margin):
            tokens = self.current().tokens
        if tokens.expired(self.now(), self.margin) and tokens.refresh_token:
            return self.refresh(tokens.access_token)
        return tokens.access_token

    def refresh(self, rejected_token: str) -> str:
        """A working access token after ``rejected_token`` was refused (or is about to expire)."""
        with self.lock():
            stored = self.current()
            tokens = stored.tokens
            if tokens.access_token != rejected_token and not tokens.expired(
                self.now(), self.margin
            ):
                # Another worker refreshed while we waited for the lock.
                return tokens.access_token
            if not tokens.refresh_token:
                raise self.rules.revoked(
                    "the access token was refused or expired and no refresh token is stored"
                )
            fresh = self.rules.keep(self.refresh_call(tokens.refresh_token), tokens)
            self.refreshes += 1
            if not self.store.save(fresh, stored.version):
                if not self.rules.rotates:
                    # Lost a race with a writer that did not take our lock: theirs is as good.
                    return self.current().tokens.access_token
                # Someone wrote without the lock. Ours is the newest pair the vendor issued
                # (rotation killed theirs), so it must win.
                log.error(
                    "%s token store changed during a locked refresh; overwriting with the new pair",
                    self.rules.vendor,
                )
                latest = self.store.load()
                if not self.store.save(fresh, latest.version if latest else None):
                    raise self.rules.unavailable(
                        f"could not persist refreshed {self.rules.vendor} tokens"
                    )
            self._cached = fresh
            log.info("refreshed %s tokens (version %d)", self.rules.vendor, stored.version + 1)
            return fresh.access_token
