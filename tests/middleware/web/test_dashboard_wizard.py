"""The dashboard's setup wizard through the Flask test client, against both sandboxes in-process
(connected through their OAuth consent, as an operator does): every step's page and form, errors
next to their field, CSRF, create → edit → delete, and vendor reads that fail."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from middleware.services import catalog
from middleware.services.exceptions import Invalid
from middleware.store import connections as connection_repo
from middleware.store import setups as setup_repo
from tests.middleware.web.test_dashboard import csrf_of, sign_in, text
from tests.middleware.web.test_oauth import (
    app_on_sandboxes,
    connect,
    http,
    sandboxes,
)

__all__ = ["http", "sandboxes"]


@pytest.fixture
def app(config: dict[str, Any], http: requests.Session) -> Iterator[Flask]:
    yield from app_on_sandboxes(config, http)


@pytest.fixture
def web(client: FlaskClient) -> FlaskClient:
    sign_in(client)
    return client


@pytest.fixture
def conns(client: FlaskClient, http: requests.Session) -> dict[str, int]:
    """One active connection per vendor, made through the sandboxes' consent pages."""
    made = {}
    for vendor in ("salesforce", "constantcontact"):
        answer = connect(client, http, vendor)
        assert answer.status_code == 201, answer.get_data(as_text=True)
        made[vendor] = int(answer.json["connection"]["id"])
    return made


def store_of(app: Flask) -> Any:
    return app.extensions["middleware"]["store"]


def post(web: FlaskClient, path: str, data: dict[str, Any], **kw: Any) -> Any:
    return web.post(path, data={"csrf_token": csrf_of(web, "/"), **data}, **kw)


def error_of(page: str, path: str) -> str:
    """The error shown next to the control named ``path`` (its id's ``-error`` paragraph),
    checking the control points at it with aria-describedby."""
    ident = "f-" + re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")
    match = re.search(rf'<p class="field-error" id="{ident}-error">(.*?)</p>', page, re.S)
    assert match, f"no error next to {path}"
    assert re.search(rf'aria-describedby="[^"]*{ident}-error', page), f"{path} not linked"
    return match.group(1)


def new_setup(web: FlaskClient, name: str = "Newsletter", **step2: Any) -> int:
    """Steps 1 and 2 of a new setup; the id of the setup created."""
    first = post(web, "/setups/new", {"name": name, "object_type": "Contact"})
    assert first.status_code == 303, text(first)
    draft = parse_qs(urlsplit(first.headers["Location"]).query)
    data = {k: v[0] for k, v in draft.items()}
    created = post(web, "/setups/new/constant-contact", {**data, "main_list": "Main", **step2})
    assert created.status_code == 201, text(created)
    match = re.search(r"/setups/(\d+)/edit/fields", text(created))
    assert match
    return int(match.group(1))


def options_of(app: Flask, setup_id: int) -> dict[str, Any]:
    with store_of(app).transaction() as session:
        row = setup_repo.get(session, setup_id)
        assert row is not None
        return dict(row.options or {})


# --------------------------------------------------------------------------- steps 1 and 2


def test_step_one_links_to_connections_when_there_are_none(web: FlaskClient) -> None:
    page = text(web.get("/setups/new"))
    assert "connect Salesforce on the Connections page" in page
    assert 'name="name"' in page and 'name="object_type"' in page
    assert 'name="namespace_prefix"' in page and 'name="salesforce_connection"' in page
    assert '<label for="f-namespace-prefix">' in page
    assert ">Continue</button>" in page


def test_step_one_errors_are_shown_next_to_their_field(web: FlaskClient) -> None:
    answer = post(
        web, "/setups/new", {"name": "", "object_type": "Contact", "namespace_prefix": "acme__"}
    )
    assert answer.status_code == 422
    page = text(answer)
    assert "Leave out the trailing" in error_of(page, "namespace_prefix")
    assert error_of(page, "name")
    assert 'href="#f-namespace-prefix"' in page  # the summary links to the field
    assert 'value="acme__"' in page  # what was typed is kept


def test_step_one_refuses_a_name_already_used(web: FlaskClient) -> None:
    new_setup(web, "Taken")
    answer = post(web, "/setups/new", {"name": "Taken", "object_type": "Contact"})
    assert answer.status_code == 422
    assert "Already used" in error_of(text(answer), "name")


