"""The shared refreshing token source: what each vendor rule changes, with plain in-memory parts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from middleware import oauth_tokens, vendor_errors
from middleware.oauth_tokens import MemoryTokenStore, RefreshingTokenSource, TokenRules

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Pair:
    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    note: str = ""

    def expired(self, now: datetime, margin: timedelta) -> bool:
        return self.expires_at is not None and now + margin >= self.expires_at


class Revoked(vendor_errors.NeedsReauth):
    pass


class Later(vendor_errors.RetryLater):
    pass


class RacingStore(MemoryTokenStore[Pair]):
    """Another writer, not holding our lock, saves `theirs` just before our first save."""

    def __init__(self, tokens: Pair, theirs: Pair, *, refuse_all: bool = False) -> None:
        super().__init__(tokens)
        self.theirs = theirs
        self.refuse_all = refuse_all

    def save(self, tokens: Pair, expected_version: int | None) -> bool:
        if self.theirs is not None and tokens is not self.theirs:
            theirs, self.theirs = self.theirs, None  # type: ignore[assignment]
            super().save(theirs, expected_version)
        if self.refuse_all:
            return False
        return super().save(tokens, expected_version)


def _source(
    store: MemoryTokenStore[Pair], *, rotates: bool, calls: list[str]
) -> RefreshingTokenSource[Pair]:
    def refresh_call(refresh_token: str) -> Pair:
        calls.append(refresh_token)
        return Pair(f"a{len(calls)}", f"r{len(calls)}", NOW + timedelta(hours=2))

    rules = TokenRules[Pair](
        vendor="Vendor",
        revoked=Revoked,
        unavailable=Later,
        rotates=rotates,
        keep=lambda fresh, stored: replace(fresh, note=fresh.note or stored.note),
    )
    return RefreshingTokenSource(
        store, refresh_call, oauth_tokens.thread_lock(), rules, now=lambda: NOW
    )


def test_a_refresh_saves_before_use_and_keeps_what_the_answer_left_out() -> None:
    store = MemoryTokenStore(Pair("a0", "r0", NOW + timedelta(hours=1), note="identity"))
    calls: list[str] = []
    source = _source(store, rotates=False, calls=calls)
    assert source.refresh("a0") == "a1"
    stored = store.load()
    assert stored is not None and stored.version == 2
    assert stored.tokens == Pair("a1", "r1", NOW + timedelta(hours=2), note="identity")
    assert source.refresh("a0") == "a1" and calls == ["r0"]  # already refreshed: no second call
    assert source.refreshes == 1


def test_without_rotation_a_lost_race_takes_the_other_writers_token() -> None:
    store = RacingStore(Pair("a0", "r0"), theirs=Pair("theirs", "r0"))
    assert _source(store, rotates=False, calls=[]).refresh("a0") == "theirs"
    assert store.load().tokens.access_token == "theirs"  # type: ignore[union-attr]


def test_with_rotation_our_new_pair_wins_a_lost_race() -> None:
    store = RacingStore(Pair("a0", "r0"), theirs=Pair("theirs", "dead"))
    assert _source(store, rotates=True, calls=[]).refresh("a0") == "a1"
    assert store.load().tokens.refresh_token == "r1"  # type: ignore[union-attr]


def test_with_rotation_a_pair_that_cannot_be_saved_is_never_used() -> None:
    store = RacingStore(Pair("a0", "r0"), theirs=Pair("theirs", "dead"), refuse_all=True)
    with pytest.raises(Later, match="could not persist refreshed Vendor tokens"):
        _source(store, rotates=True, calls=[]).refresh("a0")


def test_no_tokens_or_no_refresh_token_is_the_vendors_needs_reauth() -> None:
    with pytest.raises(Revoked, match="this Vendor connection has no tokens"):
        _source(MemoryTokenStore(), rotates=False, calls=[]).access_token()
    with pytest.raises(Revoked, match="no refresh token is stored"):
        _source(MemoryTokenStore(Pair("a0")), rotates=False, calls=[]).refresh("a0")


def test_a_token_near_expiry_is_refreshed_before_use_and_cached_after() -> None:
    calls: list[str] = []
    store = MemoryTokenStore(Pair("a0", "r0", NOW + timedelta(minutes=2)))
    source = _source(store, rotates=True, calls=calls)
    assert source.access_token() == "a1"
    assert source.access_token() == "a1"
    assert calls == ["r0"]
