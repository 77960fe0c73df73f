"""Sent email campaigns and their tracking reports (`/v3/emails`, `/v3/reports/email_reports`).

Every `/v3` exchange goes through the validating session, so shapes are checked against the spec.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.constantcontact.conftest import CC, FrozenClock

UNKNOWN = "8892baf9-970a-4de6-8400-fa4ec461987c"


def _audience(cc: CC, n: int = 3, name: str = "Main") -> tuple[str, list[dict[str, Any]]]:
    list_id = cc.make_list(name)
    people = [
        cc.make_contact(
            f"p{i}@example.com", first_name=f"P{i}", last_name="Doe", list_memberships=[list_id]
        )
        for i in range(n)
    ]
    return list_id, people


def _send(cc: CC, **body: Any) -> dict[str, Any]:
    resp = cc.post("/_sandbox/emails", json={"name": "Spring", "subject": "Hello", **body})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _events(cc: CC, activity_id: str, events: list[dict[str, Any]]) -> Any:
    return cc.post(f"/_sandbox/emails/{activity_id}/events", json=events)


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


def test_sent_campaign_reads_back_through_the_api(cc: CC, clock: FrozenClock) -> None:
    list_id, _ = _audience(cc)
    sent = _send(cc, html_content="<html><body>Hi</body></html>", list_ids=[list_id])
    assert sent["sends"] == 3
    campaigns = cc.get("/v3/emails").json()["campaigns"]
    assert [(c["campaign_id"], c["name"], c["current_status"]) for c in campaigns] == [
        (sent["campaign_id"], "Spring", "Done")
    ]
    campaign = cc.get(f"/v3/emails/{sent['campaign_id']}").json()
    roles = {a["role"]: a["campaign_activity_id"] for a in campaign["campaign_activities"]}
    assert roles == {
        "primary_email": sent["campaign_activity_id"],
        "permalink": sent["permalink_activity_id"],
    }
    activity = cc.get(f"/v3/emails/activities/{sent['campaign_activity_id']}").json()
    assert activity["subject"] == "Hello" and activity["contact_list_ids"] == [list_id]
    assert activity["current_status"] == "DONE" and activity["role"] == "primary_email"
    assert "html_content" not in activity  # only on request
    full = cc.get(
        f"/v3/emails/activities/{sent['campaign_activity_id']}",
        params={"include": "html_content,permalink_url,physical_address_in_footer"},
    ).json()
    assert full["html_content"] == "<html><body>Hi</body></html>"
    assert full["physical_address_in_footer"]["country_code"] == "US"


def test_sends_report_names_each_recipient_at_the_send_time(cc: CC) -> None:
    list_id, people = _audience(cc)
    sent = _send(cc, list_ids=[list_id], sent_at="2026-11-20T09:00:00Z")
    sends = _report(cc, sent["campaign_activity_id"], "sends")
    assert sorted(s["contact_id"] for s in sends) == sorted(p["contact_id"] for p in people)
    assert {s["tracking_activity_type"] for s in sends} == {"em_sends"}
    assert {s["created_time"] for s in sends} == {"2026-11-20T09:00:00.000Z"}
    first = next(s for s in sends if s["email_address"] == "p0@example.com")
    assert (first["first_name"], first["last_name"]) == ("P0", "Doe")


def test_only_active_contacts_are_sent(cc: CC) -> None:
    list_id, people = _audience(cc)
    cc.post("/_sandbox/unsubscribe", json={"email": "p1@example.com"})
    cc.delete(f"/v3/contacts/{people[2]['contact_id']}")
    sent = _send(cc, list_ids=[list_id])
    assert sent["sends"] == 1
    sends = _report(cc, sent["campaign_activity_id"], "sends")
    assert [s["email_address"] for s in sends] == ["p0@example.com"]


def test_events_fill_their_reports_most_recent_first(cc: CC, clock: FrozenClock) -> None:
    list_id, people = _audience(cc)
    sent = _send(cc, list_ids=[list_id], sent_at="2026-11-26T07:00:00Z")
    aid = sent["campaign_activity_id"]
    resp = _events(
        cc,
        aid,
        [
            {"email": "p0@example.com", "type": "open", "at": "2026-11-26T08:00:00Z"},
            {"email": "p0@example.com", "type": "open", "at": "2026-11-26T09:00:00Z"},
            {
                "contact_id": people[1]["contact_id"],
                "type": "open",
                "device_type": "mobile",
                "at": "2026-11-26T08:30:00Z",
            },
            {"email": "p0@example.com", "type": "click", "url": "https://a.example/x"},
            {"email": "p1@example.com", "type": "click", "url": "https://a.example/y"},
            {"email": "p2@example.com", "type": "click", "url": "https://a.example/x"},
            {"email": "p2@example.com", "type": "bounce", "bounce_code": "F"},
            {"email": "p1@example.com", "type": "forward"},
        ],
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["recorded"]["open"] == 3
    opens = _report(cc, aid, "opens")
    assert [o["created_time"] for o in opens] == [
        "2026-11-26T09:00:00.000Z",
        "2026-11-26T08:30:00.000Z",
        "2026-11-26T08:00:00.000Z",
    ]
    assert opens[1]["device_type"] == "mobile"
    unique = _report(cc, aid, "unique_opens")
    assert [(u["email_address"], u["created_time"]) for u in unique] == [
        ("p0@example.com", "2026-11-26T09:00:00.000Z"),
        ("p1@example.com", "2026-11-26T08:30:00.000Z"),
    ]
    clicks = _report(cc, aid, "clicks")
    assert {c["tracking_activity_type"] for c in clicks} == {"em_clicks"}
    url_ids = {c["link_url"]: c["url_id"] for c in clicks}
    assert len(set(url_ids.values())) == 2
    only_x = _report(cc, aid, "clicks", url_id=int(url_ids["https://a.example/x"]))
    assert sorted(c["email_address"] for c in only_x) == ["p0@example.com", "p2@example.com"]
    bounces = _report(cc, aid, "bounces")
    assert [(b["email_address"], b["bounce_code"]) for b in bounces] == [("p2@example.com", "F")]
    assert _report(cc, aid, "bounces", bounce_code=["B", "D"]) == []
    forwards = _report(cc, aid, "forwards")
    assert [(f["email_address"], f["tracking_activity_type"]) for f in forwards] == [
        ("p1@example.com", "em_forwards")
    ]
    assert _report(cc, aid, "optouts") == []


def test_optout_unsubscribes_the_contact_as_the_person_did(cc: CC) -> None:
    list_id, people = _audience(cc)
    sent = _send(cc, list_ids=[list_id], sent_at="2026-11-26T07:00:00Z")
    aid = sent["campaign_activity_id"]
    resp = _events(
        cc,
        aid,
        [
            {
                "email": "p1@example.com",
                "type": "optout",
                "reason": "Too many emails",
                "at": "2026-11-26T09:30:00Z",
            }
        ],
    )
    assert resp.status_code == 201, resp.text
    optouts = _report(cc, aid, "optouts")
    assert [(o["contact_id"], o["opt_out_reason"]) for o in optouts] == [
        (people[1]["contact_id"], "Too many emails")
    ]
    contact = cc.get(f"/v3/contacts/{people[1]['contact_id']}").json()["email_address"]
    assert contact["permission_to_send"] == "unsubscribed"
    assert contact["opt_out_source"] == "Contact"
    assert contact["opt_out_date"] == "2026-11-26T09:30:00.000Z"
    assert cc.read_back("p1@example.com")["list_memberships"] == []


def test_reports_page_by_cursor(cc: CC) -> None:
    list_id, _ = _audience(cc, n=7)
    aid = _send(cc, list_ids=[list_id], sent_at="2026-11-25T00:00:00Z")["campaign_activity_id"]
    _events(
        cc,
        aid,
        [
            {"email": f"p{i}@example.com", "type": "open", "at": f"2026-11-25T0{i}:00:00Z"}
            for i in range(7)
        ],
    )
    first = cc.get(f"/v3/reports/email_reports/{aid}/tracking/opens", params={"limit": 3}).json()
    assert len(first["tracking_activities"]) == 3 and "next" in first["_links"]
    everything = _report(cc, aid, "opens", limit=3)
    assert [o["email_address"] for o in everything] == [
        f"p{i}@example.com" for i in range(6, -1, -1)
    ]
    assert len(_report(cc, aid, "sends", limit=2)) == 7


def test_unknown_ids_answer_404_in_constant_contacts_shape(cc: CC) -> None:
    for path in (
        f"/v3/emails/{UNKNOWN}",
        f"/v3/emails/activities/{UNKNOWN}",
        f"/v3/reports/email_reports/{UNKNOWN}/tracking/sends",
        f"/v3/reports/email_reports/{UNKNOWN}/tracking/clicks",
    ):
        resp = cc.get(path)
        assert resp.status_code == 404, path
        assert resp.json()[0]["error_key"] == "contacts.api.not_found"


def test_permalink_activity_has_empty_reports(cc: CC) -> None:
    list_id, _ = _audience(cc, n=1)
    sent = _send(cc, list_ids=[list_id])
    assert _report(cc, sent["permalink_activity_id"], "sends") == []


def test_resend_goes_to_active_non_openers(cc: CC, clock: FrozenClock) -> None:
    list_id, _ = _audience(cc, n=4)
    sent = _send(cc, list_ids=[list_id])
    _events(
        cc,
        sent["campaign_activity_id"],
        [
            {"email": "p0@example.com", "type": "open"},
            {"email": "p1@example.com", "type": "optout"},
        ],
    )
    clock.advance(3600)
    resp = cc.post(f"/_sandbox/emails/{sent['campaign_id']}/resend", json={"subject": "Again"})
    assert resp.status_code == 201, resp.text
    resend = resp.json()
    sends = _report(cc, resend["campaign_activity_id"], "sends")
    assert sorted(s["email_address"] for s in sends) == ["p2@example.com", "p3@example.com"]
    campaign = cc.get(f"/v3/emails/{sent['campaign_id']}").json()
    assert [a["role"] for a in campaign["campaign_activities"]] == [
        "primary_email",
        "permalink",
        "resend",
    ]
    assert campaign["updated_at"] == "2026-11-26T11:00:00.000Z"
    activity = cc.get(f"/v3/emails/activities/{resend['campaign_activity_id']}").json()
    assert activity["role"] == "resend" and activity["subject"] == "Again"
    again = cc.post(f"/_sandbox/emails/{sent['campaign_id']}/resend", json={})
    assert again.status_code == 409  # one resend per campaign


def test_emails_filter_on_updated_at_and_page(cc: CC, clock: FrozenClock) -> None:
    list_id, _ = _audience(cc, n=1)
    for day in range(1, 6):
        _send(cc, name=f"C{day}", list_ids=[list_id], sent_at=f"2026-11-0{day}T08:00:00Z")
    names = []
    resp = cc.get("/v3/emails", params={"limit": 2})
    while True:
        names += [c["name"] for c in resp.json()["campaigns"]]
        nxt = resp.json().get("_links", {}).get("next", {}).get("href")
        if not nxt:
            break
        resp = cc.get(nxt)
    assert names == ["C1", "C2", "C3", "C4", "C5"]
    window = cc.get(
        "/v3/emails",
        params={"after_date": "2026-11-02T08:00:00Z", "before_date": "2026-11-05T00:00:00Z"},
    ).json()
    assert [c["name"] for c in window["campaigns"]] == ["C3", "C4"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "X", "subject": "S"}, 400),  # no audience
        ({"name": "X", "subject": "S", "list_ids": [UNKNOWN]}, 400),
        ({"name": "", "subject": "S", "contact_ids": []}, 400),
    ],
)
def test_send_rejects_bad_requests(cc: CC, body: dict[str, Any], status: int) -> None:
    assert cc.post("/_sandbox/emails", json=body).status_code == status


def test_duplicate_name_and_events_for_non_recipients_are_refused(cc: CC) -> None:
    list_id, _ = _audience(cc, n=1)
    other = cc.make_contact("stranger@example.com")
    sent = _send(cc, list_ids=[list_id])
    assert (
        cc.post(
            "/_sandbox/emails", json={"name": "spring", "subject": "S", "list_ids": [list_id]}
        ).status_code
        == 409
    )
    refused = _events(
        cc, sent["campaign_activity_id"], [{"contact_id": other["contact_id"], "type": "open"}]
    )
    assert refused.status_code == 400
    bad_type = _events(cc, sent["campaign_activity_id"], [{"email": "p0@example.com", "type": "x"}])
    assert bad_type.status_code == 400
    early = _events(
        cc,
        sent["campaign_activity_id"],
        [{"email": "p0@example.com", "type": "open", "at": "2020-01-01T00:00:00Z"}],
    )
    assert early.status_code == 400
    assert _report(cc, sent["campaign_activity_id"], "opens") == []  # nothing half-recorded
    assert _events(cc, UNKNOWN, [{"email": "p0@example.com", "type": "open"}]).status_code == 404


def test_send_to_contact_ids_and_reset_clears_campaigns(cc: CC) -> None:
    person = cc.make_contact("solo@example.com")
    sent = _send(cc, contact_ids=[person["contact_id"]])
    assert sent["sends"] == 1
    assert (
        cc.get(f"/v3/emails/activities/{sent['campaign_activity_id']}").json()["contact_list_ids"]
        == []
    )
    state = cc.get("/_sandbox/state").json()["emails"]
    assert state == {"campaigns": 1, "activities": 2, "send_history": 1, "tracking": {"send": 1}}
    assert cc.post("/_sandbox/reset", json={}).status_code in (200, 204)
    token = cc.post("/_sandbox/tokens", json={}).json()["access_token"]
    cc.session.headers["Authorization"] = f"Bearer {token}"
    assert cc.get("/v3/emails").json()["campaigns"] == []
    assert cc.get("/_sandbox/state").json()["emails"]["campaigns"] == 0


def test_nothing_is_sent_or_done_ahead_of_the_clock(cc: CC) -> None:
    list_id, _ = _audience(cc, n=1)
    future = {"name": "Later", "subject": "S", "list_ids": [list_id]}
    resp = cc.post("/_sandbox/emails", json={**future, "sent_at": "2026-11-26T10:00:01Z"})
    assert resp.status_code == 400
    sent = _send(cc, list_ids=[list_id], sent_at="2026-11-26T09:00:00Z")
    ahead = [{"email": "p0@example.com", "type": "open", "at": "2026-11-26T11:00:00Z"}]
    assert _events(cc, sent["campaign_activity_id"], ahead).status_code == 400
    resend = cc.post(
        f"/_sandbox/emails/{sent['campaign_id']}/resend", json={"sent_at": "2026-11-27T00:00:00Z"}
    )
    assert resend.status_code == 400


def test_seeded_campaigns_have_realistic_event_rates(cc: CC) -> None:
    seeded = cc.post(
        "/_sandbox/seed", json={"contacts": 2000, "lists": ["Main"], "unsubscribed_ratio": 0}
    ).json()
    resp = cc.post(
        "/_sandbox/emails/seed",
        json={"campaigns": 3, "days_apart": 1, "rates": {"optout": 0.01}, "seed": 7},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert len(body["campaigns"]) == 3
    totals = body["totals"]
    sends = totals["send"]
    assert 5900 <= sends <= 6000  # three campaigns to 2000, less the earlier optouts
    assert 0.2 < totals["open"] / sends < 0.6  # 30% open, some of them more than once
    assert 0.07 < totals["click"] / sends < 0.13
    assert 0.01 < totals["bounce"] / sends < 0.03
    first = body["campaigns"][0]
    optouts = _report(cc, first["campaign_activity_id"], "optouts")
    assert optouts and all(o["tracking_activity_type"] == "em_optouts" for o in optouts)
    later = {
        s["contact_id"] for s in _report(cc, body["campaigns"][2]["campaign_activity_id"], "sends")
    }
    assert not later & {o["contact_id"] for o in optouts}  # opted out before the later sends
    unique = _report(cc, first["campaign_activity_id"], "unique_opens")
    assert len(unique) == len({u["contact_id"] for u in unique})
    campaigns = cc.get("/v3/emails").json()["campaigns"]
    assert [c["updated_at"] for c in campaigns] == sorted(c["updated_at"] for c in campaigns)
    assert seeded["list_ids"]
