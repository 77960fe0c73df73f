"""The CC → SF poll on the in-process sandboxes: reads, matching, writes, links, errors, cursors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from middleware.cc_to_sf import poll, read, write
from middleware.store import cursors, links, setups
from middleware.store import errors as errors_repo
from middleware.sync.mapping import fingerprint, map_record, soql_fields
from middleware.sync_now import run_sync_now
from schemas.setup import setup_options
from tests.e2e.harness import CC_BASE, SF_BASE, World

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def make_world() -> Iterator[Any]:
    made: list[World] = []

    def make(**kwargs: Any) -> World:
        w = World(**kwargs)
        w.deliver_to_webhook = False
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def cc_add(
    w: World,
    email: str,
    *,
    lists: tuple[str, ...] = ("Main List",),
    first: str = "Ada",
    last: str = "Lovelace",
    **extra: Any,
) -> str:
    """A subscriber signs up in Constant Contact (through the API, on the given lists)."""
    cc = w.cc_client()
    body: dict[str, Any] = {
        "email_address": {"address": email, "permission_to_send": "implicit"},
        "list_memberships": [cc.get_or_create_list(name)["list_id"] for name in lists],
        **extra,
    }
    if first:
        body["first_name"] = first
    if last:
        body["last_name"] = last
    return str(cc.create_contact(body)["contact_id"])


def unsubscribe(w: World, email: str) -> None:
    r = w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": email})
    assert r.status_code == 200, r.text


def run(w: World, now: datetime = T0) -> dict[str, Any]:
    w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
    return poll.run_poll(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc, now=lambda: now)


def rows(w: World, soql: str) -> list[dict[str, Any]]:
    return list(w.sf_client().query_iter(soql))


def by_email(w: World, sobject: str = "Contact", fields: str = "Id") -> dict[str, dict[str, Any]]:
    return {r["Email"]: r for r in rows(w, f"SELECT Email, {fields} FROM {sobject}")}


# ------------------------------------------------------------------------------- first poll


def test_first_poll_reads_the_whole_main_list_and_matches_before_creating(make_world) -> None:
    w = make_world()
    existing = w.sf_create("Contact", LastName="Known", Email="known@example.org")
    w.sf_create("Lead", LastName="Lead", Company="X", Email="lead@example.org")
    for email in ("new@example.org", "known@example.org", "LEAD@example.org"):
        cc_add(w, email)
    cc_add(w, "elsewhere@example.org", lists=("Other",))

    summary = run(w)

    assert summary["created_contacts"] == 1
    assert summary["linked"] == 1
    assert summary["skipped"] == {"exists in Salesforce": 1}
    contacts = by_email(w, fields="FirstName, LastName")
    assert set(contacts) == {"known@example.org", "new@example.org"}
    assert contacts["new@example.org"]["LastName"] == "Lovelace"
    with w.store.transaction() as session:
        found = links.for_emails(session, w.setup_id, ["known@example.org", "new@example.org"])
    assert found["known@example.org"][0].sf_id == existing
    assert found["known@example.org"][0].fingerprint is None  # Salesforce wins: SF→CC pushes
    assert found["new@example.org"][0].fingerprint is not None
    assert w.last_sf.usage.total <= 6, w.last_sf.usage.calls


def test_an_idle_poll_costs_two_cc_calls_and_no_salesforce_call(make_world) -> None:
    w = make_world()
    cc_add(w, "a@example.org")
    run(w)
    # The overlap window re-reads the contact, which the cursor knows was handled.
    summary = run(w, T0 + timedelta(minutes=15))
    assert summary["records"] == 0
    assert w.last_cc.calls.total == 2, w.last_cc.calls.snapshot()
    assert w.last_sf.usage.total == 0, w.last_sf.usage.calls


def test_a_new_setup_links_or_creates_but_never_twice(make_world) -> None:
    w = make_world()
    cc_add(w, "a@example.org")
    run(w)
    run(w, T0 + timedelta(minutes=15))
    run(w, T0 + timedelta(minutes=30))
    assert len(rows(w, "SELECT Id FROM Contact WHERE Email = 'a@example.org'")) == 1


# ------------------------------------------------------------------------------- opt-outs


def test_an_unsubscribe_opts_out_every_lead_and_contact_with_the_address(make_world) -> None:
    w = make_world()
    contact = w.sf_create("Contact", LastName="C", Email="gone@example.org")
    lead = w.sf_create("Lead", LastName="L", Company="X", Email="gone@example.org")
    cc_add(w, "gone@example.org")
    cc_add(w, "stranger@example.org", lists=("Other",))
    run(w)
    unsubscribe(w, "gone@example.org")
    unsubscribe(w, "stranger@example.org")

    summary = run(w, T0 + timedelta(minutes=15))

    assert summary["opted_out"] == 2
    assert summary["skipped"]["unsubscribed, not in Salesforce"] == 1
    assert rows(w, f"SELECT HasOptedOutOfEmail FROM Contact WHERE Id = '{contact}'")[0][
        "HasOptedOutOfEmail"
    ]
    assert rows(w, f"SELECT HasOptedOutOfEmail FROM Lead WHERE Id = '{lead}'")[0][
        "HasOptedOutOfEmail"
    ]
    # The stranger was unsubscribed and unknown to Salesforce: never created there.
    assert not rows(w, "SELECT Id FROM Lead WHERE Email = 'stranger@example.org'")
    assert not rows(w, "SELECT Id FROM Contact WHERE Email = 'stranger@example.org'")


def test_the_daily_scan_sets_an_opt_out_again_that_someone_cleared(make_world) -> None:
    w = make_world()
    # A Lead the Contact setup never links: only the scan (or a Full Sync) sees it again.
    lead = w.sf_create("Lead", LastName="L", Company="X", Email="gone@example.org")
    cc_add(w, "gone@example.org", lists=("Other",))
    run(w)
    unsubscribe(w, "gone@example.org")
    assert run(w, T0 + timedelta(minutes=15))["opted_out"] == 1
    w.sf_update(lead, "Lead", HasOptedOutOfEmail=False)

    def flag() -> bool:
        found = rows(w, f"SELECT HasOptedOutOfEmail FROM Lead WHERE Id = '{lead}'")
        return bool(found[0]["HasOptedOutOfEmail"])

    quiet = run(w, T0 + timedelta(hours=1))  # optout_after: nothing new since
    assert (quiet.get("opted_out", 0), flag()) == (0, False)
    assert w.last_sf.usage.total == 0  # no link remembers an unsubscribed contact: no query
    summary = run(w, T0 + timedelta(hours=25))  # the safety-net scan
    assert summary["scanned_unsubscribed"] == 1
    assert summary["opted_out"] == 1
    assert flag() is True


def test_the_next_poll_sets_an_opt_out_again_on_a_linked_record(make_world) -> None:
    # Issue 9, defect 2: a linked record whose contact CC holds unsubscribed is looked at again
    # by the next poll when Salesforce clears its opt-out (one query), not only by the scan.
    w = make_world()
    contact = w.sf_create("Contact", LastName="C", Email="gone@example.org")
    lead = w.sf_create("Lead", LastName="L", Company="X", Email="gone@example.org")
    cc_add(w, "gone@example.org")
    run(w)
    unsubscribe(w, "gone@example.org")
    assert run(w, T0 + timedelta(minutes=15))["opted_out"] == 2
    with w.store.transaction() as session:
        (link,) = links.for_emails(session, w.setup_id, ["gone@example.org"])["gone@example.org"]
    assert link.subscribed_when_synced is False  # the link remembers CC's unsubscribe
    idle = run(w, T0 + timedelta(minutes=30))
    assert idle.get("opted_out", 0) == 0
    assert w.last_sf.usage.total == 1  # one query: nothing cleared since the last poll
    w.sf_update(contact, HasOptedOutOfEmail=False)
    w.sf_update(lead, "Lead", HasOptedOutOfEmail=False)

    summary = run(w, T0 + timedelta(minutes=45))
    assert "scanned_unsubscribed" not in summary
    assert summary["opted_out"] == 2  # every record of the address, as for any unsubscribe
    for sobject, sf_id in (("Contact", contact), ("Lead", lead)):
        (got,) = rows(w, f"SELECT HasOptedOutOfEmail FROM {sobject} WHERE Id = '{sf_id}'")
        assert got["HasOptedOutOfEmail"] is True


def test_opted_out_in_salesforce_stays_opted_out_and_is_not_linked(make_world) -> None:
    w = make_world()
    contact = w.sf_create(
        "Contact", LastName="C", Email="quiet@example.org", HasOptedOutOfEmail=True
    )
    cc_add(w, "quiet@example.org")
    summary = run(w)
    assert summary["skipped"] == {"exists in Salesforce, opted out": 1}
    assert rows(w, f"SELECT HasOptedOutOfEmail FROM Contact WHERE Id = '{contact}'")[0][
        "HasOptedOutOfEmail"
    ]
    with w.store.transaction() as session:
        assert links.for_emails(session, w.setup_id, ["quiet@example.org"]) == {}


@pytest.mark.parametrize(
    ("options", "created", "opted_out"),
    [
        pytest.param({"sync_to_sf": False}, 0, 1, id="one-way-sf-to-cc-still-carries-opt-outs"),
        pytest.param({"sync_unsubscribes_to_sf": False}, 1, 0, id="do-not-sync-unsubscribes"),
    ],
)
def test_options_that_stop_creates_or_opt_outs(make_world, options, created, opted_out) -> None:
    w = make_world(options=options)
    contact = w.sf_create("Contact", LastName="C", Email="gone@example.org")
    cc_add(w, "gone@example.org", lists=("Other",))
    cc_add(w, "new@example.org")
    unsubscribe(w, "gone@example.org")
    summary = run(w)
    assert summary.get("created_contacts", 0) == created
    assert summary.get("opted_out", 0) == opted_out
    flag = rows(w, f"SELECT HasOptedOutOfEmail FROM Contact WHERE Id = '{contact}'")[0]
    assert flag["HasOptedOutOfEmail"] is bool(opted_out)


# ------------------------------------------------------------------------------- sources


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("main_list", {"main@example.org"}),
        ("all_active", {"main@example.org", "other@example.org", "third@example.org"}),
        ({"lists": ["Other"]}, {"main@example.org", "other@example.org"}),
    ],
)
def test_cc_source_decides_which_contacts_flow(make_world, source, expected) -> None:
    w = make_world(options={"cc_source": source})
    cc_add(w, "main@example.org")
    cc_add(w, "other@example.org", lists=("Other",))
    cc_add(w, "third@example.org", lists=("Third",))
    run(w)
    assert set(by_email(w)) == expected


# ------------------------------------------------------------------------------- errors


def test_a_rejected_record_is_a_retryable_error_and_the_batch_goes_on(make_world) -> None:
    w = make_world(sf_config={"ORG_PROFILE": "state_country"})
    cc_add(
        w,
        "fine@example.org",
        street_addresses=[{"kind": "home", "state": "Texas", "country": "United States"}],
    )
    # pycountry knows Paris as a French subdivision; the org has no French states.
    bad = cc_add(
        w,
        "paris@example.org",
        street_addresses=[{"kind": "home", "state": "Paris", "country": "France"}],
    )
    nameless = cc_add(w, "nameless@example.org", last="")

    summary = run(w)

    assert summary["created_contacts"] == 1
    assert summary["errors"] == 2
    assert rows(w, "SELECT MailingStateCode FROM Contact")[0]["MailingStateCode"] == "TX"
    with w.store.transaction() as session:
        stored = {e.cc_contact_id: e for e in errors_repo.list_errors(session, w.setup_id)}
        assert stored[bad].code == "FIELD_INTEGRITY_EXCEPTION"
        assert stored[bad].direction == "cc_to_sf"
        assert stored[nameless].code == "LAST_NAME_REQUIRED"
        assert "LastName required" in stored[nameless].message
        errors_repo.mark_retrying(session, w.setup_id, [stored[nameless].id])

    # The subscriber gets a last name in CC; the retried error's contact is read and created.
    w.cc_client().update_contact(
        nameless,
        {
            "email_address": {"address": "nameless@example.org"},
            "first_name": "No",
            "last_name": "Longer",
        },
    )
    summary = run(w, T0 + timedelta(minutes=15))
    assert summary["created_contacts"] == 1
    with w.store.transaction() as session:
        still = {e.cc_contact_id for e in errors_repo.list_errors(session, w.setup_id)}
    assert still == {bad}


def test_duplicate_rule_rejection_is_reported_with_salesforce_message(make_world) -> None:
    w = make_world(options={"object_type": "Lead"}, sf_config={"DUPLICATE_RULE": "block"})
    lead = w.sf_create("Lead", LastName="Old", Company="X", Email="dup@example.org")
    converted = w.sf_session.post(f"{SF_BASE}/_sandbox/leads/{lead}/convert", json={}).json()
    # The converted Contact moved to another address; only the read-only Lead keeps this one.
    contact_id = converted.get("contactId") or converted.get("ContactId")
    w.sf_update(contact_id, Email="moved@example.org")
    cc_add(w, "dup@example.org")
    cc_add(w, "ok@example.org")

    summary = run(w)

    assert summary["created_leads"] == 1
    with w.store.transaction() as session:
        (err,) = errors_repo.list_errors(session, w.setup_id)
    assert err.code == "DUPLICATES_DETECTED"
    assert "Use one of these records" in err.message


# ------------------------------------------------------------------------------- echo, orgs


def test_a_record_created_from_cc_is_not_written_back_to_cc(make_world) -> None:
    w = make_world()
    cc_add(
        w,
        "echo@example.org",
        company_name="Acme",
        job_title="Countess",
        street_addresses=[
            {"kind": "home", "city": "Austin", "state": "Texas", "country": "United States"}
        ],
        phone_numbers=[{"phone_number": "555-0100", "kind": "work"}],
    )
    run(w)
    sf_id = by_email(w)["echo@example.org"]["Id"]
    record = (
        w.sf_client()
        .query_by_ids("Contact", soql_fields(setup_options(w.options)), [sf_id])
        .records[0]
    )
    with w.store.transaction() as session:
        (link,) = links.for_emails(session, w.setup_id, ["echo@example.org"])["echo@example.org"]
    assert link.fingerprint == fingerprint(map_record(setup_options(w.options), record))

    sf, cc = w.sf_client(), w.cc_client()
    summary = run_sync_now(w.runtime, w.setup_id, sf=sf, cc=cc)
    assert summary["sf_to_cc"].get("imported", 0) == 0
    assert summary["sf_to_cc"]["skipped"].get("unchanged") == 1


def test_person_accounts_get_their_own_opt_out_field(make_world) -> None:
    w = make_world(sf_config={"ORG_PROFILE": "person_accounts"})
    person = w.sf_create("Account", LastName="Person", PersonEmail="pa@example.org")
    cc_add(w, "pa@example.org", lists=("Other",))
    unsubscribe(w, "pa@example.org")
    summary = run(w)
    assert summary["opted_out"] == 1
    got = rows(w, f"SELECT PersonHasOptedOutOfEmail FROM Account WHERE Id = '{person}'")[0]
    assert got["PersonHasOptedOutOfEmail"] is True


def test_npsp_alternate_emails_and_affiliations(make_world) -> None:
    options = {"npsp_alternate_emails": True, "npsp_affiliations": True}
    w = make_world(options=options, sf_config={"ORG_PROFILE": "npsp"})
    w.sf_create(
        "Contact", LastName="Work", Email="home@example.org", npe01__WorkEmail__c="work@example.org"
    )
    cc_add(w, "work@example.org")
    cc_add(w, "new@example.org", company_name="Food Bank")
    summary = run(w)
    assert summary["skipped"] == {"exists in Salesforce": 1}
    assert summary["created_contacts"] == 1
    assert summary["affiliations_created"] == 1
    new = by_email(w, fields="Id, AccountId")["new@example.org"]
    (aff,) = rows(
        w,
        "SELECT npe5__Contact__c, npe5__Organization__r.Name, npe5__Status__c "
        "FROM npe5__Affiliation__c",
    )
    assert aff["npe5__Contact__c"] == new["Id"]
    assert aff["npe5__Organization__r"]["Name"] == "Food Bank"
    assert new["AccountId"] is None  # NPSP, not us, gives the Contact its Household Account

    # An unsubscribe of the work (non-preferred) address sets no opt-out.
    unsubscribe(w, "work@example.org")
    summary = run(w, T0 + timedelta(minutes=15))
    assert summary.get("opted_out", 0) == 0


def test_large_batches_go_through_bulk_ingest(make_world, monkeypatch) -> None:
    monkeypatch.setattr(write, "BULK_THRESHOLD", 2)
    w = make_world(options={"object_type": "Lead"})
    for i in range(4):
        cc_add(w, f"bulk{i}@example.org")
    summary = run(w)
    assert summary["created_leads"] == 4
    assert w.last_sf.usage.calls["bulk"] >= 3, w.last_sf.usage.calls
    assert w.last_sf.usage.calls.get("composite", 0) == 0


# ------------------------------------------------------------------------------- schedule


def test_due_setups_follow_poll_minutes_and_pauses(make_world) -> None:
    w = make_world(options={"schedule": {"poll_minutes": 10}})
    assert poll.due_setups(w.store, T0) == [w.setup_id]
    run(w)
    assert poll.due_setups(w.store, T0 + timedelta(minutes=9)) == []
    assert poll.due_setups(w.store, T0 + timedelta(minutes=10)) == [w.setup_id]
    # the minute tick a few seconds short of the interval counts: not every other tick
    assert poll.due_setups(w.store, T0 + timedelta(minutes=9, seconds=50)) == [w.setup_id]
    with w.store.transaction() as session:
        setups.pause(session, w.setup_id, "Constant Contact account cancelled")
    assert poll.due_setups(w.store, T0 + timedelta(minutes=10)) == []
    assert run(w)["paused"] == "Constant Contact account cancelled"


def test_cursors_are_constant_contacts_own_timestamps(make_world) -> None:
    w = make_world()
    cc_add(w, "a@example.org")
    run(w)
    with w.store.transaction() as session:
        values = cursors.all_cursors(session, w.setup_id)
    cc_time = w.cc_session.get(f"{CC_BASE}/_sandbox/clock").json()["now"]
    mark = read.Mark.load(values[read.CURSOR_UPDATED])
    assert mark.at is not None and len(mark.seen) == 1
    updated = mark.at
    assert abs(updated - datetime.fromisoformat(cc_time.replace("Z", "+00:00"))) < timedelta(
        minutes=1
    )
    assert values[read.CURSOR_LAST_POLL] == T0.isoformat()


def test_a_record_found_by_two_queries_is_written_once(make_world, monkeypatch) -> None:
    """NPSP: a Contact whose preferred and work addresses land in different query chunks."""
    from middleware.salesforce.client import SalesforceClient

    def one_by_one(self, prefix, ids, suffix="", **kwargs):
        for record_id in ids:
            yield [record_id]

    monkeypatch.setattr(SalesforceClient, "id_chunks", one_by_one)
    w = make_world(options={"npsp_alternate_emails": True}, sf_config={"ORG_PROFILE": "npsp"})
    contact = w.sf_create(
        "Contact", LastName="Both", Email="home@example.org", npe01__WorkEmail__c="work@example.org"
    )
    for email in ("home@example.org", "work@example.org"):
        cc_add(w, email, lists=("Other",))
        unsubscribe(w, email)
    summary = run(w)
    assert summary["opted_out"] == 1
    assert "errors" not in summary
    assert rows(w, f"SELECT HasOptedOutOfEmail FROM Contact WHERE Id = '{contact}'")[0][
        "HasOptedOutOfEmail"
    ]


@pytest.mark.parametrize("object_type", ["Lead", "Contact"])
def test_a_thousand_new_subscribers_stay_within_the_call_budget(make_world, object_type) -> None:
    """The product's budget: ≤ 15 Salesforce and ≤ 10 Constant Contact calls per 1,000."""
    w = make_world(options={"object_type": object_type})
    run(w)  # the setup has polled before: describe and list id cached
    seeded = w.cc_session.post(
        f"{CC_BASE}/_sandbox/seed", json={"contacts": 1000, "lists": ["Main List"]}
    )
    assert seeded.status_code == 201
    summary = run(w, T0 + timedelta(minutes=15))
    assert summary[f"created_{object_type.lower()}s"] == 1000
    assert w.last_sf.usage.total <= 15, w.last_sf.usage.calls
    assert w.last_cc.calls.total <= 10, w.last_cc.calls.snapshot()


