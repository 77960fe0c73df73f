"""Admin API OpenAPI document: built from the recorded routes and the schemas that validate them.

``GET /admin/api/openapi.json`` serves it; the admin routes (``routing.ENDPOINTS``) and the OAuth
connect routes (``oauth.ENDPOINTS``) are documented from the same records that register them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from marshmallow import Schema

from middleware.web import MAX_DB_ID, oauth
from middleware.web.admin.routing import ENDPOINTS
from middleware.web.endpoints import Endpoint
from schemas import admin as s
from schemas.setup import (
    _LIST_OPS,
    _VALUELESS_OPS,
    CC_LIST_NAME_MAX,
    FILTER_OPS,
    CampaignSelectionField,
    CcSourceField,
    FilterConditionSchema,
    FilterCriterionField,
    SetupSchema,
)

_PATH_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/setups/<int:setup_id>`` → ``/setups/{setup_id}``."""
    return _PATH_PARAM.sub(lambda m: "{" + m.group(2) + "}", rule)


def _schema_field_types() -> Callable[..., dict[str, Any]]:
    def attribute(self: Any, field: Any, **_: Any) -> dict[str, Any]:
        # Fields that accept several shapes; apispec cannot infer them.
        if isinstance(field, CcSourceField):
            return {
                "oneOf": [
                    {"type": "string", "enum": ["main_list", "all_active"]},
                    {
                        "type": "object",
                        "required": ["lists"],
                        "additionalProperties": False,
                        "properties": {
                            "lists": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": CC_LIST_NAME_MAX,
                                    # Not blank, and no NUL (the store cannot keep one).
                                    "pattern": r"^[^\x00]*[^\s\x00][^\x00]*$",
                                },
                            }
                        },
                    },
                ]
            }
        if isinstance(field, FilterCriterionField):
            # A condition or a group, which has the filter's own shape (nesting depth: prose).
            return {
                "oneOf": [
                    {"$ref": "#/components/schemas/FilterCondition"},
                    {"$ref": "#/components/schemas/Filter"},
                ]
            }
        if isinstance(field, CampaignSelectionField):
            return {
                "oneOf": [
                    {"type": "string", "enum": ["all"]},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "minLength": 1},
                    },
                ]
            }
        return {}

    return attribute


