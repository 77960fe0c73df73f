"""Admin API inputs: the request's JSON body and query, validated by the schemas (4xx otherwise)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from middleware.web import BadInput, check_text, parse_json
from middleware.web.admin.routing import ApiError
from schemas.setup import flatten_messages


def json_body(required: bool = True) -> dict[str, Any]:
    """The request's JSON object; 400 when it is not one."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ApiError(400, "Bad Request", "Send a JSON object as the request body.")
        return {}
    try:
        data = parse_json(raw)
    except BadInput as exc:
        raise ApiError(400, "Bad Request", exc.detail) from None
    if not isinstance(data, dict):
        raise ApiError(400, "Bad Request", "The body must be a JSON object.")
    return data


def load(schema: type[Schema], data: Mapping[str, Any], *, status: int = 422) -> dict[str, Any]:
    """Validate ``data`` with ``schema``; a 4xx naming each offending field otherwise."""
    try:
        return schema().load(dict(data))  # type: ignore[no-any-return]
    except ValidationError as exc:
        title = "Unprocessable Content" if status == 422 else "Bad Request"
        raise ApiError(
            status, title, "The request has invalid fields.", flatten_messages(exc.messages)
        ) from None


def query_args(schema: type[Schema]) -> dict[str, Any]:
    args = request.args.to_dict()
    for name, value in args.items():
        try:
            check_text(name, "A query parameter name")
            check_text(value, f"The query parameter {name[:40]}")
        except BadInput as exc:
            raise ApiError(400, "Bad Request", exc.detail, {name[:40]: [exc.detail]}) from None
    return load(schema, args, status=400)
