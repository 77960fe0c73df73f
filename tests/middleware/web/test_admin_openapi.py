"""Tests for the admin API's OpenAPI document: valid OpenAPI 3, and every route documented."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from middleware.web.admin import openapi_path

AUTH = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/admin/api/openapi.json", headers=AUTH)
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.")
    validate(document)


def test_every_admin_and_oauth_route_is_documented(app: Flask, document: dict[str, Any]) -> None:
    routes = [
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/admin/api", "/oauth"))
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    ]
    assert len(routes) >= 25
    missing = [
        f"{method} {rule}"
        for rule, method in routes
        if method.lower() not in document["paths"].get(openapi_path(rule), {})
    ]
    assert missing == []


def test_admin_routes_require_the_bearer_token_and_oauth_links_do_not(
    document: dict[str, Any],
) -> None:
    assert document["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected = [] if path.startswith("/oauth") else [{"adminToken": []}]
            assert operation["security"] == expected, f"{method} {path}"
            if expected:
                assert "401" in operation["responses"], f"{method} {path}"


def test_setups_are_documented_from_the_setup_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    post = document["paths"]["/admin/api/setups"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    setup = schemas[ref.rsplit("/", 1)[1]]
    assert set(setup["required"]) == {"name", "main_list"}
    assert "field_map" in setup["properties"]
    assert setup["properties"]["object_type"]["enum"] == ["Contact", "Lead", "Account"]
    assert "oneOf" in setup["properties"]["cc_source"]
    patch = document["paths"]["/admin/api/setups/{setup_id}"]["patch"]
    patch_ref = patch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "required" not in schemas[patch_ref.rsplit("/", 1)[1]]
    created = post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    assert "webhook_secret" in schemas[created.rsplit("/", 1)[1]]["properties"]
    shown = document["paths"]["/admin/api/setups/{setup_id}"]["get"]["responses"]["200"]
    shown_ref = shown["content"]["application/json"]["schema"]["$ref"]
    assert "webhook_secret" not in schemas[shown_ref.rsplit("/", 1)[1]]["properties"]


def test_errors_are_documented_as_problem_json(document: dict[str, Any]) -> None:
    post = document["paths"]["/admin/api/setups"]["post"]
    problem = post["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem["$ref"].endswith("/Problem")
    assert "errors" in document["components"]["schemas"]["Problem"]["properties"]


def test_query_parameters_come_from_the_query_schemas(document: dict[str, Any]) -> None:
    errors = document["paths"]["/admin/api/setups/{setup_id}/errors"]["get"]
    names = {p["name"]: p for p in errors["parameters"]}
    assert set(names) == {
        "setup_id",
        "status",
        "code",
        "direction",
        "search",
        "limit",
        "offset",
    }
    assert names["direction"]["schema"]["enum"] == ["sf_to_cc", "cc_to_sf"]
    assert names["setup_id"]["in"] == "path"
    assert names["status"]["schema"]["enum"] == ["open", "retrying", "resolved", "all"]


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ("/admin/api/setups/<int:setup_id>", "/admin/api/setups/{setup_id}"),
        ("/oauth/<vendor>/start", "/oauth/{vendor}/start"),
        ("/admin/api/queue", "/admin/api/queue"),
    ],
)
def test_flask_rules_become_openapi_paths(rule: str, path: str) -> None:
    assert openapi_path(rule) == path
    assert not re.search(r"[<>]", openapi_path(rule))


def test_the_poll_route_is_documented(document: dict[str, Any]) -> None:
    poll = document["paths"]["/admin/api/setups/{setup_id}/poll"]["post"]
    assert poll["operationId"] == "poll_now_view"
    assert set(poll["responses"]) == {"202", "401", "404", "409", "503"}
    started = poll["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
    assert started.endswith("/JobStarted")
    assert "sync_unsubscribes_to_sf" in poll["description"]


def test_every_status_a_route_can_answer_is_documented(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            where = f"{method} {path}"
            if "requestBody" in operation:
                assert {"400", "413"} <= statuses, where
            if any(p["in"] == "query" for p in operation.get("parameters", [])):
                assert "400" in statuses, where
            if any(
                p["in"] == "path" and p["name"] != "vendor" for p in operation.get("parameters", [])
            ):
                assert "404" in statuses, where
            if not path.endswith("/openapi.json"):
                assert "503" in statuses, where
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in answer["content"], f"{where} {status}"


def test_ids_are_documented_with_the_database_range(document: dict[str, Any]) -> None:
    params = document["paths"]["/admin/api/runs/{run_id}"]["get"]["parameters"]
    assert params[0]["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    setup = document["components"]["schemas"]["Setup"]["properties"]
    assert setup["salesforce_connection"]["maximum"] == 2**31 - 1


def test_rules_json_schema_can_state_are_stated(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    # A nullable nested option is "that schema or null", not "any object".
    webhook = schemas["Webhook"]["properties"]["platform_event"]
    assert webhook["nullable"] is True
    assert webhook["allOf"][0]["$ref"].endswith("/PlatformEvent")
    # In a merge patch null resets options with a default; the webhook cannot be reset.
    patch = schemas["SetupPatch"]["properties"]
    assert patch["sync_to_cc"]["nullable"] is True
    assert not patch["webhook"].get("nullable")
    # Either ids or all: true.
    selection = schemas["ErrorSelectionRequest"]["oneOf"]
    assert [v["required"] for v in selection] == [["ids"], ["all"]]
    # A filter condition's value fits its op.
    shapes = {tuple(v["properties"]["op"]["enum"]): v for v in schemas["FilterCondition"]["oneOf"]}
    assert shapes[("in", "not_in")]["properties"]["value"]["minItems"] == 1
    assert "greater_or_equal" in schemas["FilterCondition"]["properties"]["op"]["enum"]
    # A criterion is a condition or a group, which has the filter's own shape.
    criteria = schemas["Filter"]["properties"]["conditions"]["items"]["oneOf"]
    assert [c["$ref"].rsplit("/", 1)[-1] for c in criteria] == ["FilterCondition", "Filter"]
    # Free text refuses NUL, which PostgreSQL cannot store.
    assert schemas["Setup"]["properties"]["name"]["pattern"] == "^[^\\x00]*$"