def test_step_two_lists_the_accounts_lists_and_creates_one(
    app: Flask, web: FlaskClient, conns: dict[str, int]
) -> None:
    step1 = text(web.get("/setups/new"))
    assert f'<option value="{conns["salesforce"]}" selected>' in step1  # the only one
    first = post(
        web,
        "/setups/new",
        {"name": "News", "object_type": "Lead", "salesforce_connection": conns["salesforce"]},
    )
    step2 = web.get(first.headers["Location"])
    page = text(step2)
    # Only one connection each: chosen already, its lists readable.
    assert f'<option value="{conns["constantcontact"]}" selected>' in page
    assert 'name="main_list"' in page and "Create the setup (paused)" in page
    assert 'type="hidden" name="object_type" value="Lead"' in page
    query = {k: v[0] for k, v in parse_qs(urlsplit(first.headers["Location"]).query).items()}
    assert query["salesforce_connection"] == str(conns["salesforce"])
    created = post(
        web,
        "/setups/new/constant-contact",
        {
            **query,
            "constant_contact_connection": str(conns["constantcontact"]),
            "main_list": "",
            "new_list": "Wizard News",
        },
    )
    assert created.status_code == 201, text(created)
    shown = text(created)
    secret = re.search(r'id="webhook-secret">([^<]+)<', shown)
    assert secret and len(secret.group(1)) > 20
    names = [
        item["name"]
        for item in catalog.cc_lists(
            app.extensions["middleware"]["settings"],
            store_of(app),
            app.extensions["middleware"]["redis"],
            conns["constantcontact"],
            app.config,
        )
    ]
    assert "Wizard News" in names
    setup_id = int(re.findall(r"/setups/(\d+)/edit/fields", shown)[0])
    assert options_of(app, setup_id)["main_list"] == "Wizard News"
    with store_of(app).transaction() as session:
        row = setup_repo.get(session, setup_id)
        assert row is not None and row.pause_reason == "being set up in the dashboard wizard"
    # The secret is never shown again.
    assert secret.group(1) not in text(web.get(f"/setups/{setup_id}/edit/changes"))
    # The list is now among those offered.
    again = text(web.get(f"/setups/{setup_id}/edit/constant-contact"))
    assert '<option value="Wizard News" selected>' in again


def test_step_two_shows_the_lists_of_the_connection_chosen(
    web: FlaskClient, conns: dict[str, int]
) -> None:
    first = post(web, "/setups/new", {"name": "News", "object_type": "Contact"})
    query = {k: v[0] for k, v in parse_qs(urlsplit(first.headers["Location"]).query).items()}
    blank = post(web, "/setups/new/constant-contact", {**query, "action": "refresh"})
    assert blank.status_code == 200 and 'type="text" id="f-main-list"' in text(blank)
    shown = post(
        web,
        "/setups/new/constant-contact",
        {
            **query,
            "constant_contact_connection": str(conns["constantcontact"]),
            "action": "refresh",
        },
    )
    assert shown.status_code == 200
    assert '<select id="f-main-list" name="main_list"' in text(shown)
    assert 'type="hidden" name="name" value="News"' in text(shown)


def test_step_two_errors_stay_on_the_page(web: FlaskClient) -> None:
    first = post(web, "/setups/new", {"name": "News", "object_type": "Contact"})
    query = {k: v[0] for k, v in parse_qs(urlsplit(first.headers["Location"]).query).items()}
    answer = post(web, "/setups/new/constant-contact", {**query, "main_list": ""})
    assert answer.status_code == 422
    assert error_of(text(answer), "main_list")


# --------------------------------------------------------------------------- later steps


