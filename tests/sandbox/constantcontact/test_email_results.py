"""Campaign results: send history, campaign types and the send simulator.

Every `/v3` exchange goes through the validating session, so shapes are checked against the spec;
control routes (`/_sandbox/...`) make the campaigns and draw their events.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from sandbox import cli
from sandbox.adapter import in_process_session, mount
from sandbox.constantcontact.app import create_app
from tests.contract.cc_openapi import ValidatingSession
from tests.sandbox.constantcontact.conftest import BASE, CC, START, FrozenClock

UNKNOWN = "8892baf9-970a-4de6-8400-fa4ec461987c"
LINKS = ["https://example.org/donate", "https://example.org/events", "https://example.org/news"]


def _at(hours: float) -> str:
    """An ISO time `hours` after the frozen clock's start (negative: before it)."""
    return (START + timedelta(hours=hours)).isoformat()


def _audience(cc: CC, n: int, name: str = "Main") -> str:
    list_id = cc.make_list(name)
    for i in range(n):
        cc.make_contact(f"p{i}@example.com", list_memberships=[list_id])
    return list_id


def _seeded(cc: CC, n: int) -> str:
    resp = cc.post("/_sandbox/seed", json={"contacts": n, "lists": ["Main"], "seed": 5})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["list_ids"]["Main"])


