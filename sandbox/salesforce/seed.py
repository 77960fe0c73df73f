"""Fast seeding of large orgs (1,000,000 contacts in seconds). OWNER: sandbox Bulk/events helper."""

from flask import Blueprint

bp = Blueprint("sf_seed", __name__)
