"""Setup services: create, change, delete, pause, resume, rotate secrets, show status.

A setup's ``filter`` is checked against the org when it is saved (:func:`check_fields_with_org`):
with a connected Salesforce connection, a criterion naming a field the object lacks, an operator
that does not fit the field's type, or a date that is not one is refused with the schema's 422;
when the org cannot be asked, the setup is saved with a warning saying the filter was not checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import requests
from marshmallow import ValidationError
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from middleware import connections as factories
from middleware import intake, runner, vendor_errors
from middleware.salesforce import errors as sf_errors
from middleware.salesforce.client import SalesforceClient
from middleware.services.connections import check_setup_connections, vendor_session
from middleware.services.exceptions import Conflict, Invalid
from middleware.services.lookups import get_setup
from middleware.services.shapes import run_view, setup_view
from middleware.settings import Settings
from middleware.store import connections as connection_repo
from middleware.store import errors as error_repo
from middleware.store import links as link_repo
from middleware.store import runs as run_repo
from middleware.store import setups as setup_repo
from middleware.store.db import Store
from middleware.store.models import Setup, utcnow
from middleware.sync.campaigns import missing_selected
from middleware.sync.options import SetupOptions
from middleware.sync.segments import check_filter, check_mapped_fields
from schemas.setup import apply_patch, flatten_messages, validate_setup

log = logging.getLogger(__name__)


def list_setups(settings: Settings, session: Session) -> list[dict[str, Any]]:
    """Every setup as the API shows it (no secrets)."""
    return [setup_view(settings, r) for r in setup_repo.all_setups(session)]


def show_setup(settings: Settings, session: Session, setup_id: int) -> dict[str, Any]:
    """One setup as the API shows it (no secret)."""
    return setup_view(settings, get_setup(session, setup_id))


def _check_name_free(session: Session, name: str, setup_id: int | None = None) -> None:
    stmt = select(Setup.id).where(Setup.name == name)
    if setup_id is not None:
        stmt = stmt.where(Setup.id != setup_id)
    if session.scalar(stmt) is not None:
        raise Conflict(
            f"A setup named {name!r} already exists.",
            {"name": ["Already used by another setup."]},
        )


def _validated(
    fn: Callable[[], tuple[dict[str, Any], list[str]]],
) -> tuple[dict[str, Any], list[str]]:
    try:
        return fn()
    except ValidationError as exc:
        raise Invalid(flatten_messages(exc.messages), "The setup has invalid options.") from None


# What a patch must touch for the filter and the mapped fields to be checked again.
_FILTER_INPUTS = frozenset(
    {
        "filter",
        "field_map",
        "other_email_fields",
        "object_type",
        "namespace_prefix",
        "salesforce_connection",
    }
)


class OrgReader:
    """Reads setups' Salesforce orgs when they are saved: one client per connection (its
    describe cache) for the life of this reader, no retries (the save answers with a warning
    instead). Build one with :func:`org_describer`."""

    def __init__(
        self, settings: Settings, store: Store, redis: Redis, config: Mapping[str, Any]
    ) -> None:
        self.settings, self.store, self.redis, self.config = settings, store, redis, config
        self._clients: dict[int, SalesforceClient] = {}

    def client(self, connection_id: int) -> SalesforceClient:
        client = self._clients.get(connection_id)
        if client is None:
            client = factories.salesforce_client(
                self.settings,
                self.store,
                self.redis,
                connection_id,
                session=vendor_session(self.config, "salesforce"),
                get_retries=0,
            )
            self._clients[connection_id] = client
        return client

    def describe(self, connection_id: int, sobject: str) -> Mapping[str, Any] | None:
        """The object's describe through that connection, None when the org has no such
        object; raises the vendor's errors."""
        try:
            return self.client(connection_id).describe(sobject)
        except sf_errors.NotFound:
            return None

    def segment_names(self, connection_id: int, source: str, sobject: str) -> set[str]:
        """The names ``campaign_lists.selected`` may use: Campaign names, or the object's List
        View labels and API names."""
        client = self.client(connection_id)
        if source == "campaigns":
            rows = client.query_iter("SELECT Name FROM Campaign")
            return {str(r.get("Name") or "") for r in rows}
        names: set[str] = set()
        for view in client.list_views(sobject):
            names.update((str(view.get("label") or ""), str(view.get("developerName") or "")))
        return names


def org_describer(
    settings: Settings, store: Store, redis: Redis, config: Mapping[str, Any] | None = None
) -> OrgReader:
    """An :class:`OrgReader`. ``config``: the app's config, for the vendor session tests and
    the demo mount."""
    return OrgReader(settings, store, redis, config or {})


def _org_unchecked(session: Session, options: Mapping[str, Any]) -> str | None:
    """Why the setup's org cannot be asked now, or None when it can."""
    conn_id = options.get("salesforce_connection")
    if conn_id is None:
        return "no salesforce_connection yet."
    row = connection_repo.get(session, conn_id)
    if row is None or row.status != "active":
        state = row.status if row is not None else "missing"
        return f"connection {conn_id} is {state}."
    return None