def _control(cc: CC, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    resp = cc.post(f"/_sandbox{path}", json=body)
    assert resp.status_code == status, resp.text
    return dict(resp.json())


def _report(cc: CC, activity_id: str, report: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a report, following `_links.next.href`."""
    items: list[dict[str, Any]] = []
    resp = cc.get(f"/v3/reports/email_reports/{activity_id}/tracking/{report}", params=params)
    while True:
        assert resp.status_code == 200, resp.text
        items += resp.json()["tracking_activities"]
        nxt = resp.json()["_links"].get("next", {}).get("href")
        if not nxt:
            return items
        resp = cc.get(nxt)


def _history(cc: CC, activity_id: str) -> list[dict[str, Any]]:
    resp = cc.get(f"/v3/emails/activities/{activity_id}/send_history")
    assert resp.status_code == 200, resp.text
    return list(resp.json())


# -- send history --------------------------------------------------------------------------


def test_send_history_has_one_entry_per_send_oldest_first(cc: CC, clock: FrozenClock) -> None:
    list_id = _audience(cc, 3)
    draft = _control(
        cc, "/emails", {"name": "Later", "subject": "S", "list_ids": [list_id], "draft": True}
    )
    aid = draft["campaign_activity_id"]
    assert draft["current_status"] == "Draft" and draft["sends"] == 0
    assert _history(cc, aid) == []  # never sent: 200 and an empty array
    assert _report(cc, aid, "sends") == []
    (listed,) = cc.get("/v3/emails").json()["campaigns"]
    assert listed["current_status"] == "Draft"
    assert cc.get(f"/v3/emails/activities/{aid}").json()["current_status"] == "DRAFT"

    first = _control(cc, f"/emails/{aid}/send", {"sent_at": _at(-3)})
    assert (first["send_id"], first["sends"]) == (1, 3)
    cc.make_contact("late@example.com", list_memberships=[list_id])
    second = _control(cc, f"/emails/{aid}/send", {"sent_at": _at(-2)})
    assert (second["send_id"], second["sends"]) == (2, 1)  # only the contact it had not reached
    _control(cc, f"/emails/{aid}/send", {"sent_at": _at(-1)})  # nobody new: reason 12
    _control(cc, f"/emails/{aid}/send", {"reason_code": 3})  # an attempt that errored

    history = _history(cc, aid)
    assert [h["send_id"] for h in history] == [1, 2, 3, 4]
    assert [h["count"] for h in history] == [3, 1, 0, 0]
    assert [h["run_date"] for h in history] == [
        "2026-11-26T07:00:00.000Z",
        "2026-11-26T08:00:00.000Z",
        "2026-11-26T09:00:00.000Z",
        "2026-11-26T10:00:00.000Z",
    ]
    assert [(h["send_status"], h["reason_code"]) for h in history] == [
        ("COMPLETED", 0),
        ("COMPLETED", 0),
        ("COMPLETED", 12),
        ("ERRORED", 3),
    ]
    assert all(h["contact_list_ids"] == [list_id] and h["segment_ids"] == [] for h in history)
    assert len(_report(cc, aid, "sends")) == 4
    campaign = cc.get(f"/v3/emails/{draft['campaign_id']}").json()
    assert campaign["current_status"] == "Done"
    assert campaign["updated_at"] == "2026-11-26T10:00:00.000Z"
    again = cc.post(f"/_sandbox/emails/{aid}/send", json={"sent_at": _at(-5)})
    assert again.status_code == 400  # a send follows the previous one


def test_send_history_of_a_resend_and_which_activities_have_one(cc: CC) -> None:
    list_id = _audience(cc, 2)
    sent = _control(
        cc, "/emails", {"name": "N", "subject": "S", "list_ids": [list_id], "sent_at": _at(-2)}
    )
    (entry,) = _history(cc, sent["campaign_activity_id"])
    assert (entry["send_id"], entry["count"], entry["reason_code"]) == (1, 2, 0)
    assert entry["run_date"] == "2026-11-26T08:00:00.000Z"
    resend = _control(cc, f"/emails/{sent['campaign_id']}/resend", {"sent_at": _at(-1)})
    (again,) = _history(cc, resend["campaign_activity_id"])
    assert (again["count"], again["run_date"]) == (2, "2026-11-26T09:00:00.000Z")

    permalink = cc.get(f"/v3/emails/activities/{sent['permalink_activity_id']}/send_history")
    assert permalink.status_code == 400
    unknown = cc.get(f"/v3/emails/activities/{UNKNOWN}/send_history")
    assert unknown.status_code == 404
    assert unknown.json()[0]["error_key"] == "contacts.api.not_found"
    with cc.invalid():  # the same token check as every /v3 route
        untokened = cc.get(
            f"/v3/emails/activities/{sent['campaign_activity_id']}/send_history",
            headers={"Authorization": None},
        )
    assert untokened.status_code == 401


def test_a_resend_with_nobody_left_records_reason_12(cc: CC) -> None:
    list_id = _audience(cc, 1)
    sent = _control(
        cc,
        "/emails",
        {
            "name": "N",
            "subject": "S",
            "list_ids": [list_id],
            "sent_at": _at(-2),
            "rates": {"open": 1.0},
        },
    )
    resend = _control(cc, f"/emails/{sent['campaign_id']}/resend", {})
    assert resend["sends"] == 0
    (entry,) = _history(cc, resend["campaign_activity_id"])
    assert (entry["count"], entry["send_status"], entry["reason_code"]) == (0, "COMPLETED", 12)


# -- campaign types ------------------------------------------------------------------------


def test_campaign_types_render_as_the_spec_says(cc: CC) -> None:
    list_id = _audience(cc, 1)
    base = {"subject": "S", "list_ids": [list_id]}
    ab = _control(cc, "/emails", {**base, "name": "AB", "type_code": 57})
    code = _control(cc, "/emails", {**base, "name": "Code", "type": "CUSTOM_CODE_EMAIL"})
    # The spec lists no code for automated emails: such a kind is made with both fields.
    auto = _control(
        cc, "/emails", {**base, "name": "Welcome", "type": "AUTOMATED_EMAIL", "type_code": 0}
    )
    news = _control(cc, "/emails", {**base, "name": "News"})
    listed = {
        c["name"]: (c["type"], c["type_code"]) for c in cc.get("/v3/emails").json()["campaigns"]
    }
    assert listed == {
        "AB": ("AB_TEST", 57),
        "Code": ("CUSTOM_CODE_EMAIL", 26),
        "Welcome": ("AUTOMATED_EMAIL", 0),
        "News": ("NEWSLETTER", 10),
    }
    for made in (ab, code, auto, news):
        one = cc.get(f"/v3/emails/{made['campaign_id']}").json()
        assert (one["type"], one["type_code"]) == (made["type"], made["type_code"])
    abtest = cc.get(f"/v3/emails/activities/{ab['campaign_activity_id']}/abtest").json()
    assert abtest == {"alternative_subject": "S (B)", "test_size": 30, "winner_wait_duration": 24}
    none = cc.get(f"/v3/emails/activities/{news['campaign_activity_id']}/abtest")
    assert none.status_code == 404


@pytest.mark.parametrize(
    "extra",
    [
        {"type_code": 3},  # not in the spec's list, and no type given
        {"type": "WEBINAR"},  # no code known for it
        {"type": "newsletter"},
        {"type_code": "10"},
        {"ab_test": {"test_size": 30}},  # only an A/B test campaign has one
        {"type_code": 57, "ab_test": {"test_size": 70}},
        {"type_code": 57, "ab_test": {"winner_wait_duration": 5}},
    ],
)
def test_campaign_types_are_checked(cc: CC, extra: dict[str, Any]) -> None:
    list_id = _audience(cc, 1)
    body = {"name": "X", "subject": "S", "list_ids": [list_id], **extra}
    assert cc.post("/_sandbox/emails", json=body).status_code == 400


# -- the send simulator --------------------------------------------------------------------


def test_simulated_send_honours_rates_links_and_the_clock(cc: CC, clock: FrozenClock) -> None:
    list_id = _seeded(cc, 2000)
    rates = {"open": 0.3, "click": 0.06, "bounce": 0.03, "optout": 0.01, "forward": 0.01}
    sent = _control(
        cc,
        "/emails",
        {
            "name": "Spring appeal",
            "subject": "Spring",
            "list_names": ["Main"],
            "sent_at": _at(-12),
            "links": LINKS,
            "rates": {**rates, "reopen": 0.3},
            "spread_seconds": 86400,  # a day, but the clock is only 12 hours on
            "bounce_codes": ["B", "V", "Z"],
            "seed": 1,
        },
    )
    aid = sent["campaign_activity_id"]
    assert sent["sends"] == 2000
    people, recorded = sent["contacts"], sent["recorded"]
    for kind, rate in rates.items():
        assert abs(people[kind] / 2000 - rate) < max(0.3 * rate, 0.006), (kind, people[kind])
    assert recorded["open"] > people["open"]  # some opened more than once
    assert cc.get(f"/v3/emails/activities/{aid}").json()["contact_list_ids"] == [list_id]

    reports = {
        r: _report(cc, aid, r) for r in ("opens", "clicks", "bounces", "optouts", "forwards")
    }
    for report, items in reports.items():
        assert len(items) == recorded[report[:-1]], report
        times = [i["created_time"] for i in items]
        assert times == sorted(times, reverse=True)
        assert all("2026-11-25T22:00:00.000Z" <= t <= "2026-11-26T10:00:00.000Z" for t in times)
    unique = _report(cc, aid, "unique_opens", limit=100)
    assert len(unique) == people["open"] == len({u["contact_id"] for u in unique})

    first_open: dict[str, str] = {}
    for o in reports["opens"]:
        first_open[o["contact_id"]] = min(o["created_time"], first_open.get(o["contact_id"], "~"))
    for c in reports["clicks"] + reports["forwards"]:
        assert first_open[c["contact_id"]] <= c["created_time"]  # the tracker saw the open first
    url_ids: dict[str, set[str]] = defaultdict(set)
    for c in reports["clicks"]:
        url_ids[c["link_url"]].add(c["url_id"])
    assert set(url_ids) == set(LINKS) and all(len(ids) == 1 for ids in url_ids.values())
    assert len({next(iter(ids)) for ids in url_ids.values()}) == 3

    codes = {b["contact_id"]: b["bounce_code"] for b in reports["bounces"]}
    assert set(codes.values()) <= {"B", "V", "Z"} and len(set(codes.values())) > 1
    hard = {cid for cid, code in codes.items() if code != "V"}
    readers = {i["contact_id"] for r in ("opens", "clicks", "optouts") for i in reports[r]}
    assert not hard & readers  # a hard bounce reached nobody; a V (autoreply) was delivered

    for o in reports["optouts"]:
        contact = cc.get(f"/v3/contacts/{o['contact_id']}", params={"include": "list_memberships"})
        email = contact.json()["email_address"]
        assert email["permission_to_send"] == "unsubscribed"
        assert email["opt_out_source"] == "Contact"
        assert email["opt_out_date"] == o["created_time"]
        assert contact.json()["list_memberships"] == []
    state = cc.get("/_sandbox/state").json()
    assert state["records"]["contacts_by_permission"]["unsubscribed"] == people["optout"]
    assert state["emails"]["tracking"]["open"] == recorded["open"]


def test_the_same_seed_draws_the_same_events(cc: CC) -> None:
    list_id = _audience(cc, 60)
    body = {
        "subject": "S",
        "list_ids": [list_id],
        "sent_at": _at(-6),
        "links": LINKS,
        "rates": {"open": 0.5, "click": 0.2, "bounce": 0.1, "forward": 0.1},
        "seed": 9,
    }
    one = _control(cc, "/emails", {**body, "name": "One"})
    two = _control(cc, "/emails", {**body, "name": "Two"})
    other = _control(cc, "/emails", {**body, "name": "Three", "seed": 10})

    def events(sent: dict[str, Any]) -> list[tuple[str, ...]]:
        return [
            (report, i["email_address"], i["created_time"], i.get("link_url", ""))
            for report in ("opens", "clicks", "bounces", "forwards")
            for i in _report(cc, sent["campaign_activity_id"], report)
        ]

    assert one["recorded"] == two["recorded"] and events(one) == events(two)
    assert events(one) != events(other)


def test_simulate_adds_new_events_since_the_last_read(cc: CC, clock: FrozenClock) -> None:
    _seeded(cc, 3000)
    sent = _control(
        cc,
        "/emails",
        {
            "name": "Newsletter",
            "subject": "S",
            "list_names": ["Main"],
            "sent_at": _at(-24),
            "links": LINKS[:2],
            "rates": {"open": 0.3, "click": 0.05, "bounce": 0.02},
            "spread_seconds": 6 * 3600,
        },
    )
    aid = sent["campaign_activity_id"]
    read = _report(cc, aid, "opens")
    last = max(_report(cc, aid, r)[0]["created_time"] for r in ("opens", "clicks", "bounces"))
    assert last <= "2026-11-26T04:00:00.000Z"  # within the 6-hour spread
    clock.advance(3600)
    more = _control(
        cc, f"/emails/{aid}/simulate", {"rates": {"open": 0.01, "click": 0.005}, "seed": 2}
    )
    assert more["from"] == last and more["to"] == "2026-11-26T11:00:00.000Z"
    assert 15 <= more["contacts"]["open"] <= 50 and 5 <= more["contacts"]["click"] <= 30
    assert more["recorded"]["bounce"] == 0
    opens = _report(cc, aid, "opens")
    new = opens[: len(opens) - len(read)]
    assert len(new) == more["recorded"]["open"]
    assert all(last <= o["created_time"] <= "2026-11-26T11:00:00.000Z" for o in new)
    assert opens[len(new) :] == read  # what was read before is unchanged
    clicks = _report(cc, aid, "clicks")
    assert {c["link_url"] for c in clicks} == set(LINKS[:2])  # the links clicked before
    hard = {b["contact_id"] for b in _report(cc, aid, "bounces") if b["bounce_code"] != "V"}
    assert not hard & {o["contact_id"] for o in new}

    window = _control(
        cc,
        f"/emails/{aid}/simulate",
        {"rates": {"forward": 0.01}, "from": _at(-20), "to": _at(-19)},
    )
    forwards = _report(cc, aid, "forwards")
    assert len(forwards) == window["recorded"]["forward"] > 0
    assert all(
        "2026-11-25T14:00:00.000Z" <= f["created_time"] <= "2026-11-25T15:00:00.000Z"
        for f in forwards
    )


def test_simulate_refuses_what_cannot_happen(cc: CC) -> None:
    list_id = _audience(cc, 2)
    sent = _control(cc, "/emails", {"name": "N", "subject": "S", "list_ids": [list_id]})
    draft = _control(
        cc, "/emails", {"name": "D", "subject": "S", "list_ids": [list_id]} | {"draft": True}
    )
    aid = sent["campaign_activity_id"]
    refused = [
        (aid, {}),  # no rates
        (aid, {"rates": {"open": 2}}),
        (aid, {"rates": {"opens": 0.1}}),
        (aid, {"rates": {"open": 0.1}, "to": _at(1)}),  # ahead of the clock
        (aid, {"rates": {"open": 0.1}, "from": _at(0), "to": _at(-1)}),
        (aid, {"rates": {"bounce": 0.1}, "bounce_codes": ["Q"]}),
        (aid, {"rates": {"click": 0.1}, "links": ["ftp://example.org/x"]}),
        (draft["campaign_activity_id"], {"rates": {"open": 0.1}}),  # never sent
    ]
    for activity, body in refused:
        assert cc.post(f"/_sandbox/emails/{activity}/simulate", json=body).status_code == 400
    missing = cc.post(f"/_sandbox/emails/{UNKNOWN}/simulate", json={"rates": {"open": 0.1}})
    assert missing.status_code == 404
    future = {"name": "F", "subject": "S", "list_ids": [list_id], "draft": True, "sent_at": _at(-1)}
    assert cc.post("/_sandbox/emails", json=future).status_code == 400


def test_a_later_send_draws_events_for_its_new_recipients_only(cc: CC) -> None:
    list_id = _audience(cc, 20)
    sent = _control(
        cc, "/emails", {"name": "N", "subject": "S", "list_ids": [list_id], "sent_at": _at(-5)}
    )
    for i in range(20, 30):
        cc.make_contact(f"p{i}@example.com", list_memberships=[list_id])
    again = _control(
        cc,
        f"/emails/{sent['campaign_activity_id']}/send",
        {"sent_at": _at(-2), "rates": {"open": 1.0}},
    )
    assert again["sends"] == 10 and again["contacts"]["open"] == 10
    opened = {o["email_address"] for o in _report(cc, sent["campaign_activity_id"], "opens")}
    assert opened == {f"p{i}@example.com" for i in range(20, 30)}


def test_sending_to_100000_recipients_takes_seconds(cc: CC) -> None:
    list_id = _seeded(cc, 100_000)
    started = time.perf_counter()
    sent = _control(
        cc,
        "/emails",
        {
            "name": "Big",
            "subject": "S",
            "list_ids": [list_id],
            "sent_at": _at(-48),
            "links": LINKS,
            "rates": {"open": 0.3, "click": 0.05, "bounce": 0.01, "optout": 0.002},
            "seed": 1,
        },
    )
    took = time.perf_counter() - started
    assert sent["sends"] == 100_000
    assert 29_000 < sent["contacts"]["open"] < 31_000
    assert 4_500 < sent["contacts"]["click"] < 5_500
    tracking = cc.get("/_sandbox/state").json()["emails"]["tracking"]
    assert tracking["send"] == 100_000 and tracking["open"] == sent["recorded"]["open"]
    assert took < 15  # about 1.2 s on the project's 2-core machine


def test_emails_seed_route_takes_reopen_and_draws_from_openers(cc: CC) -> None:
    _seeded(cc, 500)
    resp = cc.post(
        "/_sandbox/emails/seed",
        json={"campaigns": 2, "days_apart": 1, "rates": {"reopen": 0.0, "open": 0.5}, "seed": 3},
    )
    assert resp.status_code == 201, resp.text
    totals = resp.json()["totals"]
    assert totals["open"] == sum(c["contacts"]["open"] for c in resp.json()["campaigns"])


def test_a_snapshot_from_before_types_and_send_history_is_brought_up_to_date(
    cc: CC, tmp_path: Any
) -> None:
    list_id = _audience(cc, 2)
    sent = _control(
        cc, "/emails", {"name": "Old", "subject": "S", "list_ids": [list_id], "sent_at": _at(-1)}
    )
    path = str(tmp_path / "old.sqlite")
    _control(cc, "/snapshot", {"path": path})
    with sqlite3.connect(path) as old:  # the tables as they were before
        old.execute("DROP TABLE email_sends")
        old.execute("ALTER TABLE email_campaigns DROP COLUMN type")
        old.execute("ALTER TABLE email_campaigns DROP COLUMN type_code")
    restored = create_app({**cc.sandbox.config, "SNAPSHOT": path})
    session = ValidatingSession()
    mount(session, BASE, restored)
    token = session.post(f"{BASE}/_sandbox/tokens", json={}).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    (campaign,) = session.get(f"{BASE}/v3/emails").json()["campaigns"]
    assert (campaign["type"], campaign["type_code"]) == ("NEWSLETTER", 10)
    history = session.get(
        f"{BASE}/v3/emails/activities/{sent['campaign_activity_id']}/send_history"
    ).json()
    assert [(h["count"], h["run_date"], h["contact_list_ids"]) for h in history] == [
        (2, "2026-11-26T09:00:00.000Z", [list_id])
    ]
    session.close()


# -- the CLI -------------------------------------------------------------------------------


def test_cli_send_posts_the_simulation_and_prints_ids_and_counts(
    cc: CC, monkeypatch: pytest.MonkeyPatch
) -> None:
    _audience(cc, 120)
    session = in_process_session(BASE, cc.app)
    monkeypatch.setattr(cli, "_session", lambda _ca: session)
    runner = CliRunner()
    common = ["--cc-url", BASE, "--list", "Main", "--seed", "4"]
    args = ["send", "--name", "Cli", "--link", LINKS[0], "--link", LINKS[1], "--clicks", "0.1"]
    result = runner.invoke(cli.sandbox_cli, [*args, "--spread-hours", "6", *common])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["sends"] == 120 and out["type"] == "NEWSLETTER"
    assert {"campaign_id", "campaign_activity_id", "recorded", "contacts"} <= set(out)
    assert out["contacts"]["click"] > 0
    clicks = _report(cc, out["campaign_activity_id"], "clicks")
    assert {c["link_url"] for c in clicks} <= set(LINKS[:2])
    opens = _report(cc, out["campaign_activity_id"], "opens")
    assert min(o["created_time"] for o in opens) >= "2026-11-26T04:00:00.000Z"  # 6 hours back

    ab = runner.invoke(cli.sandbox_cli, ["send", "--name", "AB", "--type-code", "57", *common])
    assert ab.exit_code == 0, ab.output
    assert json.loads(ab.output)["type"] == "AB_TEST"
    lost = runner.invoke(
        cli.sandbox_cli, ["send", "--name", "N", "--list", "Nope", "--cc-url", BASE]
    )
    assert lost.exit_code == 1 and "Nope" in lost.output
