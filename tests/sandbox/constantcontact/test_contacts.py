"""`/v3/contacts`: shapes, filters, cursors, conflicts, soft delete, the opt-out quirk."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.constantcontact.conftest import CC, FrozenClock


def page_emails(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [c["email_address"]["address"] for c in resp.json()["contacts"]]


def test_create_returns_contact_resource_with_implicit_permission(cc: CC) -> None:
    main = cc.make_list()
    contact = cc.make_contact("Ada@Example.com", first_name="Ada", list_memberships=[main])
    assert contact["email_address"]["address"] == "ada@example.com"
    assert contact["email_address"]["permission_to_send"] == "implicit"
    assert contact["email_address"]["opt_in_source"] == "Account"
    assert contact["first_name"] == "Ada"
    assert contact["list_memberships"] == [main]
    assert "last_name" not in contact  # unset properties are omitted, never null
    assert cc.session.exchanges >= 2


def test_create_requires_create_source(cc: CC) -> None:
    with cc.invalid():
        resp = cc.post("/v3/contacts", json={"email_address": {"address": "a@example.com"}})
    assert resp.status_code == 400
    assert resp.json()[0]["error_key"] == "contacts.api.validation.error"


def test_create_conflicts_for_every_email_ever_held_even_deleted(cc: CC) -> None:
    contact = cc.make_contact("grace@example.com")
    assert cc.delete(f"/v3/contacts/{contact['contact_id']}").status_code == 204
    resp = cc.post(
        "/v3/contacts",
        json={"email_address": {"address": "GRACE@example.com"}, "create_source": "Account"},
    )
    assert resp.status_code == 409
    assert resp.json() == [
        {
            "error_key": "contacts.api.conflict",
            "error_message": "Validation failed: EmailAddress is not unique",
        }
    ]


def test_invalid_email_is_rejected(cc: CC) -> None:
    resp = cc.post(
        "/v3/contacts",
        json={"email_address": {"address": "not-an-email"}, "create_source": "Account"},
    )
    assert resp.status_code == 400


def test_415_when_body_is_not_json(cc: CC) -> None:
    with cc.invalid():
        resp = cc.post(
            "/v3/contacts",
            data="email=a@example.com",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert resp.status_code == 415
    assert isinstance(resp.json(), list)


def test_get_omits_sub_resources_unless_included(cc: CC) -> None:
    main = cc.make_list()
    field = cc.make_field("Favourite Colour")
    contact = cc.make_contact(
        "alan@example.com",
        list_memberships=[main],
        custom_fields=[{"custom_field_id": field["custom_field_id"], "value": "green"}],
        phone_numbers=[{"phone_number": "555-0100", "kind": "work"}],
    )
    bare = cc.get(f"/v3/contacts/{contact['contact_id']}").json()
    for sub in ("custom_fields", "list_memberships", "phone_numbers", "street_addresses", "notes"):
        assert sub not in bare
    full = cc.get(
        f"/v3/contacts/{contact['contact_id']}",
        params={"include": "custom_fields,list_memberships,phone_numbers"},
    ).json()
    assert full["list_memberships"] == [main]
    assert full["custom_fields"] == [
        {"custom_field_id": field["custom_field_id"], "value": "green"}
    ]
    assert full["phone_numbers"][0]["kind"] == "work"


def test_malformed_and_unknown_ids_are_404(cc: CC) -> None:
    bad = cc.get("/v3/contacts/not-a-uuid")
    assert bad.status_code == 404
    assert bad.json()[0]["error_key"] == "contacts.api.not_found"
    missing = cc.get("/v3/contacts/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404


def test_put_replaces_top_level_fields_and_keeps_omitted_sub_resources(cc: CC) -> None:
    main = cc.make_list()
    contact = cc.make_contact(
        "edsger@example.com", first_name="Edsger", job_title="Prof", list_memberships=[main]
    )
    resp = cc.put(
        f"/v3/contacts/{contact['contact_id']}",
        json={
            "email_address": {"address": "edsger@example.com"},
            "last_name": "Dijkstra",
            "update_source": "Account",
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["last_name"] == "Dijkstra"
    assert "first_name" not in body and "job_title" not in body  # omitted ⇒ cleared
    assert body["list_memberships"] == [main]  # omitted sub-resource ⇒ kept
    assert body["update_source"] == "Account"


def test_put_requires_update_source(cc: CC) -> None:
    contact = cc.make_contact("x@example.com")
    with cc.invalid():
        resp = cc.put(
            f"/v3/contacts/{contact['contact_id']}",
            json={"email_address": {"address": "x@example.com"}},
        )
    assert resp.status_code == 400


def test_put_to_email_of_another_contact_conflicts(cc: CC) -> None:
    cc.make_contact("one@example.com")
    two = cc.make_contact("two@example.com")
    resp = cc.put(
        f"/v3/contacts/{two['contact_id']}",
        json={"email_address": {"address": "one@example.com"}, "update_source": "Account"},
    )
    assert resp.status_code == 409


def test_put_changes_email_in_place(cc: CC) -> None:
    contact = cc.make_contact("old@example.com")
    resp = cc.put(
        f"/v3/contacts/{contact['contact_id']}",
        json={"email_address": {"address": "new@example.com"}, "update_source": "Account"},
    )
    assert resp.json()["email_address"]["address"] == "new@example.com"
    assert resp.json()["contact_id"] == contact["contact_id"]


def test_soft_delete_then_get_then_revive_by_put(cc: CC, clock: FrozenClock) -> None:
    main = cc.make_list()
    contact = cc.make_contact("barbara@example.com", list_memberships=[main])
    cid = contact["contact_id"]
    assert cc.delete(f"/v3/contacts/{cid}").status_code == 204
    gone = cc.get(f"/v3/contacts/{cid}", params={"include": "list_memberships"}).json()
    assert gone["deleted_at"] == clock.now().date().isoformat()
    assert gone["list_memberships"] == []
    assert gone["email_address"]["permission_to_send"] == "implicit"  # deleted, not unsubscribed
    assert page_emails(cc.get("/v3/contacts")) == []
    assert page_emails(cc.get("/v3/contacts", params={"status": "deleted"})) == [
        "barbara@example.com"
    ]
    revived = cc.put(
        f"/v3/contacts/{cid}",
        json={
            "email_address": {"address": "barbara@example.com"},
            "update_source": "Account",
            "list_memberships": [main],
        },
    ).json()
    assert "deleted_at" not in revived
    assert revived["list_memberships"] == [main]
    assert page_emails(cc.get("/v3/contacts")) == ["barbara@example.com"]


def test_unsubscribe_by_put_removes_from_lists(cc: CC, clock: FrozenClock) -> None:
    main = cc.make_list()
    contact = cc.make_contact("frances@example.com", list_memberships=[main])
    clock.advance(60)
    resp = cc.put(
        f"/v3/contacts/{contact['contact_id']}",
        json={
            "email_address": {
                "address": "frances@example.com",
                "permission_to_send": "unsubscribed",
            },
            "update_source": "Account",
        },
    )
    email = resp.json()["email_address"]
    assert email["permission_to_send"] == "unsubscribed"
    assert email["opt_out_source"] == "Account"
    assert email["opt_out_date"].startswith("2026-11-26T10:01:00")
    assert resp.json()["list_memberships"] == []


def test_person_unsubscribe_is_invisible_to_updated_after_but_seen_by_optout_after(
    cc: CC, clock: FrozenClock
) -> None:
    main = cc.make_list()
    cc.make_contact("ken@example.com", list_memberships=[main])
    cc.make_contact("radia@example.com", list_memberships=[main])
    clock.advance(3600)
    since = clock.now().isoformat().replace("+00:00", "Z")
    clock.advance(60)
    assert cc.post("/_sandbox/unsubscribe", json={"email": "ken@example.com"}).status_code == 200

    ken = cc.read_back("ken@example.com")
    assert ken["email_address"]["permission_to_send"] == "unsubscribed"
    assert ken["email_address"]["opt_out_source"] == "Contact"
    assert ken["list_memberships"] == []
    assert ken["updated_at"] < since < ken["email_address"]["updated_at"]

    assert page_emails(cc.get("/v3/contacts", params={"updated_after": since})) == []
    assert page_emails(cc.get("/v3/contacts", params={"optout_after": since})) == [
        "ken@example.com"
    ]
    assert page_emails(cc.get("/v3/contacts", params={"status": "unsubscribed"})) == [
        "ken@example.com"
    ]
    assert page_emails(cc.get("/v3/contacts", params={"lists": main})) == ["radia@example.com"]


def test_cannot_resubscribe_a_self_unsubscribed_contact_by_put(cc: CC) -> None:
    contact = cc.make_contact("tim@example.com")
    cc.post("/_sandbox/unsubscribe", json={"email": "tim@example.com"})
    resp = cc.put(
        f"/v3/contacts/{contact['contact_id']}",
        json={
            "email_address": {"address": "tim@example.com", "permission_to_send": "explicit"},
            "update_source": "Account",
        },
    )
    assert resp.status_code == 400
    assert cc.read_back("tim@example.com")["email_address"]["permission_to_send"] == "unsubscribed"


def test_sign_up_form_creates_then_updates_and_resubscribes(cc: CC) -> None:
    main = cc.make_list()
    other = cc.make_list("Other")
    created = cc.post(
        "/v3/contacts/sign_up_form",
        json={
            "email_address": "donald@example.com",
            "first_name": "Don",
            "list_memberships": [main],
        },
    )
    assert created.status_code == 201
    assert created.json()["action"] == "created"
    cc.post("/_sandbox/unsubscribe", json={"email": "donald@example.com"})
    updated = cc.post(
        "/v3/contacts/sign_up_form",
        json={
            "email_address": "donald@example.com",
            "last_name": "Knuth",
            "list_memberships": [other],
        },
    )
    assert updated.status_code == 200
    assert updated.json() == {"contact_id": created.json()["contact_id"], "action": "updated"}
    back = cc.read_back("donald@example.com")
    assert back["email_address"]["permission_to_send"] == "explicit"  # the re-subscribe
    assert back["email_address"]["opt_in_source"] == "Contact"
    assert "opt_out_date" not in back["email_address"]
    assert (back["first_name"], back["last_name"]) == ("Don", "Knuth")  # partial update
    assert back["list_names"] == ["Other"]  # lists appended (the unsubscribe had emptied them)


def test_sign_up_form_revives_deleted_contact(cc: CC) -> None:
    main = cc.make_list()
    contact = cc.make_contact("liskov@example.com")
    cc.delete(f"/v3/contacts/{contact['contact_id']}")
    resp = cc.post(
        "/v3/contacts/sign_up_form",
        json={"email_address": "liskov@example.com", "list_memberships": [main]},
    )
    assert resp.status_code == 200
    assert "deleted_at" not in cc.read_back("liskov@example.com")


def test_cursor_paging_carries_the_query(cc: CC) -> None:
    main = cc.make_list()
    emails = [f"p{i}@example.com" for i in range(7)]
    for i, email in enumerate(emails):
        cc.make_contact(email, list_memberships=[main] if i % 2 == 0 else [])
    seen: list[str] = []
    resp = cc.get("/v3/contacts", params={"lists": main, "limit": 2, "include_count": "true"})
    pages = 0
    while True:
        body = resp.json()
        assert body["contacts_count"] == 4
        seen += [c["email_address"]["address"] for c in body["contacts"]]
        pages += 1
        nxt = body.get("_links", {}).get("next", {}).get("href")
        if not nxt:
            break
        assert nxt.startswith("/v3/contacts?cursor=")
        resp = cc.get(nxt)
    assert seen == emails[0::2]
    assert pages == 2


@pytest.mark.parametrize("limit", [0, 501])
def test_limit_out_of_range_is_400(cc: CC, limit: int) -> None:
    with cc.invalid():
        resp = cc.get("/v3/contacts", params={"limit": limit})
    assert resp.status_code == 400
    assert resp.json()[0]["error_key"] == "contacts.api.validation.error"


def test_status_and_email_and_date_filters(cc: CC, clock: FrozenClock) -> None:
    cc.make_contact("early@example.com")
    clock.advance(10)
    mark = clock.now().isoformat()
    clock.advance(10)
    cc.make_contact("late@example.com")
    cc.make_contact(
        "gone@example.com",
        email_address={"address": "gone@example.com", "permission_to_send": "unsubscribed"},
    )
    assert page_emails(cc.get("/v3/contacts", params={"created_after": mark})) == [
        "late@example.com",
        "gone@example.com",
    ]
    assert page_emails(cc.get("/v3/contacts", params={"created_before": mark})) == [
        "early@example.com"
    ]
    assert page_emails(cc.get("/v3/contacts", params={"status": "active"})) == [
        "early@example.com",
        "late@example.com",
    ]
    assert page_emails(cc.get("/v3/contacts", params={"email": "LATE@example.com"})) == [
        "late@example.com"
    ]
    assert len(page_emails(cc.get("/v3/contacts", params={"status": "all"}))) == 3
    with cc.invalid():
        assert cc.get("/v3/contacts", params={"status": "bogus"}).status_code == 400


def test_list_page_includes_sub_resources_per_contact(cc: CC) -> None:
    main = cc.make_list()
    other = cc.make_list("Other")
    cc.make_contact("a@example.com", list_memberships=[main, other])
    cc.make_contact("b@example.com")
    body = cc.get("/v3/contacts", params={"include": "list_memberships,street_addresses"}).json()
    assert [c["list_memberships"] for c in body["contacts"]] == [[main, other], []]
    assert [c["street_addresses"] for c in body["contacts"]] == [[], []]


def test_missing_token_is_401_object(anon: CC) -> None:
    with anon.invalid():
        resp = anon.get("/v3/contacts")
    assert resp.status_code == 401
    assert resp.json() == {"error_key": "unauthorized", "error_message": "Unauthorized"}


def test_malformed_json_is_400(cc: CC) -> None:
    with cc.invalid():
        resp = cc.post(
            "/v3/contacts", data="{not json", headers={"Content-Type": "application/json"}
        )
    assert resp.status_code == 400


def test_sign_up_form_keeps_a_contact_on_at_most_50_lists(cc: CC) -> None:
    lists = [cc.make_list(f"L{i}") for i in range(51)]
    first = cc.post(
        "/v3/contacts/sign_up_form",
        json={"email_address": "busy@example.com", "list_memberships": lists[:50]},
    )
    assert first.status_code == 201
    more = cc.post(
        "/v3/contacts/sign_up_form",
        json={"email_address": "busy@example.com", "list_memberships": lists[50:]},
    )
    assert more.status_code == 400
    assert len(cc.read_back("busy@example.com")["list_memberships"]) == 50


def test_concurrent_writers_are_serialised(cc: CC) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def create(i: int) -> int:
        resp = cc.post(
            "/v3/contacts",
            json={"email_address": {"address": f"t{i}@example.com"}, "create_source": "Account"},
        )
        return int(resp.status_code)

    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(create, range(40)))
    assert codes == [201] * 40
    count = cc.get("/v3/contacts", params={"include_count": "true", "limit": 1}).json()
    assert count["contacts_count"] == 40