def check_segments_with_org(
    session: Session, options: Mapping[str, Any], org: OrgReader | None
) -> list[str]:
    """Warnings for ``campaign_lists.selected`` names the org has no Campaign or List View of
    (a warning, not a 422: it may be made later; each run says it again)."""
    spec = options.get("campaign_lists")
    if spec is None or not spec.get("selected") or org is None:
        return []
    if _org_unchecked(session, options) is not None:
        return []  # the run says it again once the org can be asked
    kind = "Campaign" if spec["source"] == "campaigns" else "List View"
    try:
        known = org.segment_names(
            options["salesforce_connection"], spec["source"], options["object_type"]
        )
    except (vendor_errors.VendorError, requests.RequestException, RedisError, LookupError) as exc:
        return [f"campaign_lists could not be checked against the Salesforce org ({exc})."]
    typed = SetupOptions.from_validated(options).campaign_lists
    assert typed is not None
    return missing_selected(typed, known, kind)


def check_fields_with_org(
    session: Session, options: Mapping[str, Any], org: OrgReader | None
) -> list[str]:
    """Check a validated setup's ``filter`` and mapped Salesforce fields (``field_map``,
    ``other_email_fields``) against its Salesforce org.

    Raises ``Invalid`` (the schema's 422, keyed ``filter.conditions[i].field``,
    ``field_map[i].sf_field`` etc.) when the org says the filter cannot work or lacks a mapped
    field (every read SELECTs them: the runs would fail); answers the warnings to add when a
    filter could not be checked (no connection yet, one not active, Salesforce unreachable or
    refusing). Nothing to check, or no ``org`` (a caller without an org): nothing to say.
    """
    has_filter = options.get("filter") is not None
    mapped = options.get("field_map") or options.get("other_email_fields")
    if not (has_filter or mapped) or org is None:
        return []
    unchecked = "The filter could not be checked against the Salesforce org"
    why = _org_unchecked(session, options)
    if why is not None:
        return [f"{unchecked}: {why}"] if has_filter else []
    conn_id: int = options["salesforce_connection"]
    typed = SetupOptions.from_validated(options)
    try:
        described: dict[str, Any] = {}

        def describe(sobject: str) -> Any:
            if sobject not in described:  # one describe per object for both checks
                described[sobject] = org.describe(conn_id, sobject)
            return described[sobject]

        errors = {**check_filter(typed, describe), **check_mapped_fields(typed, describe)}
    except (vendor_errors.VendorError, requests.RequestException, RedisError, LookupError) as exc:
        log.warning("fields of setup %r not checked: %s", options.get("name"), exc)
        if not has_filter:
            return []  # a missing mapped field fails the run, which says so
        return [f"{unchecked} ({type(exc).__name__}: {exc}); it is saved unchecked."]
    if errors:
        raise Invalid(errors, "The setup has invalid options.")
    return []


def create_setup(
    settings: Settings,
    session: Session,
    data: Mapping[str, Any],
    *,
    org: OrgReader | None = None,
) -> dict[str, Any]:
    """Validate and store a new setup; the view includes its webhook secret (shown once).

    ``org`` (:func:`org_describer`): check the filter and the selected Campaigns / List Views
    against the org; None: do not."""
    options, warnings = _validated(lambda: validate_setup(data))
    check_setup_connections(session, options)
    warnings = [*warnings, *check_fields_with_org(session, options, org)]
    warnings += check_segments_with_org(session, options, org)
    _check_name_free(session, options["name"])
    row = setup_repo.create(
        session,
        name=options["name"],
        options=options,
        salesforce_connection_id=options.get("salesforce_connection"),
        constant_contact_connection_id=options.get("constant_contact_connection"),
    )
    secret = setup_repo.webhook_secret(session, row)
    log.info("created setup %s (%s)", row.id, row.name)
    return setup_view(settings, row, warnings=warnings, secret=secret)


