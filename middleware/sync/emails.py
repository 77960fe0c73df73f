"""Email addresses: normalisation (the CC identity), validity, and CC's role addresses."""

from __future__ import annotations

import re

# Constant Contact accepts these as contacts but never mails them (api-notes §12, DESIGN §5a).
ROLE_LOCAL_PARTS = frozenset(
    [
        "abuse",
        "admin",
        "all",
        "everyone",
        "ftp",
        "investorrelations",
        "jobs",
        "marketing",
        "media",
        "noc",
        "postmaster",
        "prime",
        "privacy",
        "remove",
        "request",
        "root",
        "sales",
        "security",
        "spam",
        "subscribe",
        "usenet",
        "users",
        "uucp",
        "webmaster",
        "www",
    ]
)
ROLE_DOMAINS = frozenset({"googlegroups.com", "yahoogroups.com", "craigslist.org"})

# Constant Contact stores at most 80 characters (api-notes §3.3).
MAX_EMAIL_LENGTH = 80

# Deliberately permissive: CC is the judge of deliverability; this only keeps out values that
# cannot be an address at all (no @, spaces, no dot in the domain), which CC would reject anyway
# and which would otherwise cost an import row and an error round trip.
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@.]+$")


def normalise_email(value: object) -> str:
    """The identity form of an address: trimmed and lower-cased; ``""`` for blank or non-text."""
    if not isinstance(value, str):
        return ""
    return value.strip().lower()


def is_valid_email(email: str) -> bool:
    """Whether a normalised address is worth sending to Constant Contact."""
    if not email or len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        return False
    local, _, domain = email.rpartition("@")
    return not (local.startswith(".") or local.endswith(".") or ".." in email or domain[0] == ".")


def is_role_address(email: str) -> bool:
    """Whether CC never mails this address: a role local part (ignoring case and ``+tag``),
    ``spam`` anywhere in the local part, or a mailing-list domain."""
    local, _, domain = normalise_email(email).rpartition("@")
    base = local.split("+", 1)[0]
    return base in ROLE_LOCAL_PARTS or "spam" in local or domain in ROLE_DOMAINS


def mask_email(email: str) -> str:
    """A loggable form of an address: ``j***@example.com`` (never log full addresses)."""
    local, at, domain = email.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"
