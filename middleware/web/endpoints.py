"""Endpoints: what the OpenAPI document says about each documented route (admin API, OAuth)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema


@dataclass(frozen=True)
class Endpoint:
    """What the OpenAPI document says about one route."""

    rule: str
    method: str
    view: str
    summary: str
    tag: str
    body: Schema | type[Schema] | None = None
    query: type[Schema] | None = None
    responses: dict[int, Any] = field(default_factory=dict)
    auth: bool = True
    description: str | None = None
    body_required: bool = True
    html: bool = False  # answers browsers with text/html too (the OAuth pages)