def _operation(ep: Endpoint, params: list[dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": ep.view,
        "summary": ep.summary,
        "tags": [ep.tag],
        "responses": {},
    }
    if ep.description:
        op["description"] = ep.description
    if params:
        op["parameters"] = list(params)
    if ep.query is not None:
        op.setdefault("parameters", []).append({"in": "query", "schema": ep.query})
    if ep.body is not None:
        op["requestBody"] = {
            "required": ep.body_required,
            "content": {"application/json": {"schema": ep.body}},
        }
    responses = {**_implied_responses(ep), **ep.responses}
    for status, schema in sorted(responses.items()):
        if schema is None:
            text = _STATUS_TEXT.get(status, "Redirect to the vendor's consent page.")
            op["responses"][str(status)] = {"description": text}
            if status == 200 and ep.view == "openapi_document":
                op["responses"]["200"]["content"] = {
                    "application/json": {"schema": {"type": "object"}}
                }
            continue
        media = "application/problem+json" if schema is s.ProblemSchema else "application/json"
        content: dict[str, Any] = {media: {"schema": schema}}
        if ep.html and status != 503:
            content["text/html"] = {"schema": {"type": "string"}}
        op["responses"][str(status)] = {
            "description": _STATUS_TEXT.get(status, "Answer."),
            "content": content,
        }
    op["security"] = [{"adminToken": []}] if ep.auth else []
    return op


def _implied_responses(ep: Endpoint) -> dict[int, Any]:
    """Statuses every route of a kind can answer, so no route's document forgets them."""
    implied: dict[int, Any] = {}
    if ep.body is not None:
        implied |= {400: s.ProblemSchema, 413: s.ProblemSchema}
    if ep.query is not None:
        implied[400] = s.ProblemSchema
    if ep.view != "openapi_document":  # every other route reads the database or Redis
        implied[503] = s.ProblemSchema
    return implied


_STATUS_TEXT = {
    200: "Success.",
    201: "Created.",
    202: "Accepted: the job is queued.",
    400: "The request is malformed (the problem names the fields).",
    401: "Missing or wrong admin token.",
    403: "The vendor did not grant access.",
    404: "No such resource.",
    409: "Conflicts with the current state (the problem says why).",
    422: "Invalid fields (the problem names each one).",
    410: "The link expired or was already used.",
    413: "The body is larger than the configured limit (WEBHOOK_MAX_BYTES).",
    501: "Not available in this version.",
    502: "The vendor refused or could not be reached.",
    503: "The database or Redis is unavailable; retry after the Retry-After seconds.",
}


def schema_name(schema: Any) -> str:
    """Component name of a schema: the class name without ``Schema``; partial ones are patches."""
    cls = resolve_schema_cls(schema)
    name = (cls[0] if isinstance(cls, list) else cls).__name__.removesuffix("Schema")
    if isinstance(schema, Schema) and schema.partial:
        name += "Patch"
    return name


def build_spec(server_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3 document of the admin API and the OAuth connect routes."""
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title="Salesforce ⇄ Constant Contact sync: admin API",
        version="1",
        openapi_version="3.0.3",
        plugins=[plugin],
        info={
            "description": "Manage connections, setups, runs, sync errors and the job queue. "
            "Every /admin/api route needs `Authorization: Bearer <ADMIN_TOKEN>`; errors are "
            "RFC 9457 problem+json naming the offending fields."
        },
        servers=[{"url": server_url}] if server_url else [],
    )
    plugin.converter.add_attribute_function(_schema_field_types())  # type: ignore[union-attr]
    # Reached only through FilterCriterionField's oneOf, which apispec cannot follow.
    spec.components.schema("FilterCondition", schema=FilterConditionSchema)
    spec.components.security_scheme("adminToken", {"type": "http", "scheme": "bearer"})
    paths: dict[str, dict[str, dict[str, Any]]] = {}
    for ep in [*ENDPOINTS, *oauth.ENDPOINTS]:
        params = [
            {
                "in": "path",
                "name": m.group(2),
                "required": True,
                "schema": (
                    {"type": "integer", "minimum": 1, "maximum": MAX_DB_ID}
                    if m.group(1) == "int"
                    else {"type": "string"}
                )
                | ({"enum": list(oauth.VENDORS)} if m.group(2) == "vendor" else {}),
            }
            for m in _PATH_PARAM.finditer(ep.rule)
        ]
        paths.setdefault(openapi_path(ep.rule), {})[ep.method.lower()] = _operation(ep, params)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = _nullable_refs(spec.to_dict())
    schemas = document["components"]["schemas"]
    _patch_nulls_reset(schemas["SetupPatch"])
    _one_selection(schemas["ErrorSelectionRequest"], narrowed_by="code")
    _one_selection(schemas["RequeueRequest"])
    _filter_condition(schemas["FilterCondition"])
    _storable_text(document)
    return document  # type: ignore[no-any-return]


# Text the database can store: no NUL (PostgreSQL refuses it); ``parse_json`` enforces it.
NO_NUL = "^[^\\x00]*$"


def _storable_text(document: dict[str, Any]) -> None:
    """Say on every free-text string a request can carry that NUL is refused (400)."""
    request_refs: list[str] = []
    for operations in document["paths"].values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("in") == "query":
                    _no_nul(param["schema"], request_refs)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                _no_nul(body["schema"], request_refs)
    schemas = document["components"]["schemas"]
    done: set[str] = set()
    while request_refs:
        name = request_refs.pop().rsplit("/", 1)[-1]
        if name not in done:
            done.add(name)
            _no_nul(schemas[name], request_refs)


def _no_nul(node: Any, refs: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _no_nul(item, refs)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("$ref"), str):
        refs.append(node["$ref"])
    if node.get("type") == "string" and not {"pattern", "enum", "format"} & set(node):
        node["pattern"] = NO_NUL
    for key, value in node.items():
        if key not in ("enum", "default", "example"):
            _no_nul(value, refs)


def _filter_condition(schema: dict[str, Any]) -> None:
    """A condition's value depends on its op: none, a non-empty list, or one scalar."""
    base = {k: v for k, v in schema["properties"].items() if k != "value"}
    scalar = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    items = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    shapes = [
        (_VALUELESS_OPS, {"nullable": True, "enum": [None]}, False),
        (_LIST_OPS, {"type": "array", "minItems": 1, "items": items}, True),
        (tuple(op for op in FILTER_OPS if op not in (*_VALUELESS_OPS, *_LIST_OPS)), scalar, True),
    ]
    schema["oneOf"] = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["field", "op", *(["value"] if needs_value else [])],
            "properties": base | {"op": {**base["op"], "enum": list(ops)}, "value": value},
        }
        for ops, value, needs_value in shapes
    ]


def _nullable_refs(node: Any) -> Any:
    """apispec renders a nullable nested schema as ``anyOf: [$ref, {type: object, nullable}]``,
    which admits *any* object; say "this schema or null" instead."""
    if isinstance(node, list):
        return [_nullable_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_refs(value) for key, value in node.items()}
    variants = node.get("anyOf")
    if (
        isinstance(variants, list)
        and len(variants) == 2
        and "$ref" in variants[0]
        and variants[1] == {"nullable": True, "type": "object"}
    ):
        del node["anyOf"]
        node.update(allOf=[variants[0]], nullable=True)
    return node


def _patch_nulls_reset(patch: dict[str, Any]) -> None:
    """In a merge patch, ``null`` resets an option that has a default (``webhook`` excepted)."""
    fields = SetupSchema().fields
    for name, prop in patch["properties"].items():
        field_ = fields.get(name)
        if field_ is None or field_.required or name == "webhook":
            continue
        prop["nullable"] = True


def _one_selection(schema: dict[str, Any], narrowed_by: str | None = None) -> None:
    """Either ``ids`` (alone) or ``all: true`` (optionally narrowed): what the view enforces."""
    props = schema["properties"]
    by_ids = {
        "type": "object",
        "additionalProperties": False,
        "required": ["ids"],
        "properties": {"ids": props["ids"], "all": {**props["all"], "enum": [False]}},
    }
    everything = {
        "type": "object",
        "additionalProperties": False,
        "required": ["all"],
        "properties": {"all": {**props["all"], "enum": [True]}}
        | ({narrowed_by: props[narrowed_by]} if narrowed_by else {}),
    }
    schema["oneOf"] = [by_ids, everything]