def test_field_mapping_pickers_come_from_both_vendors(
    app: Flask, web: FlaskClient, conns: dict[str, int]
) -> None:
    setup_id = new_setup(
        web,
        salesforce_connection=str(conns["salesforce"]),
        constant_contact_connection=str(conns["constantcontact"]),
    )
    made = post(web, f"/setups/{setup_id}/edit/fields/custom-field", {"label": "Favorite Color"})
    assert made.status_code == 303
    page = text(web.get(f"/setups/{setup_id}/edit/fields"))
    assert "ready: map it as cf:Favorite_Color" in page
    assert '<option value="Department">' in page  # the Contact describe
    assert '<option value="job_title">' in page  # Constant Contact's own fields
    assert '<option value="cf:Favorite_Color">' in page
    assert 'name="field_map[0].sf_field"' in page and 'list="sf-fields"' in page

    bad = post(
        web,
        f"/setups/{setup_id}/edit/fields",
        {"field_map[0].sf_field": "Department", "field_map[0].cc_field": "nope"},
    )
    assert bad.status_code == 422
    assert "is not a Constant Contact contact field" in error_of(text(bad), "field_map[0].cc_field")

    good = post(
        web,
        f"/setups/{setup_id}/edit/fields",
        {
            "field_map[0].sf_field": "Department",
            "field_map[0].cc_field": "cf:Favorite_Color",
            "field_map[0].direction": "both",
            "field_map[1].sf_field": "",
            "field_map[1].cc_field": "",
            "field_map[2].sf_field": "Title",
            "field_map[2].cc_field": "job_title",
        },
    )
    assert good.status_code == 303
    assert good.headers["Location"].endswith(f"/setups/{setup_id}/edit/segments")
    assert options_of(app, setup_id)["field_map"] == [
        {"sf_field": "Department", "cc_field": "cf:Favorite_Color", "direction": "both"},
        {"sf_field": "Title", "cc_field": "job_title", "direction": "sf_to_cc"},
    ]


def test_the_filter_builder_saves_groups_and_shows_errors_by_row(
    app: Flask, web: FlaskClient
) -> None:
    setup_id = new_setup(web)
    form = {
        "filter.match": "any",
        "filter_rows[0].field": "LeadSource",
        "filter_rows[0].op": "equals",
        "filter_rows[0].value": "Web",
        "filter_rows[0].group": "1",
        "filter_rows[1].field": "NumberOfEmployees",
        "filter_rows[1].op": "greater_or_equal",
        "filter_rows[1].value": "100",
        "filter_rows[1].group": "1",
        "filter_rows[2].field": "Region__c",
        "filter_rows[2].op": "in",
        "filter_rows[2].value": "EMEA, APAC",
        "filter_groups[1].match": "all",
        "checkbox_lists[0].field": "Newsletter__c",
        "checkbox_lists[0].list": "Newsletter",
    }
    saved = post(web, f"/setups/{setup_id}/edit/segments", form)
    assert saved.status_code == 303, text(saved)
    options = options_of(app, setup_id)
    assert options["filter"] == {
        "match": "any",
        "conditions": [
            {
                "match": "all",
                "conditions": [
                    {"field": "LeadSource", "op": "equals", "value": "Web"},
                    {"field": "NumberOfEmployees", "op": "greater_or_equal", "value": 100},
                ],
            },
            {"field": "Region__c", "op": "in", "value": ["EMEA", "APAC"]},
        ],
    }
    assert options["checkbox_lists"] == [{"field": "Newsletter__c", "list": "Newsletter"}]
    page = text(web.get(f"/setups/{setup_id}/edit/segments"))
    assert 'name="filter_rows[2].value" value="EMEA, APAC"' in page

    bad = post(web, f"/setups/{setup_id}/edit/segments", {**form, "filter_rows[2].value": ""})
    assert bad.status_code == 422
    assert "needs a non-empty list" in error_of(text(bad), "filter.conditions[1].value")

    cleared = post(web, f"/setups/{setup_id}/edit/segments", {"filter.match": "all"})
    assert cleared.status_code == 303
    assert options_of(app, setup_id)["filter"] is None
    assert options_of(app, setup_id)["checkbox_lists"] == []


def test_a_filter_nested_deeper_than_the_builder_is_edited_as_json(
    app: Flask, web: FlaskClient
) -> None:
    a = {"field": "LeadSource", "op": "equals", "value": "Web"}
    deep = {
        "match": "any",
        "conditions": [{"match": "all", "conditions": [a, {"conditions": [a, a]}]}, a],
    }
    setup_id = new_setup(web)
    with store_of(app).transaction() as session:
        row = setup_repo.get(session, setup_id)
        assert row is not None
        row.options = {**row.options, "filter": deep}
    page = text(web.get(f"/setups/{setup_id}/edit/segments"))
    assert 'name="filter_json"' in page and 'name="filter_rows[0].field"' not in page
    saved = post(web, f"/setups/{setup_id}/edit/segments", {"filter_json": json.dumps(deep)})
    assert saved.status_code == 303, text(saved)
    assert options_of(app, setup_id)["filter"]["conditions"][1] == a
    bad = post(web, f"/setups/{setup_id}/edit/segments", {"filter_json": "[1"})
    assert bad.status_code == 422
    assert error_of(text(bad), "filter")


