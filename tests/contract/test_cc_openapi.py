"""The contract harness itself: it must reject what breaks the spec and pass what keeps it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.contract.cc_openapi import patch_spec, spec, validate

BASE = "https://api.cc.email"
CONTACT_ID = "6d1b4a4e-3f6a-4d59-9a5b-4c1e0b7e2a10"


def prepared(method: str, path: str, body: Any = None, **kwargs: Any) -> requests.PreparedRequest:
    headers = {"Authorization": "Bearer t"}
    return requests.Request(method, BASE + path, json=body, headers=headers, **kwargs).prepare()


def response(status: int, body: Any, content_type: str = "application/json") -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp.headers["Content-Type"] = content_type
    return resp


def contact(**extra: Any) -> dict[str, Any]:
    return {
        "contact_id": CONTACT_ID,
        "email_address": {"address": "a@example.com", "permission_to_send": "implicit"},
        "create_source": "Account",
        "created_at": "2026-11-26T10:00:00.000Z",
        "updated_at": "2026-11-26T10:00:00.000Z",
        **extra,
    }


def test_valid_exchange_passes() -> None:
    req = prepared("GET", "/v3/contacts", params={"include": "custom_fields,list_memberships"})
    validate(req, response(200, {"contacts": [contact(list_memberships=[])]}))


def test_paths_outside_v3_are_skipped() -> None:
    validate(prepared("POST", "/_sandbox/seed", {"x": None}), response(418, None))
    validate(prepared("GET", "/oauth2/default/v1/authorize"), response(302, b""))


def test_unknown_v3_path_is_a_violation() -> None:
    with pytest.raises(AssertionError, match="no such operation"):
        validate(prepared("GET", "/v3/nope"), response(200, {}))


def test_undeclared_property_in_response_is_named() -> None:
    req = prepared("GET", f"/v3/contacts/{CONTACT_ID}")
    with pytest.raises(AssertionError, match=r"getContact.*\n.*favourite_colour"):
        validate(req, response(200, contact(favourite_colour="green")))


def test_null_is_a_violation() -> None:
    req = prepared("GET", f"/v3/contacts/{CONTACT_ID}")
    with pytest.raises(AssertionError, match="null at 'first_name'"):
        validate(req, response(200, contact(first_name=None)))


def test_bad_csv_include_value_in_request_is_a_violation() -> None:
    req = prepared("GET", "/v3/contacts", params={"include": "custom_fields,bogus"})
    with pytest.raises(AssertionError, match="request violates"):
        validate(req, response(200, {"contacts": []}))


def test_missing_bearer_token_is_a_request_violation() -> None:
    req = requests.Request("GET", BASE + "/v3/contacts").prepare()
    with pytest.raises(AssertionError, match="request violates"):
        validate(req, response(200, {"contacts": []}))


def test_request_body_typo_is_caught() -> None:
    body = {"email_address": {"address": "a@example.com", "permision_to_send": "x"}}
    req = prepared("POST", "/v3/contacts", {**body, "create_source": "Account"})
    with pytest.raises(AssertionError, match="createContact"):
        validate(req, response(201, contact()))


def test_error_envelopes() -> None:
    req = prepared("GET", "/v3/contacts")
    validate(req, response(401, {"error_key": "unauthorized", "error_message": "Unauthorized"}))
    validate(req, response(429, {"error_key": "throttled", "error_message": "Too Many Requests"}))
    validate(req, response(400, [{"error_key": "k", "error_message": "m"}]))
    with pytest.raises(AssertionError, match="must be one"):
        validate(req, response(401, [{"error_key": "unauthorized", "error_message": "x"}]))
    with pytest.raises(AssertionError, match="must be an array"):
        validate(req, response(400, {"error_key": "k", "error_message": "m"}))
    with pytest.raises(AssertionError, match="not declared"):
        validate(req, response(409, [{"error_key": "k", "error_message": "m"}]))


def test_csv_export_checks_content_type_only() -> None:
    req = prepared("GET", f"/v3/contact_exports/{CONTACT_ID}")
    validate(req, response(200, b"email_address\na@example.com\n", "text/csv"))
    with pytest.raises(AssertionError, match="content type"):
        validate(req, response(200, {"x": 1}))


def test_import_accepts_cf_keys_and_remove_memberships_accepts_ids() -> None:
    req = prepared(
        "POST",
        "/v3/activities/contacts_json_import",
        {
            "import_data": [{"email": "a@example.com", "cf:colour": "green"}],
            "list_ids": [CONTACT_ID],
        },
    )
    validate(req)
    req = prepared(
        "POST",
        "/v3/activities/remove_list_memberships",
        {"source": {"contact_ids": [CONTACT_ID]}, "list_ids": [CONTACT_ID]},
    )
    validate(req)


def test_patches_do_not_touch_the_raw_spec() -> None:
    raw = {"servers": [{"url": "x"}], "paths": {}, "components": spec()["components"]}
    before = json.dumps(raw, sort_keys=True)
    patch_spec(raw)
    assert json.dumps(raw, sort_keys=True) == before


@pytest.mark.parametrize(
    ("field", "value"), [("created_at", "yesterday"), ("contact_id", "not-a-uuid")]
)
def test_formats_are_checked(field: str, value: str) -> None:
    req = prepared("GET", f"/v3/contacts/{CONTACT_ID}")
    with pytest.raises(AssertionError, match=field):
        validate(req, response(200, contact(**{field: value})))
