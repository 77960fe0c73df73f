"""A setup's filter is checked against the org when it is saved: the admin API, the Salesforce
sandbox mounted in-process (connected through the real OAuth flow), and the org unreachable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from middleware.store import connections as connection_repo
from sandbox.adapter import mount
from sandbox.salesforce import create_app as create_sf

SF_BASE = "https://sf.sandbox.test"
AUTH = {"Authorization": "Bearer test-admin-token"}
UNCHECKED = "could not be checked against the Salesforce org"

WEB = {"field": "LeadSource", "op": "equals", "value": "Web"}
REGION = {"field": "Region__c", "op": "in", "value": ["EMEA", "APAC"]}
BIG = {"field": "NumberOfEmployees", "op": "greater_or_equal", "value": 100}
RECENT = {"field": "CreatedDate", "op": "greater_than", "value": "2026-01-01"}


@pytest.fixture
def sf() -> Iterator[Flask]:
    org = create_sf(
        {
            "sleep": lambda _s: None,
            "CUSTOM_FIELDS": {"Lead": [{"name": "acme__Region__c", "type": "string"}]},
        }
    )
    yield org
    events = org.extensions["sf_sandbox"].events
    if hasattr(events, "close"):
        events.close(timeout=1)


@pytest.fixture
def http(sf: Flask) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    mount(session, SF_BASE, sf)
    return session


@pytest.fixture
def app(config: dict[str, Any], http: requests.Session) -> Iterator[Flask]:
    config.update(
        SALESFORCE_LOGIN_URL=SF_BASE,
        SALESFORCE_CLIENT_ID="sandbox-client-id",
        SALESFORCE_CLIENT_SECRET="sandbox-client-secret",
        VENDOR_SESSION=lambda _vendor: http,
    )
    application = create_app(config)
    yield application
    application.extensions["middleware"]["store"].dispose()


@pytest.fixture
def sf_connection(client: FlaskClient, http: requests.Session) -> int:
    """A Salesforce connection made through the sandbox's OAuth consent, as an operator does."""
    flow = client.post(
        "/admin/api/connections/start", json={"vendor": "salesforce"}, headers=AUTH
    ).json
    start = urlsplit(flow["start_url"])
    opened = client.get(f"{start.path}?{start.query}")
    back = urlsplit(http.get(opened.headers["Location"], allow_redirects=False).headers["Location"])
    done = client.get(f"{back.path}?{back.query}", headers={"Accept": "application/json"})
    assert done.status_code == 201, done.get_data(as_text=True)
    return int(done.json["connection"]["id"])


def create(client: FlaskClient, conn: int | None, flt: Any, **options: Any) -> Any:
    body = {"name": "Segment", "object_type": "Lead", "main_list": "Main", "filter": flt}
    return client.post(
        "/admin/api/setups",
        json={**body, "salesforce_connection": conn, **options},
        headers=AUTH,
    )


def test_a_filter_that_fits_the_org_is_saved_without_a_warning(
    client: FlaskClient, sf_connection: int
) -> None:
    # (LeadSource = Web AND Region in (EMEA, APAC)) OR (employees >= 100 AND created after 2026)
    flt = {
        "match": "any",
        "conditions": [
            {"conditions": [WEB, REGION]},
            {"conditions": [BIG, RECENT]},
        ],
    }
    created = create(client, sf_connection, flt, namespace_prefix="acme")
    assert created.status_code == 201, created.json
    assert not [w for w in created.json["warnings"] if UNCHECKED in w]
    assert created.json["options"]["filter"]["conditions"][1]["conditions"][1] == RECENT


