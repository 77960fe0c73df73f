"""Salesforce-only control routes under /_sandbox/ (records, tokens, convert, undelete). OWNER: REST helper."""

from flask import Blueprint

bp = Blueprint("sf_sandbox_ctl", __name__, url_prefix="/_sandbox")
