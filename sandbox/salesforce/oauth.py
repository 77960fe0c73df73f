"""OAuth 2.0 authorize (auto-approve) and token endpoints. OWNER: sandbox REST helper."""

from flask import Blueprint

bp = Blueprint("sf_oauth", __name__)
