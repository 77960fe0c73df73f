"""Builds the Constant Contact V3 sandbox WSGI app around one account (`account.py`).

Conventions every module of this package follows:
- a module with routes exposes `bp: Blueprint`, registered in `build.assemble`;
- routes reach the state through `account.current_sandbox()`;
- `/v3/...` routes are authenticated and metered by `sandbox.constantcontact.gate`
  (bearer token, 401 single object; per-application 429 `throttled` / `quota_exceeded`);
- errors are raised as `errors.CCError` and rendered in Constant Contact's shapes;
- control routes live under `/_sandbox/` and need no token.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from sandbox.constantcontact import build
from sandbox.constantcontact.account import ConstantContactSandbox


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """One Constant Contact account as a WSGI app.

    `config` overrides `account.DEFAULTS` (plus `clock`, `sleep`).
    """
    app = Flask("sandbox.constantcontact")
    sandbox = ConstantContactSandbox(config)
    app.extensions["cc_sandbox"] = sandbox
    build.assemble(app, sandbox)
    return app
