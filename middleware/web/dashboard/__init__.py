"""The dashboard: server-rendered pages at ``/`` over the same services as the admin API and CLI.

``auth`` holds the session rules (sign-in with the admin token, expiry, CSRF); ``views`` the
pages and their POST actions. Pages work without JavaScript; the one stylesheet is a static file.
"""

from __future__ import annotations

from middleware.web.dashboard import views
from middleware.web.dashboard.views import bp

__all__ = ["bp", "views"]