def update_setup(
    settings: Settings,
    session: Session,
    setup_id: int,
    patch: Mapping[str, Any],
    *,
    org: OrgReader | None = None,
) -> dict[str, Any]:
    """Apply a JSON merge patch to a setup and store the validated result.

    ``org``: as for :func:`create_setup`; the filter is checked again when the patch touches
    it, the object type, the namespace prefix or the Salesforce connection, and the selected
    Campaigns / List Views when it touches ``campaign_lists``."""
    row = get_setup(session, setup_id)
    if "webhook" in patch and patch["webhook"] is None:
        # Resetting it would silently change how Salesforce must authenticate its callouts.
        raise Invalid(
            {
                "webhook": [
                    "Cannot be null: send the webhook settings to change, e.g. "
                    '{"auth": "shared_secret"}.'
                ]
            }
        )
    current = dict(row.options or {})
    # The row is the truth for what the options also carry.
    current.update(
        name=row.name,
        salesforce_connection=row.salesforce_connection_id,
        constant_contact_connection=row.constant_contact_connection_id,
    )
    options, warnings = _validated(lambda: apply_patch(current, patch))
    check_setup_connections(session, options)
    if _FILTER_INPUTS & set(patch):
        warnings = [*warnings, *check_fields_with_org(session, options, org)]
    if "campaign_lists" in patch:
        warnings += check_segments_with_org(session, options, org)
    _check_name_free(session, options["name"], setup_id)
    row.name = options["name"]
    row.options = options
    row.salesforce_connection_id = options.get("salesforce_connection")
    row.constant_contact_connection_id = options.get("constant_contact_connection")
    row.updated_at = utcnow()
    session.flush()
    log.info("updated setup %s (%s)", row.id, ", ".join(sorted(patch)) or "no changes")
    return setup_view(settings, row, warnings=warnings)


def delete_setup(session: Session, redis: Redis, setup_id: int) -> None:
    """Delete a setup with its links, runs and errors, and drop its pending changes."""
    row = get_setup(session, setup_id)
    session.delete(row)
    session.flush()
    # Its pending changes have nowhere to go any more.
    redis.delete(intake.dirty_key(setup_id), intake.catchup_key(setup_id))
    log.info("deleted setup %s", setup_id)


def rotate_secret(settings: Settings, session: Session, setup_id: int) -> dict[str, Any]:
    """Give a setup a new webhook secret (the old one stops working); shown once."""
    row = get_setup(session, setup_id)
    secret = setup_repo.set_webhook_secret(session, row)
    log.info("rotated the webhook secret of setup %s", setup_id)
    return setup_view(settings, row, secret=secret)


def setup_status(session: Session, redis: Redis, setup_id: int) -> dict[str, Any]:
    """What a setup is doing and what needs attention: pauses, runs, pending, errors, links."""
    row = get_setup(session, setup_id)
    now = utcnow()
    open_errors = error_repo.counts_by_code(session, setup_id)
    active = run_repo.active_run(session, setup_id)
    connections: dict[str, str | None] = {}
    for key, conn_id in (
        ("salesforce", row.salesforce_connection_id),
        ("constantcontact", row.constant_contact_connection_id),
    ):
        conn = connection_repo.get(session, conn_id) if conn_id is not None else None
        connections[key] = conn.status if conn is not None else None
    return {
        "setup_id": setup_id,
        "paused": row.is_paused(now),
        "pause_reason": row.pause_reason,
        "paused_until": row.paused_until,
        "pending": intake.pending(redis, setup_id),
        "catch_ups": sorted(intake.take_catchups(redis, setup_id)),
        "active_run": run_view(active, now) if active else None,
        "last_runs": [run_view(r, now) for r in run_repo.recent_runs(session, setup_id, 5)],
        "open_errors": open_errors,
        "open_errors_total": sum(open_errors.values()),
        "links": link_repo.counts(session, setup_id),
        "connections": connections,
    }


def pause_setup(
    settings: Settings,
    session: Session,
    setup_id: int,
    reason: str,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Pause a setup; changes keep collecting and sync after it resumes."""
    get_setup(session, setup_id)
    setup_repo.pause(session, setup_id, reason, until)
    return setup_view(settings, get_setup(session, setup_id))


def resume_setup(settings: Settings, store: Store, redis: Redis, setup_id: int) -> dict[str, Any]:
    """Resume a setup and flush what waited (committed first, so the flush sees it resumed).

    A setup paused by Constant Contact's daily quota asks Constant Contact again at once.
    """
    with store.transaction() as session:
        quota = runner.paused_by_quota(get_setup(session, setup_id).pause_reason)
        setup_repo.resume(session, setup_id)
        view = setup_view(settings, get_setup(session, setup_id))
    runner.retry_now(settings, redis, setup_id, unblock=quota)
    return view


# Stand-ins for required options a first wizard step has not asked for yet.
_DRAFT_STAND_INS = {"name": "draft", "main_list": "draft"}


def check_setup_draft(session: Session, data: Mapping[str, Any]) -> None:
    """Check the options of a setup not created yet, as ``create_setup`` would, but only those
    given (the dashboard wizard asks for a setup over several pages before creating it).

    Raises ``Invalid`` (keyed like the 422) for the given options' errors, an unknown or
    other-vendor connection, and a name already used; options not given are not judged.
    """
    try:
        validate_setup({**_DRAFT_STAND_INS, **data})
    except ValidationError as exc:
        flat = flatten_messages(exc.messages)
        mine = {k: v for k, v in flat.items() if k.split(".")[0].split("[")[0] in data}
        if mine:
            raise Invalid(mine, "The setup has invalid options.") from None
    check_setup_connections(session, data)
    if isinstance(data.get("name"), str):
        _check_name_free(session, data["name"])
