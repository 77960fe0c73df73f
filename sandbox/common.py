"""Pieces both sandboxes share: a movable clock, fault injection, `/_sandbox/` control routes,
and the OAuth consent page a browser test clicks through."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request


class Clock:
    """Wall-clock time plus an offset that tests and the control API can move."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        with self._lock:
            self._offset = when - datetime.now(UTC)
        return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)


@dataclass
class Fault:
    """One injected misbehaviour: answer `status` (after `delay` seconds) for `count` calls."""

    count: int = 1
    status: int | None = None  # None: answer normally (after the delay)
    delay: float = 0.0  # seconds to stall before answering ("slow" or "timeout")
    path: str = ""  # only requests whose path starts with this prefix
    method: str = ""  # only this HTTP method
    error_key: str = ""  # vendor-specific flavour, e.g. Constant Contact's "quota_exceeded"
    hits: int = field(default=0)

    def matches(self, method: str, path: str) -> bool:
        if self.path and not path.startswith(self.path):
            return False
        return not (self.method and method.upper() != self.method.upper())

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "status": self.status,
            "delay": self.delay,
            "path": self.path,
            "method": self.method,
            "error_key": self.error_key,
            "hits": self.hits,
        }


class Faults:
    """Faults consumed by the next matching requests (control routes are never faulted)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.sleep = sleep

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None


ErrorFactory = Callable[[Fault], Response]


def install_faults(app: Flask, faults: Faults, error_response: ErrorFactory) -> None:
    """Apply queued faults before vendor routes run; `error_response` shapes the vendor's body."""

    @app.before_request
    def _inject_fault() -> Response | None:
        if request.path.startswith("/_sandbox"):
            return None
        fault = faults.take(request.method, request.path)
        if fault is None:
            return None
        if fault.delay:
            faults.sleep(fault.delay)
        if fault.status is None:
            return None
        return error_response(fault)


def parse_when(value: str) -> datetime:
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def control_blueprint(
    clock: Clock,
    faults: Faults,
    reset: Callable[[], None],
    name: str = "sandbox_control",
) -> Blueprint:
    """The routes both sandboxes share under `/_sandbox/`: clock, faults, reset.

    Vendor-specific control routes (seeding, state read-back, token expiry) are added to the
    returned blueprint by each sandbox before it is registered.
    """
    bp = Blueprint(name, __name__, url_prefix="/_sandbox")

    @bp.get("/clock")
    def get_clock() -> Response:
        return jsonify(now=clock.now().isoformat())

    @bp.post("/clock")
    def move_clock() -> tuple[Response, int] | Response:
        body = request.get_json(silent=True) or {}
        if "advance" in body:
            now = clock.advance(float(body["advance"]))
        elif "set" in body:
            now = clock.set(parse_when(str(body["set"])))
        elif body.get("reset"):
            clock.reset()
            now = clock.now()
        else:
            return jsonify(error="give 'advance' (seconds), 'set' (ISO time) or 'reset'"), 400
        return jsonify(now=now.isoformat())

    @bp.get("/faults")
    def list_faults() -> Response:
        return jsonify(faults=faults.pending())

    @bp.post("/faults")
    def add_fault() -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        kind = body.get("kind", "")
        status = body.get("status")
        delay = float(body.get("delay", 0.0))
        if kind == "timeout" and not delay:
            delay = 30.0
        if kind in ("slow", "timeout") and status is None:
            status = None
        elif kind == "throttle" and status is None:
            status = 429
        elif status is None and kind not in ("slow", "timeout"):
            return jsonify(error="give 'status' or 'kind' (slow, timeout, throttle)"), 400
        fault = faults.add(
            Fault(
                count=int(body.get("count", 1)),
                status=int(status) if status is not None else None,
                delay=delay,
                path=str(body.get("path", "")),
                method=str(body.get("method", "")),
                error_key=str(body.get("error_key", "")),
            )
        )
        return jsonify(fault.as_dict()), 201

    @bp.delete("/faults")
    def clear_faults() -> tuple[str, int]:
        faults.clear()
        return "", 204

    @bp.post("/reset")
    def do_reset() -> tuple[str, int]:
        faults.clear()
        clock.reset()
        reset()
        return "", 204

    return bp


# The authorize endpoints' answer field: "allow" or "deny" (anything else shows the page again).
CONSENT_FIELD = "consent"


def consent_answer(config: Any, args: Any) -> str | None:
    """What the person answered on the consent page: "allow", "deny", or None to show it.

    Off by default (``CONSENT_PAGE`` falsy): authorize approves at once, as tests, the demo and
    ``sandbox connect`` expect; a browser test turns it on to click "Allow" as a person would.
    """
    if not config.get("CONSENT_PAGE"):
        return "allow"
    answer = args.get(CONSENT_FIELD)
    return answer if answer in ("allow", "deny") else None


def consent_page(vendor: str, action: str, args: Any) -> tuple[str, int, dict[str, str]]:
    """The vendor's "allow access?" page: a GET form back to ``action`` with every authorize
    parameter, plus Allow / Deny buttons (readable, labelled, no script)."""
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in args.items(multi=True)
        if k != CONSENT_FIELD
    )
    body = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Allow access · {escape(vendor)} sandbox</title></head><body><main>"
        f"<h1>Allow access to your {escape(vendor)} sandbox account?</h1>"
        f"<p>The application <strong>{escape(args.get('client_id', ''))}</strong> asks for "
        f"access ({escape(args.get('scope', '') or 'default scope')}).</p>"
        f'<form method="get" action="{escape(action)}">{hidden}'
        f'<button type="submit" name="{CONSENT_FIELD}" value="allow">Allow</button> '
        f'<button type="submit" name="{CONSENT_FIELD}" value="deny">Deny</button>'
        "</form></main></body></html>"
    )
    return body, 200, {"Content-Type": "text/html; charset=utf-8"}
