"""Bulk API 2.0 query and ingest jobs. OWNER: sandbox Bulk/events helper."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

bp = Blueprint("sf_bulk", __name__)


class BulkJobs:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
