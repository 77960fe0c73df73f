"""Dashboard sessions: who is signed in, for how long, and the per-session CSRF token.

Everything about "signed in" lives here, so another way to sign in (an OIDC provider) only has
to call ``sign_in`` with its own ``method`` once it has checked the person; the views ask
``signed_in()`` and never look at the cookie themselves. The session is Flask's signed cookie
(``SECRET_KEY``): it holds no secret, only the sign-in time, the method and the CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

from flask import session

from middleware.web.admin.routing import token_matches

# Sessions end this long after sign-in, whatever the browser does with the cookie.
SESSION_LIFETIME = timedelta(hours=8)
_SIGNED_IN_AT = "dash_signed_in_at"
_METHOD = "dash_method"
_CSRF = "dash_csrf"
CSRF_FIELD = "csrf_token"

__all__ = ["csrf_token", "csrf_valid", "sign_in", "sign_out", "signed_in", "token_matches"]


def sign_in(method: str = "admin_token") -> None:
    """Start a fresh session (a new CSRF token too: nothing from before sign-in carries over)."""
    session.clear()
    session.permanent = True
    session[_SIGNED_IN_AT] = int(time.time())
    session[_METHOD] = method
    session[_CSRF] = secrets.token_urlsafe(32)


def sign_out() -> None:
    """Forget the session entirely."""
    session.clear()


def signed_in(now: float | None = None, store: MutableMapping[str, Any] | None = None) -> bool:
    """Whether the session is a signed-in one younger than ``SESSION_LIFETIME``.

    The age is checked here, server-side, because the cookie's own expiry is only a request to
    the browser; an expired session is cleared.
    """
    data = session if store is None else store
    started = data.get(_SIGNED_IN_AT)
    if not isinstance(started, int):
        return False
    age = (time.time() if now is None else now) - started
    if age < 0 or age > SESSION_LIFETIME.total_seconds():
        data.clear()
        return False
    return True


def csrf_token() -> str:
    """This session's CSRF token, made on first use (the sign-in form needs one too)."""
    token = session.get(_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[_CSRF] = token
    return token


def csrf_valid(given: str | None) -> bool:
    """Whether a form's token is this session's (constant time; no session, no match)."""
    expected = session.get(_CSRF)
    if not isinstance(expected, str) or not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
