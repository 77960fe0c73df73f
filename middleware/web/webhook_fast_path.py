"""The Salesforce webhook's hot path: change events served without Flask's per-request machinery.

Flask's request handling around a view (request object, URL matching, session, five request
hooks, signals, response finalising) cost about as much CPU as the whole intake did per change
event, and a bare "hello" WSGI app was 3-4 times faster than the intake under the same gunicorn
(issue 10). So `POST /webhooks/salesforce/<id>` is served here: `webhooks.accept` runs inside an
app context only, and this module does what the app's request hooks do for it — the request id
taken (or made), logged with every line and echoed in `X-Request-ID`, and the queue runtime set.
Every other request, and the route itself when this path is off, goes through Flask as before.

It serves only while the app's request hooks and error handlers are exactly the ones it
reproduces (`REPRODUCED_HOOKS`): an app-wide hook added later is never skipped silently — the
route then goes through Flask (tests/middleware/web/test_webhook_fast_path.py says which).
An exception is answered by Flask's own error handlers in a request context made for it, so
errors answer exactly as on Flask's path. Validation, authentication, dedupe and durability are
`webhooks.accept`'s, the same code on both paths.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, g, jsonify
from flask.json.provider import DefaultJSONProvider
from werkzeug.utils import get_content_type

from middleware import queue
from middleware.logging import request_id_var
from middleware.web import handles, request_id_for, webhooks

log = logging.getLogger(__name__)

# ASCII digits without a leading zero, at most ten: anything else (odd digits, signs, slashes)
# is left to Flask's router, which answers it as before.
_PATH = re.compile(r"/webhooks/salesforce/([1-9][0-9]{0,9})")

# The app-level hooks (by function name) whose work `_serve` does itself; see the docstring.
REPRODUCED_HOOKS = {
    "before_request": ("_use_runtime", "_take_request_id"),
    "after_request": ("_echo_request_id",),
    "teardown_request": ("_drop_runtime", "_forget_request_id"),
}

# The status line werkzeug writes for a 202.
_ACCEPTED = "202 ACCEPTED"

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def hooks_reproduced(app: Flask) -> bool:
    """Whether every request hook that would run for the webhook route is one `_serve` does."""
    scopes = (None, webhooks.bp.name)
    registered: dict[str, dict[Any, list[Any]]] = {
        "before_request": app.before_request_funcs,
        "after_request": app.after_request_funcs,
        "teardown_request": app.teardown_request_funcs,
        "url_value_preprocessor": app.url_value_preprocessors,
    }
    for kind, funcs in registered.items():
        names = tuple(f.__name__ for scope in scopes for f in funcs.get(scope, ()))
        if sorted(names) != sorted(REPRODUCED_HOOKS.get(kind, ())):
            return False
    return True


def writes_flasks_json(app: Flask) -> bool:
    """Whether `WebhookFastPath` can write the 202 itself, byte for byte as `jsonify` would:
    Flask's own JSON provider answering (whatever its settings) in Flask's own response class."""
    flasks_provider = type(app.json).response is DefaultJSONProvider.response
    return flasks_provider and app.response_class is Response


# What a WSGI server is handed for the 202, put together without a `Response`.
Direct = tuple[str, list[tuple[str, str]], bytes]


class WebhookFastPath:
    """WSGI middleware: the Salesforce webhook served here, everything else by `flask_wsgi`."""

    def __init__(self, app: Flask, flask_wsgi: WsgiApp) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi
        self._enabled: bool | None = None  # decided at the first request, once hooks are in
        self._direct = False  # the 202 written without a `Response` (decided with `enabled`)

    @property
    def enabled(self) -> bool:
        if self._enabled is None:
            self._enabled = hooks_reproduced(self.app)
            self._direct = writes_flasks_json(self.app)
            if not self._enabled:
                log.warning(
                    "the webhook fast path is off: the app has request hooks it does not "
                    "reproduce (see middleware/web/webhook_fast_path.py); Flask serves the route"
                )
        return self._enabled

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        match = None
        if environ.get("REQUEST_METHOD") == "POST":
            match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or not self.enabled:
            return self.flask_wsgi(environ, start_response)
        with self.app.app_context():
            answer = self._serve(environ, int(match.group(1)))
        if isinstance(answer, tuple):
            status, headers, body = answer
            start_response(status, headers)
            return [body]
        return answer(environ, start_response)  # type: ignore[no-any-return]

    def _serve(self, environ: dict[str, Any], setup_id: int) -> Response | Direct:
        """`webhooks.accept`'s answer with the request id: the 202 as `Direct` parts when it can
        be (`writes_flasks_json`), every other answer as a Flask response."""
        rid = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        g.request_id = rid
        rid_token = request_id_var.set(rid)
        runtime_token = queue.set_runtime(handles(self.app)["runtime"])
        try:
            try:
                answer = webhooks.accept(setup_id, environ)
                if isinstance(answer, webhooks.Accepted):
                    if self._direct:
                        return self._accepted(answer, rid)
                    response = self.app.make_response((jsonify(answer.document()), 202))
                else:
                    response = self.app.make_response(answer)
            except Exception as exc:
                # Rare: Flask's own handlers answer, as on Flask's path (they read the request).
                with self.app.request_context(environ):
                    try:
                        response = self.app.make_response(self.app.handle_user_exception(exc))
                    except Exception as unhandled:
                        response = self.app.handle_exception(unhandled)
            response.headers["X-Request-ID"] = rid
            return response
        finally:
            queue.reset_runtime(runtime_token)
            request_id_var.reset(rid_token)

    def _accepted(self, answer: webhooks.Accepted, rid: str) -> Direct:
        """The 202 as the Flask view answers it (`jsonify`: the same status line, bytes and
        headers), without building a `Response`: that and its WSGI headers cost about a tenth
        of the whole request's CPU."""
        provider: Any = self.app.json  # a DefaultJSONProvider (`writes_flasks_json`)
        if (provider.compact is None and self.app.debug) or provider.compact is False:
            text = provider.dumps(answer.document(), indent=2)
        else:
            text = provider.dumps(answer.document(), separators=(",", ":"))
        body = f"{text}\n".encode()
        headers = [
            ("Content-Type", get_content_type(provider.mimetype, "utf-8")),
            ("Content-Length", str(len(body))),
            ("X-Request-ID", rid),
        ]
        return _ACCEPTED, headers, body
