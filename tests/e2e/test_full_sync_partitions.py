"""A Full Sync split by Id range over two workers at once, on real Redis and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from middleware.constantcontact.client import ConstantContactClient
from middleware.constantcontact.limiter import LocalLimiter
from middleware.constantcontact.oauth import StaticTokenSource as CCStaticTokens
from middleware.fullsync import checkpoint as checkpoints
from middleware.fullsync import run as fs_run
from middleware.queue import FULL_SYNC, get_queue
from middleware.salesforce.client import SalesforceClient
from middleware.salesforce.oauth import StaticTokenSource as SFStaticTokens
from middleware.store import links as links_repo
from middleware.store import runs
from middleware.store.db import Store
from tests.conftest import POSTGRES_URL
from tests.e2e.harness import CC_BASE, SF_BASE, SF_VERSION, World, _session

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a private, empty schema (dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = Store(POSTGRES_URL, ["A" * 43 + "="])
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    tables = Store(url, ["A" * 43 + "="])
    tables.create_all()
    tables.dispose()
    yield url
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


def _clients(w: World) -> tuple[SalesforceClient, ConstantContactClient]:
    """A worker's own clients and HTTP sessions (workers share nothing but the services)."""
    sf = SalesforceClient(
        SF_BASE, SFStaticTokens(w.sf_token), session=_session(SF_BASE, w.sf_app),
        version=SF_VERSION,
    )  # fmt: skip
    cc = ConstantContactClient(
        f"{CC_BASE}/v3",
        _session(CC_BASE, w.cc_app),
        CCStaticTokens(w.cc_token),
        LocalLimiter(rate=10_000),
        sleep=lambda _s: None,
    )
    return sf, cc


def test_two_workers_share_a_full_sync_and_one_reconcile_closes_it(
    pg_url: str, real_redis: Redis
) -> None:
    w = World(database_url=pg_url, redis=real_redis)
    try:
        w.deliver_to_webhook = False
        ids = [w.sf_create(LastName=f"P{i}", Email=f"p{i:02d}@example.org") for i in range(40)]
        sf, cc = _clients(w)
        fs_run.run_full_sync(w.runtime, w.setup_id, sf=sf, cc=cc)
        for sf_id in (ids[1], ids[15], ids[25], ids[38]):
            w.sf_update(sf_id, LastName="Edited")
        w.sf_create(LastName="New1", Email="new1@example.org")
        w.sf_create(LastName="New2", Email="new2@example.org")

        sf, cc = _clients(w)
        fanned = fs_run.run_full_sync(w.runtime, w.setup_id, partitions=2, sf=sf, cc=cc)
        assert fanned["partitions"] == 2
        jobs = get_queue(real_redis, FULL_SYNC).get_jobs()
        assert [job.func_name for job in jobs] == ["jobs.full_sync.full_sync_partition"] * 2

        results: list[dict[str, Any]] = []

        def worker(args: tuple[Any, ...]) -> None:
            wsf, wcc = _clients(w)
            results.append(fs_run.run_partition(w.runtime, *args, sf=wsf, cc=wcc))

        threads = [threading.Thread(target=worker, args=(tuple(job.args),)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        assert len(results) == 2
        assert sum(1 for r in results if r.get("finished")) == 1  # one reconcile step
        with w.store.transaction() as session:
            run = runs.get_run(session, fanned["run_id"])
            assert run is not None and run.status == "succeeded"
            assert run.counts["imported"] == 6
            assert run.counts["records"] == 42
            assert run.counts["unchanged"] == 36
            assert run.api_calls["constantcontact"] > 0
            assert run.progress_done == run.progress_total == 42
            assert links_repo.counts(session, w.setup_id) == {"active": 42}
        assert checkpoints.load(w.store, w.setup_id) is None
        assert w.cc_contact("p15@example.org")["last_name"] == "Edited"
        assert "Main List" in w.cc_contact("new2@example.org")["list_names"]
    finally:
        w.close()