def test_campaign_names_are_read_from_the_org(
    app: Flask, web: FlaskClient, conns: dict[str, int], sandboxes: dict[str, Flask]
) -> None:
    sandboxes["salesforce"].extensions["sf_sandbox"].store.insert_many(
        "Campaign", [{"Name": "Spring Gala", "IsActive": True}]
    )
    setup_id = new_setup(web, salesforce_connection=str(conns["salesforce"]))
    shown = post(
        web,
        f"/setups/{setup_id}/edit/segments",
        {"campaign_lists.source": "campaigns", "action": "refresh"},
    )
    assert shown.status_code == 200
    page = text(shown)
    assert 'name="campaign_lists.selected" value="Spring Gala"' in page
    saved = post(
        web,
        f"/setups/{setup_id}/edit/segments",
        {"campaign_lists.source": "campaigns", "campaign_lists.selected": "Spring Gala"},
    )
    assert saved.status_code == 303, text(saved)
    assert options_of(app, setup_id)["campaign_lists"]["selected"] == ["Spring Gala"]
    views = post(web, f"/setups/{setup_id}/edit/segments", {"campaign_lists.source": "list_views"})
    assert views.status_code == 422
    assert "Name the List Views" in error_of(text(views), "campaign_lists.selected")


def test_the_options_page_is_generated_from_the_schema(app: Flask, web: FlaskClient) -> None:
    setup_id = new_setup(web)
    page = text(web.get(f"/setups/{setup_id}/edit/options"))
    for name in ("unsubscribe_on_sf_opt_out", "campaign_results.window_days", "cc_source"):
        assert f'name="{name}"' in page
    assert "Email Opt Out in Salesforce unsubscribes in CC" in page  # the help text
    assert 'name="sync_to_cc" value="1" checked' in page  # defaults shown
    assert 'name="schedule.at"' not in page  # its own step
    form = {
        "sync_to_cc": "1",
        "unsubscribe_on_sf_opt_out": "1",
        "cc_source": "lists",
        "cc_source.lists": "Alpha\nBeta",
        "campaign_response_mode": "campaign",
        "campaign_selection": "named",
        "campaign_selection.names": "March Appeal",
        "campaign_results.window_days": "30",
        "campaign_results.max_cc_calls": "500",
        "campaign_results.every_hours": "12",
        "new_record_object_type": "",
    }
    saved = post(web, f"/setups/{setup_id}/edit/options", form)
    assert saved.status_code == 303, text(saved)
    options = options_of(app, setup_id)
    assert options["unsubscribe_on_sf_opt_out"] is True
    assert options["sync_to_sf"] is False  # an unticked box
    assert options["cc_source"] == {"lists": ["Alpha", "Beta"]}
    assert options["campaign_selection"] == ["March Appeal"]
    assert options["campaign_results"] == {
        "window_days": 30,
        "max_cc_calls": 500,
        "every_hours": 12,
    }
    bad = post(
        web, f"/setups/{setup_id}/edit/options", {**form, "campaign_results.window_days": "0"}
    )
    assert bad.status_code == 422
    assert error_of(text(bad), "campaign_results.window_days")


def test_the_schedule_step(app: Flask, web: FlaskClient) -> None:
    setup_id = new_setup(web)
    page = text(web.get(f"/setups/{setup_id}/edit/schedule"))
    assert 'type="time" id="f-schedule-at" name="schedule.at" value="02:00"' in page
    assert '<option value="Europe/Paris">' in page
    form = {
        "schedule.full_sync": "weekly",
        "schedule.at": "03:30",
        "schedule.timezone": "Europe/Paris",
        "schedule.weekday": "",
        "schedule.poll_minutes": "30",
        "schedule.catch_up_minutes": "0",
    }
    bad = post(web, f"/setups/{setup_id}/edit/schedule", form)
    assert bad.status_code == 422
    assert "needs a weekday" in error_of(text(bad), "schedule.weekday")
    saved = post(web, f"/setups/{setup_id}/edit/schedule", {**form, "schedule.weekday": "sunday"})
    assert saved.status_code == 303
    assert options_of(app, setup_id)["schedule"] == {
        "full_sync": "weekly",
        "at": "03:30",
        "timezone": "Europe/Paris",
        "weekday": "sunday",
        "poll_minutes": 30,
        "catch_up_minutes": 0,
    }


