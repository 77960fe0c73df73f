"""`/v3/contact_lists` and `/v3/contact_custom_fields`: conflicts, limits, counts, paging."""

from __future__ import annotations

from tests.sandbox.constantcontact.conftest import CC


def test_list_crud_and_duplicate_name(cc: CC) -> None:
    created = cc.post("/v3/contact_lists", json={"name": "Newsletter", "favorite": True})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "Newsletter" and body["favorite"] is True
    dup = cc.post("/v3/contact_lists", json={"name": "newsletter"})
    assert dup.status_code == 409
    assert dup.json()[0]["error_key"] == "contacts.api.conflict"
    got = cc.get(f"/v3/contact_lists/{body['list_id']}").json()
    assert got == body
    put = cc.put(
        f"/v3/contact_lists/{body['list_id']}",
        json={"name": "Weekly", "description": "Every Monday"},
    )
    assert put.status_code == 200
    assert put.json()["name"] == "Weekly" and put.json()["favorite"] is False


def test_rename_onto_existing_name_is_rejected(cc: CC) -> None:
    cc.make_list("A")
    b = cc.make_list("B")
    assert cc.put(f"/v3/contact_lists/{b}", json={"name": "A"}).status_code == 400


def test_list_by_name_with_membership_counts(cc: CC) -> None:
    main = cc.make_list("Main")
    cc.make_list("Other")
    cc.make_contact("a@example.com", list_memberships=[main])
    cc.make_contact("b@example.com", list_memberships=[main])
    resp = cc.get(
        "/v3/contact_lists",
        params={"name": "Main", "include_membership_count": "all", "include_count": "true"},
    )
    body = resp.json()
    assert body["lists_count"] == 1
    assert [(x["name"], x["membership_count"]) for x in body["lists"]] == [("Main", 2)]


def test_lists_page_by_cursor(cc: CC) -> None:
    names = [f"L{i}" for i in range(5)]
    for name in names:
        cc.make_list(name)
    seen, resp = [], cc.get("/v3/contact_lists", params={"limit": 2})
    while True:
        seen += [x["name"] for x in resp.json()["lists"]]
        nxt = resp.json().get("_links", {}).get("next", {}).get("href")
        if not nxt:
            break
        resp = cc.get(nxt)
    assert seen == names


def test_at_most_1000_lists(cc: CC) -> None:
    store = cc.sandbox.store
    with store.tx() as db:
        for i in range(1000):
            store._ensure_list(db, f"bulk {i}", store.now())
    resp = cc.post("/v3/contact_lists", json={"name": "one too many"})
    assert resp.status_code == 400
    assert "1000" in resp.json()[0]["error_message"]


def test_delete_list_is_an_activity_applied_on_completion(cc: CC) -> None:
    main = cc.make_list()
    cc.make_contact("a@example.com", list_memberships=[main])
    resp = cc.delete(f"/v3/contact_lists/{main}")
    assert resp.status_code == 202
    activity = resp.json()
    assert activity["state"] == "initialized"
    assert cc.read_back("a@example.com")["list_memberships"] == [main]  # not yet
    assert cc.finish(activity)["state"] == "completed"
    assert cc.read_back("a@example.com")["list_memberships"] == []
    deleted = cc.get(f"/v3/contact_lists/{main}").json()
    assert "deleted_at" in deleted
    names = [x["name"] for x in cc.get("/v3/contact_lists").json()["lists"]]
    assert names == []
    assert [
        x["name"] for x in cc.get("/v3/contact_lists", params={"status": "deleted"}).json()["lists"]
    ] == ["Main"]
    assert cc.make_list("Main") != main  # the name is free again


def test_unknown_list_is_404(cc: CC) -> None:
    resp = cc.get("/v3/contact_lists/00000000-0000-4000-8000-000000000000")
    assert resp.status_code == 404


def test_custom_field_name_from_label_and_conflict(cc: CC) -> None:
    field = cc.make_field("Member Since Year")
    assert field["name"] == "Member_Since_Year"
    assert field["type"] == "string"
    dup = cc.post(
        "/v3/contact_custom_fields", json={"label": "Member Since Year", "type": "string"}
    )
    assert dup.status_code == 409
    got = cc.get(f"/v3/contact_custom_fields/{field['custom_field_id']}").json()
    assert got["label"] == "Member Since Year"
    put = cc.put(f"/v3/contact_custom_fields/{field['custom_field_id']}", json={"label": "Joined"})
    assert put.json()["label"] == "Joined"
    assert put.json()["name"] == "Member_Since_Year"  # name is read-only


def test_custom_field_choices(cc: CC) -> None:
    resp = cc.post(
        "/v3/contact_custom_fields",
        json={
            "label": "Tier",
            "type": "single_select",
            "choices": [{"choice_label": "Gold"}, {"choice_label": "Silver"}],
        },
    )
    assert resp.status_code == 201
    assert [(c["choice_id"], c["choice_label"]) for c in resp.json()["choices"]] == [
        (1, "Gold"),
        (2, "Silver"),
    ]


def test_at_most_100_custom_fields_and_limit_100(cc: CC) -> None:
    for i in range(100):
        cc.sandbox.store.create_custom_field({"label": f"F{i}", "type": "string"})
    assert cc.post("/v3/contact_custom_fields", json={"label": "F100"}).status_code == 400
    page = cc.get("/v3/contact_custom_fields", params={"limit": 100}).json()
    assert len(page["custom_fields"]) == 100 and "_links" not in page
    with cc.invalid():
        assert cc.get("/v3/contact_custom_fields", params={"limit": 101}).status_code == 400
    first = cc.get("/v3/contact_custom_fields").json()
    assert len(first["custom_fields"]) == 50
    rest = cc.get(first["_links"]["next"]["href"]).json()
    assert len(rest["custom_fields"]) == 50


def test_deleting_a_custom_field_strips_its_values(cc: CC) -> None:
    field = cc.make_field("Colour")
    fid = field["custom_field_id"]
    cc.make_contact("a@example.com", custom_fields=[{"custom_field_id": fid, "value": "red"}])
    assert cc.delete(f"/v3/contact_custom_fields/{fid}").status_code == 204
    assert cc.read_back("a@example.com")["custom_fields"] == []
    assert cc.get(f"/v3/contact_custom_fields/{fid}").status_code == 404
