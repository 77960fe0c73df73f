"""The API gateway in front of every `/v3` route: bearer token, per-application limits, call counts.

Constant Contact meters per application (API key), not per token or account: every token issued
to one client id draws from the same 4-per-second window and the same daily quota, which resets at
00:00 UTC. Throttled and over-quota calls are answered but not charged; both are counted so tests
and benchmarks can assert "at most N Constant Contact calls".
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

from flask import Flask, Response, g, request

from sandbox.constantcontact import errors
from sandbox.constantcontact.account import current_sandbox

JSON_EXEMPT = ("/v3/activities/contacts_file_import",)  # multipart: must NOT send application/json


class Gate:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.windows: dict[str, deque[float]] = {}
        self.days: dict[str, tuple[str, int]] = {}  # client id -> (UTC day, calls charged)
        self.calls: Counter[str] = Counter()  # by endpoint family
        self.outcomes: Counter[str] = Counter()  # unauthorized, throttled, quota_exceeded, ...

    def reset(self) -> None:
        with self.lock:
            self.windows.clear()
            self.days.clear()
            self.calls.clear()
            self.outcomes.clear()

    def count(self, family: str) -> None:
        with self.lock:
            self.calls[family] += 1

    def charge(self, client_id: str) -> errors.CCError | None:
        """Admit one call for `client_id`, or say which limit it hit (nothing is charged then)."""
        now = self.sandbox.clock.now()
        stamp = now.timestamp()
        day = now.strftime("%Y-%m-%d")
        quota = int(self.sandbox.config["DAILY_QUOTA"])
        rate = int(self.sandbox.config["RATE_PER_SECOND"])
        with self.lock:
            used_day, used = self.days.get(client_id, (day, 0))
            if used_day != day:
                used = 0
            if quota and used >= quota:
                self.outcomes["quota_exceeded"] += 1
                return errors.quota_exceeded()
            window = self.windows.setdefault(client_id, deque())
            while window and window[0] <= stamp - 1.0:
                window.popleft()
            if rate and len(window) >= rate:
                self.outcomes["throttled"] += 1
                return errors.throttled()
            window.append(stamp)
            self.days[client_id] = (day, used + 1)
        return None

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total": sum(self.calls.values()),
                "by_family": dict(self.calls),
                "rejected": dict(self.outcomes),
                "quota_used_today": {cid: used for cid, (_day, used) in self.days.items()},
            }


def family_of(path: str) -> str:
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[2] else "v3"


def install_counter(app: Flask) -> None:
    """Count every vendor call, registered before fault injection so faulted calls count too."""

    @app.before_request
    def _count() -> None:
        path = request.path
        gate: Gate = current_sandbox().gate
        if path.startswith("/oauth2/"):
            gate.count(f"oauth2_{path.rsplit('/', 1)[-1]}")
        elif path.startswith("/v3/"):
            gate.count(family_of(path))


def install(app: Flask) -> None:
    @app.before_request
    def _gate() -> Response | None:
        path = request.path
        sandbox = current_sandbox()
        gate: Gate = sandbox.gate
        if not path.startswith("/v3/"):
            return None
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        found = sandbox.auth.check(token) if token else None
        if found is None:
            gate.outcomes["unauthorized"] += 1
            return errors.unauthorized().response()
        g.cc_client_id = found.client_id
        limited = gate.charge(found.client_id)
        if limited is not None:
            return limited.response()
        if (
            request.method in ("POST", "PUT", "PATCH")
            and path not in JSON_EXEMPT
            and request.mimetype != "application/json"
        ):
            return errors.CCError(
                415, errors.UNSUPPORTED_MEDIA, "Content-Type must be application/json."
            ).response()
        return None

    @app.errorhandler(errors.CCError)
    def _cc_error(exc: errors.CCError) -> Response:
        return exc.response()

    @app.errorhandler(404)
    def _not_found(_exc: Any) -> Response:
        return errors.CCError(404, errors.NOT_FOUND, "Resource not found.").response()

    @app.errorhandler(405)
    def _not_allowed(_exc: Any) -> Response:
        return errors.CCError(405, "method_not_allowed", "Unsupported method used.").response()
