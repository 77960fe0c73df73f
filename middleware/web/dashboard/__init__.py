"""The dashboard: server-rendered pages at ``/`` over the same services as the admin API and CLI.

``auth`` holds the session rules (sign-in with the admin token, expiry, CSRF); ``views`` the
pages and their POST actions; ``wizard`` the setup wizard's pages (with ``forms``, which turns
setup options into controls and form posts back into options). Pages work without JavaScript;
the stylesheets are static files.
"""

from __future__ import annotations

from middleware.web.dashboard import views, wizard
from middleware.web.dashboard.views import bp

__all__ = ["bp", "views", "wizard"]