def test_the_changes_step_and_a_new_secret(app: Flask, web: FlaskClient) -> None:
    setup_id = new_setup(web)
    page = text(web.get(f"/setups/{setup_id}/edit/changes"))
    assert f"/webhooks/salesforce/{setup_id}" in page
    assert 'name="salesforce_changes" value="webhook" checked' in page
    none = post(web, f"/setups/{setup_id}/edit/changes", {"webhook.auth": "hmac"})
    assert none.status_code == 422
    assert error_of(text(none), "salesforce_changes")
    saved = post(
        web,
        f"/setups/{setup_id}/edit/changes",
        {
            "salesforce_changes": ["webhook", "outbound"],
            "webhook.auth": "hmac",
            "webhook.platform_event.name": "Contact_Sync__e",
        },
    )
    assert saved.status_code == 303
    assert saved.headers["Location"].endswith(f"/setups/{setup_id}/edit/finish")
    options = options_of(app, setup_id)
    assert options["salesforce_changes"] == ["webhook", "outbound"]
    assert options["webhook"] == {
        "auth": "hmac",
        "platform_event": {"name": "Contact_Sync__e", "id_field": "Record_Id__c"},
    }
    with store_of(app).transaction() as session:
        row = setup_repo.get(session, setup_id)
        assert row is not None
        before = setup_repo.webhook_secret(session, row)
    rotated = text(post(web, f"/setups/{setup_id}/edit/changes/secret", {}))
    with store_of(app).transaction() as session:
        row = setup_repo.get(session, setup_id)
        assert row is not None
        after = setup_repo.webhook_secret(session, row)
    assert after != before and f'id="webhook-secret">{after}<' in rotated
    cleared = post(
        web,
        f"/setups/{setup_id}/edit/changes",
        {"salesforce_changes": "pubsub", "webhook.auth": "shared_secret"},
    )
    assert cleared.status_code == 303
    assert options_of(app, setup_id)["webhook"]["platform_event"] is None


def test_create_edit_finish_and_delete(app: Flask, web: FlaskClient, conns: dict[str, int]) -> None:
    setup_id = new_setup(
        web,
        salesforce_connection=str(conns["salesforce"]),
        constant_contact_connection=str(conns["constantcontact"]),
    )
    setup_page = text(web.get(f"/setups/{setup_id}"))
    assert f'href="/setups/{setup_id}/edit/salesforce">Edit</a>' in setup_page
    assert "New setup" in text(web.get("/"))
    step1 = text(web.get(f"/setups/{setup_id}/edit/salesforce"))
    assert "cannot change once a setup exists" in step1 and 'name="object_type"' not in step1
    renamed = post(
        web,
        f"/setups/{setup_id}/edit/salesforce",
        {"name": "Renamed", "salesforce_connection": str(conns["salesforce"])},
    )
    assert renamed.status_code == 303
    assert renamed.headers["Location"].endswith(f"/setups/{setup_id}/edit/constant-contact")
    assert "Renamed" in text(web.get("/"))
    finish = text(web.get(f"/setups/{setup_id}/edit/finish"))
    assert "Finish and start syncing" in finish
    done = post(web, f"/setups/{setup_id}/edit/finish", {}, follow_redirects=True)
    assert "The setup is running" in text(done) and ">Sync Now</button>" in text(done)
    with store_of(app).transaction() as session:
        row = setup_repo.get(session, setup_id)
        assert row is not None and row.pause_reason is None
    confirm = text(web.get(f"/setups/{setup_id}/delete"))
    assert "Yes, delete this setup" in confirm and "cannot be undone" in confirm
    gone = post(web, f"/setups/{setup_id}/delete", {}, follow_redirects=True)
    assert "Setup “Renamed” deleted" in text(gone)
    with store_of(app).transaction() as session:
        assert setup_repo.get(session, setup_id) is None
    assert web.get(f"/setups/{setup_id}/edit/fields").status_code == 404
    assert post(web, f"/setups/{setup_id}/delete", {}).status_code == 303


def test_an_unknown_step_is_a_404(web: FlaskClient) -> None:
    setup_id = new_setup(web)
    assert web.get(f"/setups/{setup_id}/edit/nope").status_code == 404


