"""Webhook bodies in: read within the size limit, chunked bodies included.

Both webhook endpoints (Salesforce change events, Constant Contact partner webhooks) take raw
bodies from senders we do not control; `schemas.json_input.load_json` parses them.
`read_body` answers `BodyTooLarge` for a body over the limit whether or not it declares its
length: a chunked body (no Content-Length) is read from the server-terminated stream up to one
byte past the limit, where werkzeug's own limited stream silently truncates it at the limit (and
the truncated JSON answered a misleading 400).
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length, get_input_stream

_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    """The body is longer than the limit (declared or read)."""


def read_body(limit: int, environ: dict[str, Any]) -> bytes:
    """The request body, at most `limit` bytes; `BodyTooLarge` past that (chunked bodies too).

    Reads `environ` as Flask's `request.get_data()` does (werkzeug's guarded input stream, the
    app's MAX_CONTENT_LENGTH), so it also serves the Salesforce webhook's path outside Flask's
    request machinery (`middleware.web.webhook_fast_path`).
    """
    max_length = current_app.config.get("MAX_CONTENT_LENGTH")
    length = get_content_length(environ)
    if length is not None:
        if length > limit:
            raise BodyTooLarge
        try:
            return get_input_stream(environ, max_content_length=max_length).read()
        except RequestEntityTooLarge:
            raise BodyTooLarge from None
    if not environ.get("wsgi.input_terminated"):
        # No length and a server that does not end the stream: werkzeug's safe reading (an
        # empty body), never a read that could block a worker forever.
        return get_input_stream(environ, max_content_length=max_length).read()
    stream = environ["wsgi.input"]
    chunks: list[bytes] = []
    total = 0
    while True:
        data = stream.read(min(_CHUNK, limit + 1 - total))
        if not data:
            break
        chunks.append(data)
        total += len(data)
        if total > limit:
            raise BodyTooLarge
    return b"".join(chunks)
