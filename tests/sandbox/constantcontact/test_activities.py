"""Bulk activities: JSON import, list memberships, deletes, exports, and the state machine."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.sandbox.constantcontact.conftest import CC


def post_import(cc: CC, rows: list[dict[str, Any]], list_ids: list[str]) -> dict[str, Any]:
    resp = cc.post(
        "/v3/activities/contacts_json_import", json={"import_data": rows, "list_ids": list_ids}
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_state_machine_and_work_applied_only_on_completion(cc: CC) -> None:
    main = cc.make_list()
    activity = post_import(cc, [{"email": "a@example.com", "first_name": "A"}], [main])
    assert activity["state"] == "initialized" and activity["percent_done"] == 0
    assert activity["status"]["items_total_count"] == 1
    assert activity["_links"]["self"]["href"] == f"/v3/activities/{activity['activity_id']}"
    assert cc.get("/_sandbox/contacts", params={"email": "a@example.com"}).status_code == 404
    first = cc.get(f"/v3/activities/{activity['activity_id']}").json()
    assert first["state"] == "processing" and first["percent_done"] == 50
    assert cc.get("/_sandbox/contacts", params={"email": "a@example.com"}).status_code == 404
    done = cc.get(f"/v3/activities/{activity['activity_id']}").json()
    assert done["state"] == "completed" and done["percent_done"] == 100
    assert done["status"]["person_count"] == 1
    assert "completed_at" in done and "started_at" in done
    assert cc.read_back("a@example.com")["list_memberships"] == [main]


def test_completing_one_activity_completes_earlier_ones_first(cc: CC) -> None:
    main = cc.make_list()
    other = cc.make_list("Other")
    first = post_import(cc, [{"email": "a@example.com"}], [main])
    second = post_import(cc, [{"email": "a@example.com", "last_name": "Later"}], [other])
    cc.finish(second)
    back = cc.read_back("a@example.com")
    assert back["last_name"] == "Later"
    assert back["list_names"] == ["Main", "Other"]
    assert cc.get(f"/v3/activities/{first['activity_id']}").json()["state"] == "completed"


def test_import_new_existing_unsubscribed_deleted_and_row_errors(cc: CC) -> None:
    main = cc.make_list()
    cc.make_field("Favourite Colour")
    existing = cc.make_contact("old@example.com", first_name="Keep", job_title="CTO")
    cc.make_contact("unsub@example.com")
    cc.post("/_sandbox/unsubscribe", json={"email": "unsub@example.com"})
    gone = cc.make_contact("gone@example.com")
    cc.delete(f"/v3/contacts/{gone['contact_id']}")
    rows = [
        {
            "email": "new@example.com",
            "first_name": "New",
            "cf:Favourite_Colour": "green",
            "work_phone": "555-0101",
            "street": "1 Main St",
            "street2": "Apt 2",
            "city": "Springfield",
            "work_city": "Shelbyville",
        },
        {"email": "OLD@example.com", "last_name": "Updated"},
        {"email": "unsub@example.com", "first_name": "U"},
        {"email": "gone@example.com"},
        {"email": "not-an-email"},
        {"email": "x@example.com", "cf:No_Such_Field": "1"},
    ]
    done = cc.finish(post_import(cc, rows, [main]))
    assert done["state"] == "completed"
    assert done["status"] == {
        "items_total_count": 6,
        "person_count": 4,
        "error_count": 1,
        "correctable_count": 1,
        "cannot_add_to_list_count": 1,
    }
    assert done["activity_errors"] == [
        "import_data[4]: email address is invalid.",
        "import_data[5]: custom field No_Such_Field does not exist.",
    ]
    new = cc.read_back("new@example.com")
    assert new["email_address"]["permission_to_send"] == "implicit"
    assert new["email_address"]["opt_in_source"] == "Account"
    assert new["custom_fields_by_name"] == {"Favourite_Colour": "green"}
    assert new["phone_numbers"][0]["kind"] == "work"
    addresses = {a["kind"]: a for a in new["street_addresses"]}
    assert addresses["home"]["street"] == "1 Main St Apt 2"
    assert addresses["home"]["city"] == "Springfield"
    assert addresses["work"]["city"] == "Shelbyville"
    old = cc.read_back("old@example.com")
    assert (old["first_name"], old["last_name"], old["job_title"]) == ("Keep", "Updated", "CTO")
    assert old["contact_id"] == existing["contact_id"]
    unsub = cc.read_back("unsub@example.com")
    assert unsub["email_address"]["permission_to_send"] == "unsubscribed"  # unchanged
    assert unsub["list_memberships"] == []  # not added
    assert unsub["first_name"] == "U"  # but its properties were updated
    revived = cc.read_back("gone@example.com")
    assert "deleted_at" not in revived and revived["list_names"] == ["Main"]
    assert cc.get("/_sandbox/contacts", params={"email": "x@example.com"}).status_code == 404


def test_import_caps(cc: CC) -> None:
    main = cc.make_list()
    too_many = [{"email": f"c{i}@example.com"} for i in range(40001)]
    # Schema-checking 40,000 rows takes seconds; these bodies are well-formed, only too big.
    with cc.invalid():
        resp = cc.post(
            "/v3/activities/contacts_json_import",
            json={"import_data": too_many, "list_ids": [main]},
        )
    assert resp.status_code == 400
    assert "40000" in resp.json()[0]["error_message"]
    row = {"job_title": "x" * 50, "company_name": "y" * 50}
    big = [{"email": f"c{i}@example.com", **row} for i in range(40000)]
    with cc.invalid():
        resp = cc.post(
            "/v3/activities/contacts_json_import", json={"import_data": big, "list_ids": [main]}
        )
    assert resp.status_code == 400
    assert "4 MB" in resp.json()[0]["error_message"]
    with cc.invalid():
        no_lists = cc.post(
            "/v3/activities/contacts_json_import",
            json={"import_data": [{"email": "a@example.com"}]},
        )
    assert no_lists.status_code == 400


def test_import_to_unknown_list_is_400(cc: CC) -> None:
    resp = cc.post(
        "/v3/activities/contacts_json_import",
        json={
            "import_data": [{"email": "a@example.com"}],
            "list_ids": ["00000000-0000-4000-8000-000000000000"],
        },
    )
    assert resp.status_code == 400


def test_add_and_remove_list_memberships(cc: CC) -> None:
    main = cc.make_list()
    extra = cc.make_list("Extra")
    a = cc.make_contact("a@example.com", list_memberships=[main])
    b = cc.make_contact("b@example.com", list_memberships=[main])
    cc.make_contact("u@example.com", list_memberships=[main])
    cc.post("/_sandbox/unsubscribe", json={"email": "u@example.com"})
    add = cc.post(
        "/v3/activities/add_list_memberships",
        json={"source": {"contact_ids": [a["contact_id"], b["contact_id"]]}, "list_ids": [extra]},
    )
    assert add.status_code == 201
    assert add.json()["status"]["list_count"] == 1
    done = cc.finish(add.json())
    assert done["status"] == {"items_total_count": 2, "items_completed_count": 2, "list_count": 1}
    assert cc.read_back("a@example.com")["list_names"] == ["Main", "Extra"]
    everyone = cc.post(
        "/v3/activities/add_list_memberships",
        json={
            "source": {"all_active_contacts": True},
            "exclude": {"contact_ids": [b["contact_id"]]},
            "list_ids": [extra],
        },
    )
    cc.finish(everyone.json())
    assert cc.read_back("u@example.com")["list_memberships"] == []  # unsubscribed: never added
    remove = cc.post(
        "/v3/activities/remove_list_memberships",
        json={"source": {"list_ids": [main]}, "list_ids": [extra]},
    )
    cc.finish(remove.json())
    assert cc.read_back("a@example.com")["list_names"] == ["Main"]
    assert cc.read_back("b@example.com")["list_names"] == ["Main"]


@pytest.mark.parametrize(
    "source",
    [
        {},
        {"contact_ids": ["6d1b4a4e-3f6a-4d59-9a5b-4c1e0b7e2a10"], "all_active_contacts": True},
    ],
)
def test_membership_source_needs_exactly_one_kind(cc: CC, source: dict[str, Any]) -> None:
    main = cc.make_list()
    resp = cc.post(
        "/v3/activities/add_list_memberships", json={"source": source, "list_ids": [main]}
    )
    assert resp.status_code == 400


def test_membership_id_caps(cc: CC) -> None:
    main = cc.make_list()
    ids = ["6d1b4a4e-3f6a-4d59-9a5b-4c1e0b7e2a10"] * 501
    with cc.invalid():
        resp = cc.post(
            "/v3/activities/add_list_memberships",
            json={"source": {"contact_ids": ids}, "list_ids": [main]},
        )
    assert resp.status_code == 400


def test_target_list_deleted_before_completion_fails_the_activity(cc: CC) -> None:
    main = cc.make_list()
    extra = cc.make_list("Extra")
    cc.make_contact("a@example.com", list_memberships=[main])
    add = cc.post(
        "/v3/activities/add_list_memberships",
        json={"source": {"list_ids": [main]}, "list_ids": [extra]},
    ).json()
    cc.sandbox.store.delete_list(cc.sandbox.store.list_row(extra)["id"])
    done = cc.finish(add)
    assert done["state"] == "failed"
    assert done["activity_errors"] and "does not exist" in done["activity_errors"][0]


def test_contact_delete_activity(cc: CC) -> None:
    main = cc.make_list()
    a = cc.make_contact("a@example.com", list_memberships=[main])
    cc.make_contact("b@example.com", list_memberships=[main])
    with cc.invalid():
        both = cc.post("/v3/activities/contact_delete", json={})
    assert both.status_code == 400
    by_id = cc.post("/v3/activities/contact_delete", json={"contact_ids": [a["contact_id"]]})
    assert by_id.status_code == 201
    cc.finish(by_id.json())
    assert "deleted_at" in cc.read_back("a@example.com")
    by_list = cc.post("/v3/activities/contact_delete", json={"list_ids": [main]})
    done = cc.finish(by_list.json())
    assert done["status"]["items_total_count"] == 1
    assert "deleted_at" in cc.read_back("b@example.com")


def test_contact_export_csv(cc: CC) -> None:
    main = cc.make_list()
    colour = cc.make_field("Colour")
    cc.make_contact(
        "a@example.com",
        first_name="Ada",
        list_memberships=[main],
        custom_fields=[{"custom_field_id": colour["custom_field_id"], "value": "red"}],
    )
    cc.make_contact("u@example.com")
    cc.post("/_sandbox/unsubscribe", json={"email": "u@example.com"})
    resp = cc.post(
        "/v3/activities/contact_exports",
        json={"status": "unsubscribed", "fields": ["email_address", "email_optout_source"]},
    )
    assert resp.status_code == 201
    assert "results" not in resp.json()["_links"]
    done = cc.finish(resp.json())
    href = done["_links"]["results"]["href"]
    assert href == f"/v3/contact_exports/{done['activity_id']}"
    rows = list(csv.DictReader(io.StringIO(cc.get(href).text)))
    assert rows == [{"email_address": "u@example.com", "email_optout_source": "Contact"}]
    everything = cc.finish(
        cc.post("/v3/activities/contact_exports", json={"list_ids": [main]}).json()
    )
    table = list(csv.DictReader(io.StringIO(cc.get(everything["_links"]["results"]["href"]).text)))
    assert [(r["email_address"], r["first_name"], r["cf:Colour"]) for r in table] == [
        ("a@example.com", "Ada", "red")
    ]


def test_export_not_ready_is_404(cc: CC) -> None:
    activity = cc.post("/v3/activities/contact_exports", json={}).json()
    assert cc.get(f"/v3/contact_exports/{activity['activity_id']}").status_code == 404


def test_queue_cap_answers_429(cc: CC) -> None:
    cc.sandbox.config["MAX_QUEUED_ACTIVITIES"] = 2
    main = cc.make_list()
    for _ in range(2):
        post_import(cc, [{"email": "a@example.com"}], [main])
    resp = cc.post(
        "/v3/activities/contacts_json_import",
        json={"import_data": [{"email": "a@example.com"}], "list_ids": [main]},
    )
    assert resp.status_code == 429
    assert "1,000 queued activities" in resp.json()["error_message"]


def test_list_activities_by_state(cc: CC) -> None:
    cc.sandbox.config["ACTIVITY_STEPS"] = 3  # one listing (one poll) does not finish it
    main = cc.make_list()
    done = cc.finish(post_import(cc, [{"email": "a@example.com"}], [main]))
    pending = post_import(cc, [{"email": "b@example.com"}], [main])
    listed = cc.get("/v3/activities").json()["activities"]
    assert [a["activity_id"] for a in listed] == [pending["activity_id"], done["activity_id"]]
    completed = cc.get("/v3/activities", params={"state": "completed"}).json()["activities"]
    assert [a["activity_id"] for a in completed] == [done["activity_id"]]


def test_in_step_mode_a_listing_is_one_poll_of_each_unfinished_activity(cc: CC) -> None:
    cc.sandbox.config["ACTIVITY_STEPS"] = 2
    main = cc.make_list()
    first = post_import(cc, [{"email": "a@example.com"}], [main])
    second = post_import(cc, [{"email": "b@example.com"}], [main])
    states = [a["state"] for a in cc.get("/v3/activities").json()["activities"]]
    assert states == ["processing", "processing"]
    listed = {a["activity_id"]: a["state"] for a in cc.get("/v3/activities").json()["activities"]}
    assert listed == {first["activity_id"]: "completed", second["activity_id"]: "completed"}
    assert cc.read_back("b@example.com")["list_names"] == ["Main"]


def test_zero_steps_completes_at_once(cc: CC) -> None:
    cc.sandbox.config["ACTIVITY_STEPS"] = 0
    main = cc.make_list()
    activity = post_import(cc, [{"email": "a@example.com"}], [main])
    assert activity["state"] == "completed"
    assert cc.read_back("a@example.com")["list_names"] == ["Main"]


def test_time_based_activities_complete_at_the_first_poll_after_their_processing_time() -> None:
    from sandbox.adapter import in_process_session
    from sandbox.constantcontact.app import create_app
    from tests.sandbox.constantcontact.conftest import FrozenClock

    clock = FrozenClock()
    app = create_app({"RATE_PER_SECOND": 0, "ACTIVITY_SECONDS": 2.0, "clock": clock})
    s = in_process_session("https://cc.test", app)
    token = s.post("https://cc.test/_sandbox/tokens").json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    lst = s.post("https://cc.test/v3/contact_lists", json={"name": "L"}, headers=auth).json()
    act = s.post(
        "https://cc.test/v3/activities/contacts_json_import",
        json={"import_data": [{"email": "t@example.org"}], "list_ids": [lst["list_id"]]},
        headers=auth,
    ).json()
    url = f"https://cc.test/v3/activities/{act['activity_id']}"
    assert s.get(url, headers=auth).json()["state"] == "processing"
    assert s.get(url, headers=auth).json()["state"] == "processing"  # polling does not hurry it
    clock.advance(2.0)
    assert s.get(url, headers=auth).json()["state"] == "completed"


def test_time_based_activities_apply_their_work_without_being_polled() -> None:
    from sandbox.adapter import in_process_session
    from sandbox.constantcontact.app import create_app
    from tests.sandbox.constantcontact.conftest import FrozenClock

    clock = FrozenClock()
    app = create_app({"RATE_PER_SECOND": 0, "ACTIVITY_SECONDS": 1.0, "clock": clock})
    s = in_process_session("https://cc.test", app)
    token = s.post("https://cc.test/_sandbox/tokens").json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    lst = s.post("https://cc.test/v3/contact_lists", json={"name": "L"}, headers=auth).json()
    s.post(
        "https://cc.test/v3/activities/contacts_json_import",
        json={"import_data": [{"email": "u@example.org"}], "list_ids": [lst["list_id"]]},
        headers=auth,
    )
    assert (
        s.get("https://cc.test/_sandbox/contacts", params={"email": "u@example.org"}).status_code
        == 404
    )
    clock.advance(1.5)
    found = s.get("https://cc.test/_sandbox/contacts", params={"email": "u@example.org"})
    assert found.status_code == 200 and found.json()["list_memberships"] == [lst["list_id"]]


def test_time_based_activities_land_when_due_with_no_request_at_all() -> None:
    """On the wall clock the work lands when the activity is due, polled or not: a watcher
    reading the store sees the contact ~ACTIVITY_SECONDS after the post, not at the next poll."""
    import time

    from sandbox.adapter import in_process_session
    from sandbox.constantcontact.app import create_app

    app = create_app({"RATE_PER_SECOND": 0, "ACTIVITY_SECONDS": 0.2})
    sandbox = app.extensions["cc_sandbox"]
    s = in_process_session("https://cc.test", app)
    token = s.post("https://cc.test/_sandbox/tokens").json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    lst = s.post("https://cc.test/v3/contact_lists", json={"name": "L"}, headers=auth).json()
    act = s.post(
        "https://cc.test/v3/activities/contacts_json_import",
        json={"import_data": [{"email": "w@example.org"}], "list_ids": [lst["list_id"]]},
        headers=auth,
    ).json()
    assert sandbox.store.contact_by_email("w@example.org") is None
    deadline = time.monotonic() + 5
    while sandbox.store.contact_by_email("w@example.org") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sandbox.store.contact_by_email("w@example.org") is not None
    done = sandbox.activities.get(act["activity_id"])
    assert done.state == "completed" and done.polls == 0
    assert 200 <= done.completed_at - done.created_at < 2000
