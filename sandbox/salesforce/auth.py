"""Access tokens: issue, expire, check (401 INVALID_SESSION_ID). OWNER: sandbox REST helper."""

from __future__ import annotations

from typing import Any


class TokenRegistry:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
