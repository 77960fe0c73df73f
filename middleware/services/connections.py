"""Connection services: list, check, delete, and the connections a setup points at."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import requests
from redis import Redis
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from middleware import connections as factories
from middleware import vendor_errors
from middleware.services.exceptions import Conflict, Invalid
from middleware.services.lookups import get_connection, storable_id
from middleware.services.shapes import connection_view
from middleware.settings import Settings
from middleware.store import connections as connection_repo
from middleware.store import setups as setup_repo
from middleware.store.db import Store
from middleware.store.models import Setup

log = logging.getLogger(__name__)


def setups_using(session: Session, connection_id: int) -> list[int]:
    """The ids of the setups that point at a connection (it cannot be deleted while any do)."""
    stmt = select(Setup.id).where(
        or_(
            Setup.salesforce_connection_id == connection_id,
            Setup.constant_contact_connection_id == connection_id,
        )
    )
    return sorted(session.scalars(stmt))


def list_connections(session: Session) -> list[dict[str, Any]]:
    """Every connection with the setups using it; never a token."""
    used: dict[int, list[int]] = {}
    for setup in setup_repo.all_setups(session):
        for conn_id in (setup.salesforce_connection_id, setup.constant_contact_connection_id):
            if conn_id is not None:
                used.setdefault(conn_id, []).append(setup.id)
    return [
        connection_view(c, used.get(c.id, ())) for c in connection_repo.all_connections(session)
    ]


def refuse_if_used(session: Session, connection_id: int) -> None:
    """``Conflict`` when setups use the connection: what deleting it would answer (a page asks
    before it offers the button)."""
    users = setups_using(session, connection_id)
    if users:
        raise Conflict(
            f"Connection {connection_id} is used by setup(s) {', '.join(map(str, users))}; "
            "point them at another connection or delete them first.",
        )


def delete_connection(session: Session, connection_id: int) -> None:
    """Delete a connection no setup uses (``Conflict`` otherwise); its tokens go with it."""
    row = get_connection(session, connection_id)
    refuse_if_used(session, connection_id)
    session.delete(row)
    session.flush()
    log.info("deleted %s connection %s", row.vendor, connection_id)


def vendor_session(config: Mapping[str, Any], vendor: str) -> requests.Session | None:
    """The HTTP session for vendor calls: ``config["VENDOR_SESSION"](vendor)`` if set.

    Tests and the sandbox demo mount sandboxes into it (through the app's config); production
    leaves it unset and the connection factories build their own sessions.
    """
    factory: Callable[[str], requests.Session] | None = config.get("VENDOR_SESSION")
    return factory(vendor) if factory else None


def check_connection(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    *,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Make one cheap authenticated call with the stored tokens and record the outcome.

    ``config``: the app's config, for the vendor session tests and the demo mount
    (:func:`vendor_session`)."""

    with store.transaction() as db:
        vendor = get_connection(db, connection_id).vendor
    session = vendor_session(config or {}, vendor)
    ok, detail = False, ""
    status: str | None = "active"
    try:
        if vendor == "salesforce":
            sf = factories.salesforce_client(settings, store, redis, connection_id, session=session)
            limits = sf.limits()
            daily = limits.get("DailyApiRequests") or {}
            detail = "GET /limits answered"
            if "Remaining" in daily:
                detail += f": {daily['Remaining']} of {daily.get('Max')} daily API requests left"
        else:
            cc = factories.constant_contact_client(
                settings, store, redis, connection_id, session=session
            )
            fields_seen = sum(1 for _ in cc.iter_custom_fields())
            detail = f"GET /contact_custom_fields answered ({fields_seen} custom fields)"
        ok = True
    except (vendor_errors.NeedsReauth, LookupError) as exc:
        status, detail = "needs_reauth", f"{type(exc).__name__}: {exc}"
    except vendor_errors.VendorError as exc:
        # An outage says nothing about the connection: keep its status, report the failure.
        status = None if exc.retryable else "error"
        detail = f"{type(exc).__name__}: {exc}"
    except requests.RequestException as exc:
        status, detail = None, f"{type(exc).__name__}: {exc}"
    with store.transaction() as db:
        if status is not None:
            connection_repo.mark_status(db, connection_id, status, None if ok else detail[:2000])
        row = get_connection(db, connection_id)
        view = connection_view(row, setups_using(db, connection_id))
    log.info("connection %s check: %s", connection_id, "ok" if ok else status or "failed")
    return {"ok": ok, "detail": detail, "connection": view}


def check_setup_connections(session: Session, setup: Mapping[str, Any]) -> None:
    """Refuse setup options whose connections do not exist or belong to the other vendor."""
    errors: dict[str, list[str]] = {}
    for option, vendor in (
        ("salesforce_connection", "salesforce"),
        ("constant_contact_connection", "constantcontact"),
    ):
        conn_id = setup.get(option)
        if conn_id is None:
            continue
        row = connection_repo.get(session, conn_id) if storable_id(conn_id) else None
        if row is None:
            errors[option] = [f"Connection {conn_id} does not exist."]
        elif row.vendor != vendor:
            errors[option] = [f"Connection {conn_id} is a {row.vendor} connection, not {vendor}."]
    if errors:
        raise Invalid(errors)