@pytest.mark.parametrize(
    ("condition", "path", "fragment"),
    [
        pytest.param(
            {"field": "Region__c", "op": "equals", "value": "EMEA"},
            "filter.conditions[0].conditions[1].field",
            "`Region__c equals 'EMEA'`: `Region__c`: Lead has no field `Region__c`",
            id="missing-field-without-the-namespace",
        ),
        pytest.param(
            {"field": "LeadSource", "op": "is_true"},
            "filter.conditions[0].conditions[1].op",
            "`is_true` is for checkbox fields, not picklist",
            id="operator-not-for-the-type",
        ),
        pytest.param(
            {"field": "ConvertedDate", "op": "less_than", "value": "31/01/2026"},
            "filter.conditions[0].conditions[1].value",
            "YYYY-MM-DD",
            id="date-not-iso",
        ),
        pytest.param(
            {"field": "CreatedDate", "op": "greater_than", "value": "last week"},
            "filter.conditions[0].conditions[1].value",
            "ISO datetime",
            id="datetime-not-iso",
        ),
        pytest.param(
            {"field": "Email", "op": "greater_than", "value": 3},
            None,
            None,
            id="text-orders-alphabetically",
        ),
    ],
)
def test_a_filter_the_org_cannot_run_is_refused_with_422(
    client: FlaskClient, sf_connection: int, condition: Any, path: str | None, fragment: str
) -> None:
    flt = {"match": "any", "conditions": [{"conditions": [WEB, condition]}, BIG]}
    answer = create(client, sf_connection, flt)
    if path is None:
        assert answer.status_code == 201, answer.json
        return
    assert answer.status_code == 422, answer.json
    assert answer.mimetype == "application/problem+json"
    assert list(answer.json["errors"]) == [path]
    assert fragment in answer.json["errors"][path][0]
    assert client.get("/admin/api/setups", headers=AUTH).json["items"] == []


def test_a_patch_is_checked_when_it_touches_the_filter_or_what_it_reads(
    client: FlaskClient, sf_connection: int
) -> None:
    created = create(client, sf_connection, {"conditions": [REGION]}, namespace_prefix="acme")
    assert created.status_code == 201, created.json
    url = f"/admin/api/setups/{created.json['id']}"
    # Without the prefix, Region__c is not a Lead field.
    dropped = client.patch(url, json={"namespace_prefix": None}, headers=AUTH)
    assert dropped.status_code == 422
    assert "filter.conditions[0].field" in dropped.json["errors"]
    bad = client.patch(
        url,
        json={
            "filter": {
                "conditions": [WEB, RECENT, BIG, REGION, {"field": "Nope__c", "op": "is_blank"}]
            }
        },
        headers=AUTH,
    )
    assert bad.status_code == 422
    assert list(bad.json["errors"]) == ["filter.conditions[4].field"]
    assert "`Nope__c is_blank`" in bad.json["errors"]["filter.conditions[4].field"][0]
    fine = client.patch(
        url, json={"filter": {"match": "any", "conditions": [WEB, BIG]}}, headers=AUTH
    )
    assert fine.status_code == 200, fine.json
    assert fine.json["options"]["filter"]["match"] == "any"


def test_an_unconnected_org_saves_with_a_warning(
    app: Flask, client: FlaskClient, sf_connection: int
) -> None:
    unknown_field = {"conditions": [{"field": "Nope__c", "op": "is_blank"}]}
    no_connection = create(client, None, unknown_field)
    assert no_connection.status_code == 201, no_connection.json
    assert any(
        UNCHECKED in w and "no salesforce_connection" in w for w in no_connection.json["warnings"]
    )

    with app.extensions["middleware"]["store"].transaction() as session:
        connection_repo.mark_status(session, sf_connection, "needs_reauth", "revoked")
    reauth = create(client, sf_connection, unknown_field, name="Reauth")
    assert reauth.status_code == 201, reauth.json
    assert any(UNCHECKED in w and "needs_reauth" in w for w in reauth.json["warnings"])


class Unreachable(requests.adapters.BaseAdapter):
    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        raise requests.ConnectionError(f"cannot reach {request.url}")

    def close(self) -> None:
        pass


