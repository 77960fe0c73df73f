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
from schemas.setup import setup_options

OPTIONS = setup_options({"name": "s", "object_type": "Contact", "main_list": "Main"})
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _engine() -> FullSync:
    ctx = SimpleNamespace(
        options=OPTIONS,
        main_list_id="L1",
        custom_field_ids={},
        frozen_list_ids=frozenset(),
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


def test_screening_settles_exactly_what_the_planner_finds_unchanged(spool: Spool) -> None:
    """The screening processes' shortcut (one SQLite join a page) agrees with ``_page``."""
    engine = _engine()
    names = ("first_name", "last_name", "job_title", "company_name")
    cases = {
        # sf_id: (record's first name, link (contact id, opted out, lists) or None,
        #         the contact (first name, permission, lists) or None)
        "003A": ("Ann", ("c-a", False, ("L1",)), ("Ann", "implicit", "L1")),  # in step
        "003B": ("Bea", ("", False, ("L1",)), ("Bea", "implicit", "L1;L9")),  # import's link
        "003C": ("Cy", ("c-c", False, ("L1",)), ("Cyrus", "implicit", "L1")),  # edited in CC
        "003D": ("Di", ("c-d", False, ("L1",)), ("Di", "unsubscribed", "")),  # unsubscribed
        "003E": ("Ed", ("c-e", False, ("L1",)), ("Ed", "implicit", "L7")),  # off the list
        "003F": ("Flo", None, ("Flo", "implicit", "L1")),  # not linked yet
        "003G": ("Gus", ("c-g", True, ("L1",)), ("Gus", "implicit", "L1")),  # opted out
        "003H": ("Hal", ("c-h", False, ("L1",)), None),  # deleted in CC
        "003I": ("Ida", ("c-i", False, ("L1",)), ("Ida", "implicit", "L1")),  # edited in SF
    }
    rows, links, contacts = [], [], []
    for sf_id, (first, link, contact) in cases.items():
        email = f"{first.lower()}@example.org"
        values = _row(engine, Id=sf_id, Email=email, LastName="X", FirstName=first)
        fp = fingerprint(map_record(OPTIONS, engine.record(values)))
        if sf_id == "003I":
            fp = "written-before-the-edit"
        rows.append((sf_id, email, values))
        if link is not None:
            cid, opted_out, lists = link
            links.append(LinkRow(sf_id, cid, email, fp, opted_out, lists))
        if contact is not None:
            cc_first, permission, cc_lists = contact
            cid = link[0] if link is not None and link[0] else f"c-{sf_id}"
            contacts.append((email, cid, permission, cc_lists, [cc_first, "X", "", ""]))
    # Two records sharing an address are left for the duplicates phase.
    twin = _row(engine, Id="003J", Email="ann@example.org", LastName="Twin")
    spool.add_cc(names, contacts)
    spool.add_links(links)
    spool.add_sf(engine.columns, [*rows[1:], ("003J", "twin@example.org", twin)])
    spool.add_sf(engine.columns, [("003K", "twin@example.org", twin)])
    spool.add_sf(engine.columns, rows[:1])
    spool.index_emails()

    bounds = spool.page_bounds(page=4)
    assert bounds == ["003D", "003H", "003K"]  # the twins counted, then left out
    screened = [
        engine.classifier.screen(spool.joined_page(low, high), high, "L1", names, True)
        for low, high in zip(["", *bounds], bounds, strict=False)
    ]
    assert [s.last_id for s in screened] == bounds
    assert sum(s.count for s in screened) == len(cases)
    settled = {sid for sid in cases} - {r[0] for s in screened for r in s.rows}
    assert settled == {"003A", "003B"}

    # The planner's own page finds the same two unchanged, and only those.
    for sf_id, email, values in rows:
        before = engine.result.unchanged
        engine._page(spool, [(sf_id, email, values)], _Pending(), force_slow=False)
        assert (engine.result.unchanged > before) == (sf_id in settled), sf_id

    # A reset settles nothing: it rewrites what it cannot compare.
    reset = engine.classifier.screen(spool.joined_page("", "003K"), "003K", "L1", names, False)
    assert reset.unchanged == 0 and len(reset.rows) == len(cases)
