"""Mount a sandbox WSGI app into a `requests.Session` so clients talk to it without sockets."""

from __future__ import annotations

import requests
from wsgiadapter import WSGIAdapter


def mount(session: requests.Session, base_url: str, app) -> requests.Session:  # type: ignore[no-untyped-def]
    """Route every request for `base_url` (e.g. `https://sf.sandbox.test`) to `app` in-process."""
    session.mount(base_url.rstrip("/") + "/", WSGIAdapter(app))
    return session


def in_process_session(base_url: str, app) -> requests.Session:  # type: ignore[no-untyped-def]
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies must not leak into tests
    return mount(session, base_url, app)
