"""Change Data Capture events: render, deliver to a URL, keep for replay, gaps. OWNER: Bulk/events helper."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

bp = Blueprint("sf_events", __name__)


class EventHub:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox

    def on_changes(self, changes: list[Any]) -> None:
        pass