def test_an_existing_account_is_linked_when_missing_accounts_are_not_created(make_world) -> None:
    # create_missing_accounts: false stops only the creation of an Account (issue 9, defect 3).
    w = make_world(options={"create_missing_accounts": False})
    account = w.sf_create("Account", Name="Analytical Engines")
    cc_add(w, "ada@example.org", company_name="ANALYTICAL ENGINES")
    cc_add(w, "bob@example.org", company_name="Nowhere Ltd")
    summary = run(w)
    assert summary["created_contacts"] == 2
    assert "accounts_created" not in summary
    assert summary["reported: account not found"] == 1
    contacts = by_email(w, fields="AccountId")
    assert contacts["ada@example.org"]["AccountId"] == account
    assert contacts["bob@example.org"]["AccountId"] is None
    assert [r["Name"] for r in rows(w, "SELECT Name FROM Account")] == ["Analytical Engines"]


def test_the_poll_gives_a_link_without_contact_id_the_contact_it_sees(make_world) -> None:
    # Issue 9, defect 1: a link an import made knows no contact id until someone looks.
    w = make_world()
    contact_id = cc_add(w, "ann@example.org")
    with w.store.transaction() as session:
        links.upsert_links(
            session,
            w.setup_id,
            [{"sf_id": "003000000000001AAA", "sf_object": "Contact", "email": "ann@example.org"}],
        )
    summary = run(w)
    assert summary["skipped"] == {"already linked": 1}
    assert "created_contacts" not in summary
    with w.store.transaction() as session:
        found = links.for_sf_ids(session, w.setup_id, ["003000000000001AAA"])
    assert found["003000000000001AAA"].cc_contact_id == contact_id
