"""Services tests: a SQLite store, a fakeredis and test settings; no Flask app anywhere."""

from __future__ import annotations

from datetime import timedelta

import pytest

from middleware.store import connections as connection_repo
from middleware.store.db import Store
from middleware.store.models import utcnow


@pytest.fixture
def connected(sqlite_store: Store) -> dict[str, int]:
    """One Salesforce and one Constant Contact connection with live-looking tokens."""
    ids = {}
    with sqlite_store.transaction() as session:
        for vendor in ("salesforce", "constantcontact"):
            ids[vendor] = connection_repo.create(
                session,
                vendor=vendor,
                label=f"{vendor} main",
                access_token="svc-access-token",
                refresh_token="svc-refresh-token",
                expires_at=utcnow() + timedelta(hours=1),
            ).id
    return ids