def test_an_unreachable_org_saves_with_a_warning(
    app: Flask, client: FlaskClient, sf_connection: int
) -> None:
    down = requests.Session()
    down.mount("https://", Unreachable())
    app.config["VENDOR_SESSION"] = lambda _vendor: down
    created = create(
        client, sf_connection, {"conditions": [{"field": "Nope__c", "op": "is_blank"}]}
    )
    assert created.status_code == 201, created.json
    [warning] = [w for w in created.json["warnings"] if UNCHECKED in w]
    assert "Retryable" in warning and "saved unchecked" in warning


@pytest.mark.parametrize(
    ("campaign_lists", "missing"),
    [
        pytest.param(
            {"source": "list_views", "selected": ["All Open Leads", "Spring Leads"]},
            "List View named 'Spring Leads'",
            id="list views",
        ),
        pytest.param(
            {"source": "campaigns", "selected": ["Summer Fair"]},
            "Campaign named 'Summer Fair'",
            id="campaigns",
        ),
    ],
)
def test_selected_campaigns_and_list_views_the_org_lacks_are_warnings_at_save(
    client: FlaskClient, sf_connection: int, campaign_lists: dict[str, Any], missing: str
) -> None:
    body = {
        "name": "Lists",
        "object_type": "Lead",
        "main_list": "Main",
        "salesforce_connection": sf_connection,
        "campaign_lists": campaign_lists,
    }
    made = client.post("/admin/api/setups", json=body, headers=AUTH)
    assert made.status_code == 201, made.json
    warnings = made.json["warnings"]
    assert [w for w in warnings if "campaign_lists" in w] == [
        f"campaign_lists: no {missing} in Salesforce"
    ], warnings
    # A patch naming only views the org has says nothing more.
    fixed = {**campaign_lists, "selected": campaign_lists["selected"][:1]}
    if campaign_lists["source"] == "campaigns":
        fixed = None
    patched = client.patch(
        f"/admin/api/setups/{made.json['id']}", json={"campaign_lists": fixed}, headers=AUTH
    )
    assert patched.status_code == 200, patched.json
    assert not [w for w in patched.json["warnings"] if "campaign_lists" in w], patched.json


def test_mapped_salesforce_fields_the_org_lacks_are_refused_with_422(
    client: FlaskClient, sf_connection: int
) -> None:
    # Every read SELECTs the mapped fields: one the object lacks would fail every run.
    rows = {
        "field_map": [
            {"sf_field": "Title", "cc_field": "job_title"},
            {"sf_field": "Region__c", "cc_field": "cf:Region"},
            {"sf_field": "Owner.Name", "cc_field": "cf:Owner"},
        ],
        "other_email_fields": [{"sf_field": "Work_Email__c", "cc_field": "cf:Work_Email"}],
    }
    answer = create(client, sf_connection, None, namespace_prefix="acme", **rows)
    assert answer.status_code == 422, answer.json
    assert list(answer.json["errors"]) == ["other_email_fields[0].sf_field"]
    assert (
        "Lead has no field `acme__Work_Email__c`"
        in (answer.json["errors"]["other_email_fields[0].sf_field"][0])
    )
    answer = create(client, sf_connection, None, **rows)  # Region__c without its namespace
    assert sorted(answer.json["errors"]) == [
        "field_map[1].sf_field",
        "other_email_fields[0].sf_field",
    ]
    del rows["other_email_fields"]
    created = create(client, sf_connection, None, namespace_prefix="acme", **rows)
    assert created.status_code == 201, created.json
    url = f"/admin/api/setups/{created.json['id']}"
    typo = {"field_map": [{"sf_field": "Titel", "cc_field": "job_title"}]}
    patched = client.patch(url, json=typo, headers=AUTH)
    assert patched.status_code == 422, patched.json
    assert "Lead has no field `Titel`" in patched.json["errors"]["field_map[0].sf_field"][0]
