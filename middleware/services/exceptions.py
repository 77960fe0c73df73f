"""Service exceptions: what went wrong in words a front end maps to its own answer.

The web turns each class into one HTTP status (``middleware.web.problems``), the CLI into a message;
``errors`` carries field-by-field messages where the caller sent fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ServiceError(Exception):
    """A request the service refuses; ``detail`` says why, ``errors`` names fields."""

    def __init__(self, detail: str, errors: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = dict(errors) if errors else None


class NotFound(ServiceError):
    """The row (or vendor) asked for does not exist."""


class Invalid(ServiceError):
    """Fields with values the service cannot use; ``errors`` names each one."""

    def __init__(
        self, errors: Mapping[str, list[str]], detail: str = "The request has invalid fields."
    ) -> None:
        super().__init__(detail, errors)


class Conflict(ServiceError):
    """Conflicts with the current state (a paused setup, a connection in use, a running sync)."""


class Rejected(ServiceError):
    """A link or callback that cannot be used as sent (bad signature, unknown sign-in)."""


class Gone(ServiceError):
    """Something that was valid once: an expired or already used link."""


class VendorRefused(ServiceError):
    """The vendor refused the call or could not be reached."""


class NotAvailable(ServiceError):
    """The feature is not installed in this version."""


def not_found(what: str, ident: Any) -> NotFound:
    """``NotFound`` saying which row does not exist."""
    return NotFound(f"{what} {ident} does not exist.")
