"""simple-salesforce 1.12.10, unmodified, against the sandbox: the client the product uses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sandbox.common import Clock
from sandbox.salesforce.org import SalesforceSandbox
from tests.sandbox.salesforce.conftest import MISSING_CONTACT_ID, REAL_STORE


def seed(sandbox: SalesforceSandbox, n: int) -> None:
    sandbox.store.insert_many(
        "Contact", ({"LastName": f"P{i:05d}", "Email": f"p{i}@example.org"} for i in range(n))
    )


def test_query_and_query_more(sf_client: Salesforce, sf_sandbox: SalesforceSandbox) -> None:
    seed(sf_sandbox, 2300)
    first = sf_client.query("SELECT Id, Email FROM Contact")
    assert first["totalSize"] == 2300 and first["done"] is False
    assert first["records"][0]["attributes"]["url"].startswith("/services/data/v64.0/")
    second = sf_client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["done"] is True and len(second["records"]) == 300
    # The bare-locator form simple-salesforce also supports.
    again = sf_client.query("SELECT Id FROM Contact")
    locator = again["nextRecordsUrl"].rsplit("/", 1)[1]
    assert len(sf_client.query_more(locator)["records"]) == 300
    assert sf_client.api_usage["api-usage"].used == sf_sandbox.api_calls


def test_query_all_iter_streams_every_page(
    sf_client: Salesforce, sf_sandbox: SalesforceSandbox
) -> None:
    seed(sf_sandbox, 4100)
    ids = [r["Id"] for r in sf_client.query_all_iter("SELECT Id FROM Contact")]
    assert len(ids) == len(set(ids)) == 4100
    assert sf_sandbox.usage.calls("query") == 3


def test_query_all_includes_deleted(sf_client: Salesforce, sf_sandbox: SalesforceSandbox) -> None:
    gone = sf_sandbox.store.create("Contact", {"LastName": "Gone"})
    sf_sandbox.store.delete("Contact", gone)
    assert sf_client.query("SELECT Id FROM Contact")["totalSize"] == 0
    assert sf_client.query_all("SELECT Id FROM Contact", include_deleted=True)["totalSize"] == 1


def test_contact_crud(sf_client: Salesforce) -> None:
    created = sf_client.Contact.create({"LastName": "Ng", "Email": "ng@example.org"})
    assert created["success"] is True
    record_id = created["id"]
    assert sf_client.Contact.get(record_id)["Email"] == "ng@example.org"
    assert sf_client.Contact.update(record_id, {"HasOptedOutOfEmail": True}) == 204
    assert sf_client.Contact.get(record_id)["HasOptedOutOfEmail"] is True
    assert sf_client.Contact.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf_client.Contact.get(record_id)
    assert err.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_contact_upsert(sf_client: Salesforce, sf_sandbox: SalesforceSandbox) -> None:
    assert sf_client.Contact.upsert("Email/kim@example.org", {"LastName": "Kim"}) == 201
    assert sf_client.Contact.upsert("Email/kim@example.org", {"LastName": "Kim-Lee"}) == 200
    assert sf_client.Contact.get_by_custom_id("Email", "kim@example.org")["LastName"] == "Kim-Lee"
    sf_sandbox.store.create("Contact", {"LastName": "Twin", "Email": "kim@example.org"})
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf_client.Contact.upsert("Email/kim@example.org", {"LastName": "X"})
    with pytest.raises(SalesforceResourceNotFound):
        sf_client.Contact.get_by_custom_id("Email", "nobody@example.org")


def test_describe_and_limits(sf_client: Salesforce) -> None:
    assert "Contact" in {o["name"] for o in sf_client.describe()["sobjects"]}
    fields = {f["name"] for f in sf_client.Contact.describe()["fields"]}
    assert {"Id", "Email", "LastName"} <= fields
    assert sf_client.Contact.metadata()["objectDescribe"]["name"] == "Contact"
    limits = sf_client.limits()
    assert limits["DailyApiRequests"]["Max"] == 100000
    assert limits["DailyApiRequests"]["Remaining"] < 100000


@pytest.mark.skipif(not REAL_STORE, reason="needs sandbox/salesforce/store.py")
def test_updated_and_deleted(
    sf_client: Salesforce, sf_sandbox: SalesforceSandbox, sf_clock: Clock
) -> None:
    start = sf_clock.now() - timedelta(minutes=1)
    kept = sf_client.Contact.create({"LastName": "Kept"})["id"]
    gone = sf_client.Contact.create({"LastName": "Gone"})["id"]
    sf_client.Contact.delete(gone)
    end = sf_clock.advance(120)
    assert kept in sf_client.Contact.updated(start, end)["ids"]
    assert gone in [d["id"] for d in sf_client.Contact.deleted(start, end)["deletedRecords"]]


def test_collections_through_restful(sf_client: Salesforce, sf_sandbox: SalesforceSandbox) -> None:
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "LastName": "A", "Email": "a@example.org"},
            {"attributes": {"type": "Contact"}, "FirstName": "no last name"},
        ],
    }
    ok, bad = sf_client.restful("composite/sobjects", method="POST", json=body)
    assert ok["success"] is True
    assert bad["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf_sandbox.usage.calls("composite") == 1


def test_errors_map_to_the_library_exceptions(sf_client: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as malformed:
        sf_client.query("SELEKT Id FROM Contact")
    assert malformed.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceResourceNotFound):
        sf_client.Contact.get(MISSING_CONTACT_ID)


def test_expired_session_raises(sf_client: Salesforce, sf_clock: Clock) -> None:
    assert sf_client.limits()
    sf_clock.advance(7201)
    with pytest.raises(SalesforceExpiredSession):
        sf_client.query("SELECT Id FROM Contact")
    with pytest.raises(SalesforceExpiredSession):
        sf_client.Contact.get(MISSING_CONTACT_ID)


def test_daily_limit_is_a_refused_request(
    sf_client: Salesforce, sf_sandbox: SalesforceSandbox
) -> None:
    sf_sandbox.config["DAILY_API_LIMIT"] = 1
    sf_client.limits()
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf_client.limits()
    assert refused.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
