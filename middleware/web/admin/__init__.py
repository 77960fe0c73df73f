"""Web admin API under /admin/api: views, presenters and the OpenAPI document.

``routing`` holds the blueprint, the token check and the route registry; ``views`` the routes
(each calls one service in ``middleware.services``); ``inputs`` and ``presenters`` parse requests
and shape answers; ``openapi`` builds the document from the same records.
"""

from __future__ import annotations

from middleware.web.admin import views
from middleware.web.admin.openapi import build_spec, openapi_path
from middleware.web.admin.routing import ENDPOINTS, ApiError, bp, token_matches
from middleware.web.endpoints import Endpoint

__all__ = [
    "ENDPOINTS",
    "ApiError",
    "Endpoint",
    "bp",
    "build_spec",
    "openapi_path",
    "token_matches",
    "views",
]
