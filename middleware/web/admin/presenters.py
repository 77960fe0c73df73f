"""Admin API presenters: service results as JSON responses, dumped by the response schemas."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from marshmallow import Schema

from middleware.web.admin.routing import bp
from schemas import admin as s


def dump(schema: type[Schema], obj: Any, status: int = 200) -> Response:
    response = jsonify(schema().dump(obj))
    response.status_code = status
    return response


def started(result: dict[str, Any]) -> Response:
    """A queued job: 202 with where to follow its runs."""
    result["runs_url"] = f"{bp.url_prefix}/setups/{result['setup_id']}/runs"
    response = dump(s.JobStartedSchema, result, 202)
    response.headers["Location"] = result["runs_url"]
    return response
