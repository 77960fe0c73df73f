"""Webhook bodies in: read within the size limit, chunked bodies included.

Both webhook endpoints (Salesforce change events, Constant Contact partner webhooks) take raw
bodies from senders we do not control; `schemas.json_input.load_json` parses them.
`read_body` answers `BodyTooLarge` for a body over the limit whether or not it declares its
length: a chunked body (no Content-Length) is read from the server-terminated stream up to one
byte past the limit, where werkzeug's own limited stream silently truncates it at the limit (and
the truncated JSON answered a misleading 400).
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    """The body is longer than the limit (declared or read)."""


def read_body(limit: int) -> bytes:
    """The request body, at most `limit` bytes; `BodyTooLarge` past that (chunked bodies too)."""
    length = request.content_length
    if length is not None:
        if length > limit:
            raise BodyTooLarge
        try:
            return request.get_data(cache=False)
        except RequestEntityTooLarge:
            raise BodyTooLarge from None
    environ = request.environ
    if not environ.get("wsgi.input_terminated"):
        # No length and a server that does not end the stream: werkzeug's safe reading (an
        # empty body), never a read that could block a worker forever.
        return request.get_data(cache=False)
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
