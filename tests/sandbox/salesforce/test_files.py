"""Files: a ContentVersion makes its ContentDocument and shares, VersionData reads as a path and
downloads as bytes, ContentDocumentLink's query restriction, duplicate and owner-share rules."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from sandbox.salesforce.org import SalesforceSandbox
from sandbox.salesforce.soql import LINK_RESTRICTION
from sandbox.salesforce.store import ChangeRecord, OrgStore, SalesforceError
from tests.sandbox.salesforce.conftest import API, SF_BASE

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BODY = b"email,opened\nng@example.org,true\n"
USER = "005SB0000000001AAA"
OTHER_USER = "005SB0000000002YAA"


class FixedClock:
    def now(self) -> datetime:
        return NOW


@pytest.fixture
def store() -> OrgStore:
    return OrgStore("standard", clock=FixedClock())


@pytest.fixture
def campaign(store: OrgStore) -> str:
    return store.create("Campaign", {"Name": "Spring newsletter"})


def upload(store: OrgStore, **values: Any) -> str:
    body = {
        "Title": "Spring results",
        "PathOnClient": "results.csv",
        "VersionData": base64.b64encode(BODY).decode(),
        **values,
    }
    return store.create("ContentVersion", body)


def document_of(store: OrgStore, version: str) -> str:
    row = store.get("ContentVersion", version, ["ContentDocumentId"])
    assert row is not None
    return str(row["ContentDocumentId"])


def links(store: OrgStore, where: str) -> list[dict[str, Any]]:
    soql = f"SELECT LinkedEntityId, ShareType, Visibility FROM ContentDocumentLink WHERE {where}"
    return sorted(store.query(soql).rows, key=lambda r: r["ShareType"])


def error_of(fn: Any, *args: Any, **kwargs: Any) -> SalesforceError:
    with pytest.raises(SalesforceError) as caught:
        fn(*args, **kwargs)
    return caught.value


# ----------------------------------------------------------------------------- describe


def test_describe_lists_the_files_objects(store: OrgStore) -> None:
    listed = {o["name"]: o for o in store.describe_global()["sobjects"]}
    assert listed["ContentVersion"]["keyPrefix"] == "068"
    assert listed["ContentDocument"]["keyPrefix"] == "069"
    assert listed["ContentDocumentLink"]["keyPrefix"] == "06A"
    assert listed["ContentDocument"]["createable"] is False
    assert listed["ContentVersion"]["deletable"] is False
    version = {f["name"]: f for f in store.describe("ContentVersion")["fields"]}
    assert version["VersionData"]["type"] == "base64"
    assert version["VersionData"]["soapType"] == "xsd:base64Binary"
    assert version["VersionData"]["filterable"] is False
    assert version["PathOnClient"]["updateable"] is False
    assert version["ContentSize"]["createable"] is False
    link = {f["name"]: f for f in store.describe("ContentDocumentLink")["fields"]}
    assert set(link) == {
        "Id",
        "IsDeleted",
        "LinkedEntityId",
        "ContentDocumentId",
        "ShareType",
        "Visibility",
        "SystemModstamp",
    }
    assert [p["value"] for p in link["ShareType"]["picklistValues"]] == ["V", "C", "I"]
    assert "Campaign" in link["LinkedEntityId"]["referenceTo"]
    document = store.describe("ContentDocument")
    children = {(c["childSObject"], c["relationshipName"]) for c in document["childRelationships"]}
    assert children >= {
        ("ContentVersion", "ContentVersions"),
        ("ContentDocumentLink", "ContentDocumentLinks"),
    }


# ----------------------------------------------------------------------------- uploading


def test_a_version_makes_its_document_and_shares(store: OrgStore, campaign: str) -> None:
    version = upload(store, FirstPublishLocationId=campaign)
    row = store.get("ContentVersion", version)
    assert row is not None
    doc = row["ContentDocumentId"]
    assert doc.startswith("069") and version.startswith("068")
    assert (row["VersionNumber"], row["IsLatest"], row["ContentSize"]) == ("1", True, len(BODY))
    assert (row["FileExtension"], row["FileType"]) == ("csv", "CSV")
    assert row["Checksum"] == hashlib.md5(BODY, usedforsecurity=False).hexdigest()
    assert (
        row["VersionData"] == f"/services/data/v66.0/sobjects/ContentVersion/{version}/VersionData"
    )
    assert row["FirstPublishLocationId"] == campaign
    document = store.get(
        "ContentDocument",
        doc,
        ["Title", "FileExtension", "FileType", "ContentSize", "LatestPublishedVersionId"],
    )
    assert document == {
        "Title": "Spring results",
        "FileExtension": "csv",
        "FileType": "CSV",
        "ContentSize": len(BODY),
        "LatestPublishedVersionId": version,
    }
    assert links(store, f"ContentDocumentId = '{doc}'") == [
        {"LinkedEntityId": USER, "ShareType": "I", "Visibility": "AllUsers"},
        {"LinkedEntityId": campaign, "ShareType": "V", "Visibility": "AllUsers"},
    ]
    assert links(store, f"LinkedEntityId = '{campaign}'") == [
        {"LinkedEntityId": campaign, "ShareType": "V", "Visibility": "AllUsers"}
    ]


def test_without_a_location_the_file_stays_in_the_owners_library(store: OrgStore) -> None:
    version = upload(store, PathOnClient="notes")
    doc = document_of(store, version)
    assert store.get("ContentVersion", version, ["FirstPublishLocationId", "FileType"]) == {
        "FirstPublishLocationId": USER,
        "FileType": "UNKNOWN",
    }
    assert store.get("ContentDocument", doc, ["PublishStatus"]) == {"PublishStatus": "R"}
    assert links(store, f"ContentDocumentId = '{doc}'") == [
        {"LinkedEntityId": USER, "ShareType": "I", "Visibility": "AllUsers"}
    ]


def test_title_defaults_to_the_file_name(store: OrgStore) -> None:
    version = store.create(
        "ContentVersion", {"PathOnClient": "C:\\exports\\Spring.Report.PDF", "VersionData": "YQ=="}
    )
    assert store.get("ContentVersion", version, ["Title", "FileExtension", "FileType"]) == {
        "Title": "Spring.Report",
        "FileExtension": "pdf",
        "FileType": "PDF",
    }


@pytest.mark.parametrize(
    ("values", "code", "fields"),
    [
        ({"PathOnClient": "a.csv"}, "REQUIRED_FIELD_MISSING", ["VersionData"]),
        ({"VersionData": "YQ=="}, "REQUIRED_FIELD_MISSING", ["PathOnClient"]),
        ({"PathOnClient": "a.csv", "VersionData": "not base64!"}, "JSON_PARSER_ERROR", []),
        (
            {"PathOnClient": "a.csv", "VersionData": "YQ==", "FirstPublishLocationId": "x"},
            "MALFORMED_ID",
            ["FirstPublishLocationId"],
        ),
        (
            {
                "PathOnClient": "a.csv",
                "VersionData": "YQ==",
                "ContentDocumentId": "069SB0000099999YAA",
            },
            "INVALID_CROSS_REFERENCE_KEY",
            ["ContentDocumentId"],
        ),
    ],
)
def test_bad_uploads_are_refused(
    store: OrgStore, values: dict[str, Any], code: str, fields: list[str]
) -> None:
    error = error_of(store.create, "ContentVersion", values)
    assert (error.error_code, error.fields) == (code, fields)
    assert store.count("ContentVersion") == 0 and store.count("ContentDocument") == 0


def test_a_new_version_of_a_document(store: OrgStore) -> None:
    first = upload(store)
    doc = document_of(store, first)
    second = store.create(
        "ContentVersion",
        {
            "ContentDocumentId": doc,
            "Title": "Spring results (final)",
            "PathOnClient": "results.xlsx",
            "VersionData": "YWJj",
            "ReasonForChange": "final counts",
        },
    )
    assert store.get("ContentVersion", second, ["VersionNumber", "IsLatest"]) == {
        "VersionNumber": "2",
        "IsLatest": True,
    }
    assert store.get("ContentVersion", first, ["IsLatest"]) == {"IsLatest": False}
    assert store.get(
        "ContentDocument", doc, ["LatestPublishedVersionId", "Title", "FileType", "ContentSize"]
    ) == {
        "LatestPublishedVersionId": second,
        "Title": "Spring results (final)",
        "FileType": "EXCEL_X",
        "ContentSize": 3,
    }
    assert len(links(store, f"ContentDocumentId = '{doc}'")) == 1  # no new shares
    store.update("ContentVersion", second, {"Title": "Renamed"})
    assert store.get("ContentDocument", doc, ["Title"]) == {"Title": "Renamed"}
    refused = error_of(store.update, "ContentVersion", second, {"PathOnClient": "x.csv"})
    assert refused.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_the_bytes_are_kept_and_never_queried(store: OrgStore) -> None:
    version = upload(store)
    assert store.get_blob("ContentVersion", version, "VersionData") == BODY
    [row] = store.query(f"SELECT VersionData FROM ContentVersion WHERE Id = '{version}'").rows
    assert row == {
        "VersionData": f"/services/data/v66.0/sobjects/ContentVersion/{version}/VersionData"
    }
    error = error_of(store.query, "SELECT Id FROM ContentVersion WHERE VersionData = 'x'")
    assert error.error_code == "INVALID_FIELD"
    error = error_of(store.get_blob, "ContentVersion", version, "Title")
    assert (error.status, error.error_code) == (404, "NOT_FOUND")


# ----------------------------------------------------------------------------- links


def test_link_queries_need_an_id_filter(store: OrgStore, campaign: str) -> None:
    doc = document_of(store, upload(store, FirstPublishLocationId=campaign))
    for where in (
        "",
        " WHERE ShareType = 'V'",
        f" WHERE LinkedEntityId != '{campaign}'",
        f" WHERE LinkedEntityId = '{campaign}' OR ShareType = 'V'",
        f" WHERE LinkedEntityId NOT IN ('{campaign}')",
        " WHERE LinkedEntityId = null",
    ):
        error = error_of(store.query, f"SELECT Id FROM ContentDocumentLink{where}")
        assert (error.error_code, error.message) == ("MALFORMED_QUERY", LINK_RESTRICTION)
    for where in (
        f"ContentDocumentId = '{doc}'",
        f"LinkedEntityId IN ('{campaign}', '{OTHER_USER}') AND ShareType = 'V'",
        f"l.LinkedEntityId = '{campaign}'",
        "LinkedEntityId IN (SELECT Id FROM Campaign WHERE Name = 'Spring newsletter')",
    ):
        store.query(f"SELECT Id FROM ContentDocumentLink l WHERE {where}")
    inner = (
        "SELECT Id FROM ContentDocument WHERE Id IN (SELECT ContentDocumentId FROM"
        " ContentDocumentLink WHERE ShareType = 'V')"
    )
    assert error_of(store.query, inner).message == LINK_RESTRICTION
    found = store.query(
        "SELECT Title FROM ContentDocument WHERE Id IN (SELECT ContentDocumentId FROM"
        f" ContentDocumentLink WHERE LinkedEntityId = '{campaign}')"
    ).rows
    assert list(found) == [{"Title": "Spring results"}]


def test_linking_directly_and_refusing_duplicates(store: OrgStore, campaign: str) -> None:
    doc = document_of(store, upload(store))
    contact = store.create("Contact", {"LastName": "Ng"})
    link = store.create(
        "ContentDocumentLink",
        {"ContentDocumentId": doc, "LinkedEntityId": contact, "ShareType": "C"},
    )
    assert link.startswith("06A")
    assert store.get("ContentDocumentLink", link, ["ShareType", "Visibility"]) == {
        "ShareType": "C",
        "Visibility": "AllUsers",
    }
    again = error_of(
        store.create,
        "ContentDocumentLink",
        {"ContentDocumentId": doc, "LinkedEntityId": contact, "ShareType": "V"},
    )
    assert again.error_code == "DUPLICATE_VALUE"
    assert again.message == (
        f"Document with ID: {doc} is already linked with the entity with ID: {contact}"
    )
    missing = error_of(
        store.create, "ContentDocumentLink", {"ContentDocumentId": doc, "LinkedEntityId": campaign}
    )
    assert (missing.error_code, missing.fields) == ("REQUIRED_FIELD_MISSING", ["ShareType"])
    store.update("ContentDocumentLink", link, {"ShareType": "V"})
    moved = error_of(store.update, "ContentDocumentLink", link, {"LinkedEntityId": campaign})
    assert moved.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    store.delete("ContentDocumentLink", link)
    store.create(  # a removed share can be made again
        "ContentDocumentLink",
        {"ContentDocumentId": doc, "LinkedEntityId": contact, "ShareType": "V"},
    )
    store.create(  # another user's share is not checked against a user table
        "ContentDocumentLink",
        {"ContentDocumentId": doc, "LinkedEntityId": OTHER_USER, "ShareType": "V"},
    )


def test_the_owners_share_cannot_be_removed() -> None:
    store = OrgStore("standard", clock=FixedClock(), user_id=OTHER_USER)
    doc = document_of(store, upload(store))
    [owner] = store.query(
        f"SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId = '{OTHER_USER}'"
    ).rows
    error = error_of(store.delete, "ContentDocumentLink", owner["Id"])
    assert error.error_code == "FIELD_INTEGRITY_EXCEPTION"
    assert store.count("ContentDocumentLink") == 1
    assert store.get("ContentDocument", doc, ["Id"]) == {"Id": doc}


# ----------------------------------------------------------------------------- deleting


def test_documents_not_versions_are_deleted(store: OrgStore, campaign: str) -> None:
    version = upload(store, FirstPublishLocationId=campaign)
    doc = document_of(store, version)
    error = error_of(store.delete, "ContentVersion", version)
    assert error.error_code == "INVALID_TYPE_FOR_OPERATION"
    error = error_of(store.create, "ContentDocument", {})
    assert error.error_code == "INVALID_TYPE_FOR_OPERATION"
    store.delete("ContentDocument", doc)
    assert (store.count("ContentVersion"), store.count("ContentDocumentLink")) == (0, 0)
    deleted = error_of(store.get_blob, "ContentVersion", version, "VersionData")
    assert (deleted.status, deleted.error_code) == (404, "ENTITY_IS_DELETED")
    store.undelete("ContentDocument", doc)
    assert (store.count("ContentVersion"), store.count("ContentDocumentLink")) == (1, 2)


def test_a_records_shares_go_with_it(store: OrgStore, campaign: str) -> None:
    doc = document_of(store, upload(store, FirstPublishLocationId=campaign))
    store.delete("Campaign", campaign)
    assert links(store, f"ContentDocumentId = '{doc}'") == [
        {"LinkedEntityId": USER, "ShareType": "I", "Visibility": "AllUsers"}
    ]
    assert store.count("ContentDocument") == 1  # the file stays, with its owner
    store.undelete("Campaign", campaign)
    assert len(links(store, f"ContentDocumentId = '{doc}'")) == 2


def test_files_make_no_change_events(store: OrgStore, campaign: str) -> None:
    seen: list[ChangeRecord] = []
    store.subscribe(seen.extend)
    version = upload(store, FirstPublishLocationId=campaign)
    store.update("ContentVersion", version, {"Title": "Renamed"})
    store.delete("ContentDocument", document_of(store, version))
    assert seen == []


def test_insert_many_publishes_each_file(store: OrgStore, campaign: str) -> None:
    rows = [
        {"PathOnClient": f"r{i}.txt", "VersionData": "YQ==", "FirstPublishLocationId": campaign}
        for i in range(3)
    ]
    assert store.insert_many("ContentVersion", rows) == 3
    assert store.count("ContentDocument") == 3
    assert len(links(store, f"LinkedEntityId = '{campaign}'")) == 3


def test_snapshots_keep_the_bytes(store: OrgStore, tmp_path: Any) -> None:
    version = upload(store)
    path = str(tmp_path / "org.sqlite")
    store.snapshot(path)
    again = OrgStore("standard", clock=FixedClock(), path=path)
    assert again.get_blob("ContentVersion", version, "VersionData") == BODY


# ----------------------------------------------------------------------------- over HTTP


@pytest.fixture
def sf_config() -> dict[str, Any]:
    return {"EVENT_DELIVERY": "sync"}


def test_rest_upload_read_and_download(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    campaign = sf_sandbox.store.create("Campaign", {"Name": "Spring newsletter"})
    kept = len(sf_sandbox.events.replay())
    resp = sf_api.post(
        f"{API}/sobjects/ContentVersion",
        json={
            "Title": "Spring results",
            "PathOnClient": "results.csv",
            "VersionData": base64.b64encode(BODY).decode(),
            "FirstPublishLocationId": campaign,
        },
    )
    assert resp.status_code == 201, resp.text
    version = resp.json()["id"]
    old_api = f"{SF_BASE}/services/data/v58.0"
    record = sf_api.get(f"{old_api}/sobjects/ContentVersion/{version}").json()
    path = f"/services/data/v58.0/sobjects/ContentVersion/{version}/VersionData"
    assert record["VersionData"] == path  # in the version the client asked for
    soql = (
        "SELECT Id, ContentDocumentId, VersionData, ContentSize FROM ContentVersion"
        f" WHERE FirstPublishLocationId = '{campaign}'"
    )
    [row] = sf_api.get(f"{API}/query", params={"q": soql}).json()["records"]
    assert (
        row["VersionData"] == f"/services/data/v66.0/sobjects/ContentVersion/{version}/VersionData"
    )
    assert row["ContentSize"] == len(BODY)
    download = sf_api.get(f"{SF_BASE}{path}")
    assert download.status_code == 200
    assert download.content == BODY
    assert download.headers["Content-Type"] == "application/octetstream"
    short = sf_api.get(f"{API}/sobjects/ContentVersion/{version[:15]}/VersionData")
    assert short.content == BODY
    links_soql = (
        "SELECT LinkedEntityId, ShareType FROM ContentDocumentLink"
        f" WHERE ContentDocumentId = '{row['ContentDocumentId']}'"
    )
    shares = sf_api.get(f"{API}/query", params={"q": links_soql}).json()["records"]
    assert {(s["LinkedEntityId"], s["ShareType"]) for s in shares} == {
        (USER, "I"),
        (campaign, "V"),
    }
    assert len(sf_sandbox.events.replay()) == kept  # nothing announced to the webhook


def test_rest_download_errors(sf_api: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    version = upload(sf_sandbox.store)
    missing = sf_api.get(f"{API}/sobjects/ContentVersion/068SB0000099999YAA/VersionData")
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    sf_sandbox.store.delete("ContentDocument", document_of(sf_sandbox.store, version))
    gone = sf_api.get(f"{API}/sobjects/ContentVersion/{version}/VersionData")
    assert gone.status_code == 404 and gone.json()[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_rest_refuses_unfiltered_link_queries(sf_api: requests.Session) -> None:
    resp = sf_api.get(f"{API}/query", params={"q": "SELECT Id FROM ContentDocumentLink"})
    assert resp.status_code == 400
    assert resp.json() == [{"message": LINK_RESTRICTION, "errorCode": "MALFORMED_QUERY"}]


def test_collections_upload_and_link(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    campaign = sf_sandbox.store.create("Campaign", {"Name": "Spring newsletter"})
    contact = sf_sandbox.store.create("Contact", {"LastName": "Ng"})
    resp = sf_api.post(
        f"{API}/composite/sobjects",
        json={
            "records": [
                {
                    "attributes": {"type": "ContentVersion"},
                    "PathOnClient": "a.txt",
                    "VersionData": "YQ==",
                    "FirstPublishLocationId": campaign,
                },
                {
                    "attributes": {"type": "ContentVersion"},
                    "PathOnClient": "b.txt",
                    "VersionData": "Yg==",
                    "FirstPublishLocationId": campaign,
                },
            ]
        },
    )
    assert [r["success"] for r in resp.json()] == [True, True]
    doc = document_of(sf_sandbox.store, resp.json()[0]["id"])
    link = {"ContentDocumentId": doc, "LinkedEntityId": contact, "ShareType": "V"}
    resp = sf_api.post(
        f"{API}/composite/sobjects",
        json={
            "records": [
                {"attributes": {"type": "ContentDocumentLink"}, **link},
                {"attributes": {"type": "ContentDocumentLink"}, **link},
            ]
        },
    )
    first, second = resp.json()
    assert first["success"] is True and first["id"].startswith("06A")
    assert second["errors"][0]["statusCode"] == "DUPLICATE_VALUE"


def test_describe_over_rest(sf_api: requests.Session) -> None:
    listed = {o["name"]: o for o in sf_api.get(f"{API}/sobjects").json()["sobjects"]}
    assert {"Task", "ContentVersion", "ContentDocument", "ContentDocumentLink"} <= set(listed)
    described = sf_api.get(f"{API}/sobjects/ContentDocument/describe").json()
    assert described["createable"] is False and described["keyPrefix"] == "069"


def test_bulk_query_refuses_file_bodies(sf_api: requests.Session) -> None:
    resp = sf_api.post(
        f"{API}/jobs/query",
        json={"operation": "query", "query": "SELECT Id, VersionData FROM ContentVersion"},
    )
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "FUNCTIONALITY_NOT_ENABLED"
    ok = sf_api.post(
        f"{API}/jobs/query",
        json={"operation": "query", "query": "SELECT Id, Title FROM ContentVersion"},
    )
    assert ok.status_code == 200
