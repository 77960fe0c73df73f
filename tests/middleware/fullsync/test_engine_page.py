"""The engine's shortcuts agree with the planner: a new address, an unchanged record, a marriage."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from middleware.fullsync.checkpoint import Checkpoint
from middleware.fullsync.engine import FullSync, _Pending
from middleware.fullsync.spool import LinkRow, Spool
from middleware.sync.mapping import fingerprint, map_record, soql_fields
from middleware.sync.sf_to_cc import plan_sf_to_cc
from middleware.sync.types import Import, LinkRecord

OPTIONS: dict[str, Any] = {"object_type": "Contact", "main_list": "Main"}
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _engine() -> FullSync:
    ctx = SimpleNamespace(
        options=OPTIONS,
        main_list_id="L1",
        custom_field_ids={},
        sf_object="Contact",
        setup_id=1,
        run_id=None,
        now=lambda: NOW,
        cc=SimpleNamespace(calls=SimpleNamespace(total=0)),
        sf=SimpleNamespace(usage=SimpleNamespace(total=0)),
    )
    engine = FullSync(ctx, Checkpoint(run_id=1))  # type: ignore[arg-type]
    engine.columns = soql_fields(OPTIONS)
    return engine


def _row(engine: FullSync, **values: Any) -> list[str]:
    base = {"Id": "003A", "IsDeleted": "false", "CreatedDate": "2026-01-01T00:00:00.000Z"}
    base.update(values)
    return ["" if base.get(c) is None else str(base.get(c)) for c in engine.columns]


@pytest.fixture
def spool() -> Any:
    with Spool() as s:
        yield s


def test_a_new_address_is_planned_as_the_planner_plans_it(spool: Spool) -> None:
    engine = _engine()
    values = _row(engine, Email="Ada@Example.org", LastName="Lovelace", FirstName="Ada")
    spool.add_cc(("first_name", "last_name", "job_title", "company_name"), [])
    spool.add_sf(engine.columns, [("003A", "ada@example.org", values)])
    spool.index_emails()
    pending = _Pending()
    engine._page(spool, [("003A", "ada@example.org", values)], pending, force_slow=False)

    record = engine.record(values)
    expected = plan_sf_to_cc(
        OPTIONS, [record], links=[], cc_contacts=[], main_list_id="L1", custom_field_ids={},
        now=NOW,
    )  # fmt: skip
    assert [a for a in pending.actions if isinstance(a, Import | LinkRecord)] == [
        a for a in expected.actions if isinstance(a, Import | LinkRecord)
    ]


def test_an_unchanged_record_costs_nothing_and_drift_in_cc_is_rewritten(spool: Spool) -> None:
    engine = _engine()
    values = _row(engine, Email="grace@example.org", LastName="Hopper", FirstName="Grace")
    fp = fingerprint(map_record(OPTIONS, engine.record(values)))
    spool.add_cc(
        ("first_name", "last_name", "job_title", "company_name"),
        [("grace@example.org", "c-1", "implicit", "L1", ["Grace", "Hopper", "", ""])],
    )
    spool.add_links([LinkRow("003A", "c-1", "grace@example.org", fp, False, ("L1",))])
    spool.add_sf(engine.columns, [("003A", "grace@example.org", values)])
    spool.index_emails()
    pending = _Pending()
    engine._page(spool, [("003A", "grace@example.org", values)], pending, force_slow=False)
    assert pending.empty and engine.result.unchanged == 1

    # Someone edited the name in Constant Contact: Salesforce wins, by import.
    edited = _row(engine, Email="grace@example.org", LastName="Hopper", FirstName="Amazing")
    pending = _Pending()
    engine._page(spool, [("003A", "grace@example.org", edited)], pending, force_slow=False)
    assert [type(a).__name__ for a in pending.actions if isinstance(a, Import)] == ["Import"]


def test_a_contact_already_there_is_written_once_unless_this_run_sent_it(spool: Spool) -> None:
    engine = _engine()
    values = _row(engine, Email="lin@example.org", LastName="Chen", FirstName="Lin", Phone="1")
    spool.add_cc(
        ("first_name", "last_name", "job_title", "company_name"),
        [("lin@example.org", "c-9", "implicit", "L1", ["Lin", "Chen", "", ""])],
    )
    spool.add_sf(engine.columns, [("003A", "lin@example.org", values)])
    spool.index_emails()
    page = [("003A", "lin@example.org", values)]
    # The export cannot show the phone: linked to the existing contact and written once.
    pending = _Pending()
    engine._page(spool, page, pending, force_slow=False)
    [link] = [a for a in pending.actions if isinstance(a, LinkRecord)]
    assert link.cc_contact_id == "c-9"
    assert [a.sf_id for a in pending.actions if isinstance(a, Import)] == ["003A"]
    # A resumed run that sent exactly these values before it was killed: married, not resent.
    fp = fingerprint(map_record(OPTIONS, engine.record(values)))
    engine.cp.inflight = [["003A", fp]]
    spool.add_inflight([("003A", fp)])
    pending = _Pending()
    engine._page(spool, page, pending, force_slow=False)
    assert not pending.actions
    [married] = pending.link_only
    assert married["cc_contact_id"] == "c-9" and married["lists"] == ["L1"]