WIZARD_POSTS = (
    "/setups/new",
    "/setups/new/constant-contact",
    "/setups/1/edit/fields",
    "/setups/1/edit/fields/custom-field",
    "/setups/1/edit/changes/secret",
    "/setups/1/edit/finish",
    "/setups/1/delete",
)


@pytest.mark.parametrize("path", WIZARD_POSTS)
def test_wizard_posts_need_the_csrf_token(web: FlaskClient, path: str) -> None:
    setup_id = new_setup(web)
    answer = web.post(path.replace("/1/", f"/{setup_id}/"), data={"name": "x", "csrf_token": "f"})
    assert answer.status_code == 400
    assert "security token is missing or no longer valid" in text(answer)
    with web.application.extensions["middleware"]["store"].transaction() as session:
        assert setup_repo.get(session, setup_id) is not None


# --------------------------------------------------------------------------- vendor failures


def _revoke(app: Flask, connection_id: int) -> None:
    with store_of(app).transaction() as session:
        current = connection_repo.tokens(session, connection_id)
        connection_repo.save_tokens(
            session,
            connection_id,
            expected_version=current.version,
            access_token="revoked-access",
            refresh_token="revoked-refresh",
            expires_at=current.expires_at,
        )


def test_vendors_that_refuse_are_a_message_not_a_500(
    app: Flask, web: FlaskClient, conns: dict[str, int]
) -> None:
    setup_id = new_setup(
        web,
        salesforce_connection=str(conns["salesforce"]),
        constant_contact_connection=str(conns["constantcontact"]),
    )
    for conn_id in conns.values():
        _revoke(app, conn_id)
    answer = web.get(f"/setups/{setup_id}/edit/fields")
    assert answer.status_code == 200
    page = text(answer)
    assert "needs to be connected again" in page
    assert "revoked-" not in page
    lists = web.get(f"/setups/{setup_id}/edit/constant-contact")
    assert lists.status_code == 200
    assert 'name="main_list"' in text(lists)  # typed when the lists cannot be read
    made = post(
        web,
        f"/setups/{setup_id}/edit/fields/custom-field",
        {"label": "Color"},
        follow_redirects=True,
    )
    assert made.status_code == 200 and "needs to be connected again" in text(made)


def test_catalog_refuses_connections_of_the_other_vendor_and_unknown_objects(
    app: Flask, conns: dict[str, int]
) -> None:
    handles = app.extensions["middleware"]
    args = (handles["settings"], handles["store"], handles["redis"])
    with pytest.raises(Invalid) as wrong_vendor:
        catalog.cc_lists(*args, conns["salesforce"])
    assert wrong_vendor.value.errors == {
        "connection": [f"Connection {conns['salesforce']} is not a Constant Contact one."]
    }
    with pytest.raises(Invalid) as unknown:
        catalog.salesforce_fields(*args, conns["salesforce"], "Opportunity")
    assert "object_type" in (unknown.value.errors or {})
    fields = catalog.salesforce_fields(*args, conns["salesforce"], "Lead", app.config)
    assert {"name": "LeadSource", "label": "Lead Source", "type": "picklist", "custom": False} in (
        fields
    )


# --------------------------------------------------------------------------- markup


class _Controls(HTMLParser):
    """Ids, label targets and the form controls a page has."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.labelled: set[str] = set()
        self.controls: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(str(found["id"]))
        if tag == "label" and found.get("for"):
            self.labelled.add(str(found["for"]))
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.controls.append(found)


def test_every_control_has_a_label_and_ids_are_unique(
    web: FlaskClient, conns: dict[str, int]
) -> None:
    setup_id = new_setup(
        web,
        salesforce_connection=str(conns["salesforce"]),
        constant_contact_connection=str(conns["constantcontact"]),
    )
    paths = ["/setups/new", f"/setups/{setup_id}/edit/finish", f"/setups/{setup_id}/delete"]
    paths += [f"/setups/{setup_id}/edit/{step}" for step in STEP_SLUGS]
    for path in paths:
        page = _Controls()
        page.feed(text(web.get(path)))
        assert len(page.ids) == len(set(page.ids)), (path, sorted(page.ids))
        for control in page.controls:
            assert control.get("id") in page.labelled, (path, control)


STEP_SLUGS = (
    "salesforce",
    "constant-contact",
    "fields",
    "segments",
    "options",
    "schedule",
    "changes",
)
