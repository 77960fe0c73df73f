"""Builds the Salesforce sandbox WSGI app around one org (`org.py`).

Conventions every module of this package follows:
- a module with routes exposes `bp: Blueprint`, registered in `build.assemble`;
- routes reach the state through `org.current_sandbox()`;
- vendor routes are authenticated by `rest.install_hooks` with `sandbox.salesforce.auth`
  (bearer token, 401 INVALID_SESSION_ID);
- control routes live under `/_sandbox/` and need no token.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from sandbox.salesforce import build
from sandbox.salesforce.org import SalesforceSandbox


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """One Salesforce org as a WSGI app; `config` overrides `org.DEFAULTS` (+ clock, sleep)."""
    app = Flask("sandbox.salesforce")
    sandbox = SalesforceSandbox(config)
    app.extensions["sf_sandbox"] = sandbox
    build.assemble(app, sandbox)
    return app
