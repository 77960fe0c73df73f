"""Mount a sandbox WSGI app into a `requests.Session` so clients talk to it without sockets."""

from __future__ import annotations

import requests
from wsgiadapter import WSGIAdapter


def _string_content_length(app):  # type: ignore[no-untyped-def]
    # wsgiadapter 0.4.1 puts CONTENT_LENGTH in the environ as an int; WSGI says str, and
    # werkzeug >= 3.1 refuses anything else, so every request body would fail to parse.
    def wrapped(environ, start_response):  # type: ignore[no-untyped-def]
        length = environ.get("CONTENT_LENGTH")
        if length is not None and not isinstance(length, str):
            environ["CONTENT_LENGTH"] = str(length)
        return app(environ, start_response)

    return wrapped


def mount(session: requests.Session, base_url: str, app) -> requests.Session:  # type: ignore[no-untyped-def]
    """Route every request for `base_url` (e.g. `https://sf.sandbox.test`) to `app` in-process."""
    session.mount(base_url.rstrip("/") + "/", WSGIAdapter(_string_content_length(app)))
    return session


def in_process_session(base_url: str, app) -> requests.Session:  # type: ignore[no-untyped-def]
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies must not leak into tests
    return mount(session, base_url, app)
