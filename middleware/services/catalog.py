"""Catalog services: what a setup can name, read from the vendors through stored connections.

The setup wizard fills its pickers from here (a Salesforce object's fields, the Constant Contact
account's lists and custom fields, the org's Campaigns and List Views) and creates a list or a
custom field inline; the admin API can call the same functions. A vendor that cannot answer
(tokens refused, outage, a connection of the wrong vendor) becomes a ``ServiceError`` whose
``detail`` a person can act on, never an exception a view has to know about.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import requests
from redis import Redis
from redis.exceptions import RedisError

from middleware import connections as factories
from middleware import vendor_errors
from middleware.constantcontact import errors as cc_errors
from middleware.constantcontact.client import ConstantContactClient
from middleware.services.connections import vendor_session
from middleware.services.exceptions import Conflict, Invalid, VendorRefused
from middleware.services.lookups import get_connection
from middleware.services.setups import org_describer
from middleware.settings import Settings
from middleware.store.db import Store
from middleware.sync.fields import CC_CONTACT_FIELDS, CUSTOM_PREFIX, is_valid_custom_field
from schemas.setup import CAMPAIGN_LIST_SOURCES, CC_LIST_NAME_MAX, OBJECT_TYPES

log = logging.getLogger(__name__)

T = TypeVar("T")

VENDOR_NAMES = {"salesforce": "Salesforce", "constantcontact": "Constant Contact"}
# The Constant Contact contact fields a mapping may name, in the order a person looks for them.
CC_STANDARD_FIELDS = tuple(
    name
    for name in (
        "first_name",
        "last_name",
        "job_title",
        "company_name",
        "work_phone",
        "mobile_phone",
        "home_phone",
        "other_phone",
        "street",
        "city",
        "state",
        "zip",
        "country",
        "birthday_month",
        "birthday_day",
        "anniversary",
    )
    if name in CC_CONTACT_FIELDS
)


def _ask(vendor: str, connection_id: int, call: Callable[[], T]) -> T:
    """Run a vendor read; its failure as a ``VendorRefused`` saying what to do about it."""
    name = VENDOR_NAMES[vendor]
    try:
        return call()
    except (vendor_errors.NeedsReauth, LookupError) as exc:
        raise VendorRefused(
            f"{name} connection {connection_id} needs to be connected again "
            f"(Connections page, Reconnect): {exc}"
        ) from None
    except cc_errors.Conflict:
        raise  # the caller says what it means
    except vendor_errors.QuotaPause as exc:
        raise VendorRefused(f"{name}'s daily API quota is spent; try later ({exc}).") from None
    except vendor_errors.VendorError as exc:
        raise VendorRefused(f"{name} refused the request: {exc}") from None
    except (requests.RequestException, RedisError) as exc:
        log.warning("%s connection %s unreachable: %s", vendor, connection_id, exc)
        raise VendorRefused(
            f"{name} could not be reached ({type(exc).__name__}); try again in a moment."
        ) from None


def _connection(store: Store, connection_id: int, vendor: str) -> None:
    """Refuse a connection that does not exist or belongs to the other vendor."""
    with store.transaction() as session:
        row = get_connection(session, connection_id)
        if row.vendor != vendor:
            raise Invalid(
                {"connection": [f"Connection {connection_id} is not a {VENDOR_NAMES[vendor]} one."]}
            )


def _cc(
    settings: Settings, store: Store, redis: Redis, connection_id: int, config: Mapping[str, Any]
) -> ConstantContactClient:
    _connection(store, connection_id, "constantcontact")
    return _ask(
        "constantcontact",
        connection_id,
        lambda: factories.constant_contact_client(
            settings,
            store,
            redis,
            connection_id,
            session=vendor_session(config, "constantcontact"),
        ),
    )


# --------------------------------------------------------------------------- Salesforce


def salesforce_fields(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    sobject: str,
    config: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The object's fields from its describe: ``name``, ``label``, ``type``, ``custom``,
    sorted by label (``GET /sobjects/{sobject}/describe``, one call)."""
    if sobject not in OBJECT_TYPES:
        raise Invalid({"object_type": [f"Must be one of {', '.join(OBJECT_TYPES)}."]})
    _connection(store, connection_id, "salesforce")
    org = org_describer(settings, store, redis, config)
    described = _ask("salesforce", connection_id, lambda: org.describe(connection_id, sobject))
    if described is None:
        raise VendorRefused(f"The Salesforce org has no {sobject} object.")
    found = [
        {
            "name": str(f.get("name")),
            "label": str(f.get("label") or f.get("name")),
            "type": str(f.get("type") or ""),
            "custom": bool(f.get("custom")) or str(f.get("name")).endswith("__c"),
        }
        for f in described.get("fields") or ()
        if f.get("name")
    ]
    return sorted(found, key=lambda f: (f["label"].lower(), f["name"]))


def segment_names(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    source: str,
    sobject: str,
    config: Mapping[str, Any] | None = None,
) -> list[str]:
    """What ``campaign_lists.selected`` may name: the org's Campaign names (``source``
    ``campaigns``) or the object's List View labels (``list_views``), sorted."""
    if source not in CAMPAIGN_LIST_SOURCES:
        raise Invalid({"source": [f"Must be one of {', '.join(CAMPAIGN_LIST_SOURCES)}."]})
    if sobject not in OBJECT_TYPES:
        raise Invalid({"object_type": [f"Must be one of {', '.join(OBJECT_TYPES)}."]})
    _connection(store, connection_id, "salesforce")
    org = org_describer(settings, store, redis, config)
    if source == "list_views":
        views = _ask(
            "salesforce", connection_id, lambda: org.client(connection_id).list_views(sobject)
        )
        return sorted({str(v.get("label")) for v in views if v.get("label")}, key=str.lower)
    names = _ask(
        "salesforce", connection_id, lambda: org.segment_names(connection_id, source, sobject)
    )
    return sorted((n for n in names if n), key=str.lower)


# --------------------------------------------------------------------------- Constant Contact


def _list_view(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(item.get("list_id") or ""),
        "name": str(item.get("name") or ""),
        "members": item.get("membership_count"),
    }


def cc_lists(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    config: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The account's active lists (``id``, ``name``, ``members`` when known), sorted by name
    (``GET /contact_lists``, one call)."""
    client = _cc(settings, store, redis, connection_id, config or {})
    items = _ask("constantcontact", connection_id, lambda: list(client.iter_lists()))
    return sorted((_list_view(i) for i in items), key=lambda i: i["name"].lower())


def create_cc_list(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    name: str,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a list (``POST /contact_lists``); a name already taken is a ``Conflict``."""
    name = name.strip()
    if not 0 < len(name) <= CC_LIST_NAME_MAX:
        raise Invalid({"name": [f"Give a list name of 1–{CC_LIST_NAME_MAX} characters."]})
    client = _cc(settings, store, redis, connection_id, config or {})
    try:
        created = _ask("constantcontact", connection_id, lambda: client.create_list(name))
    except cc_errors.Conflict:
        raise Conflict(
            f"Constant Contact already has a list named {name!r}: pick it instead.",
            {"name": ["Already a list of this account: pick it instead."]},
        ) from None
    log.info("created Constant Contact list through connection %s", connection_id)
    return _list_view(created)


def _custom_field_view(item: Mapping[str, Any]) -> dict[str, Any]:
    name = str(item.get("name") or item.get("label") or "")
    return {
        "id": str(item.get("custom_field_id") or ""),
        "name": name,
        "label": str(item.get("label") or name),
        "type": str(item.get("type") or "string"),
        "cc_field": f"{CUSTOM_PREFIX}{name}",
    }


def cc_custom_fields(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    config: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The account's custom fields (``name``, ``label``, ``type`` and the ``cc_field`` a
    mapping names them by, ``cf:<name>``), sorted by label (``GET /contact_custom_fields``)."""
    client = _cc(settings, store, redis, connection_id, config or {})
    items = _ask("constantcontact", connection_id, lambda: list(client.iter_custom_fields()))
    return sorted((_custom_field_view(i) for i in items), key=lambda i: i["label"].lower())


def create_cc_custom_field(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    label: str,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A text custom field of that label, made when the account lacks it
    (``POST /contact_custom_fields``); answers it as :func:`cc_custom_fields` does."""
    label = label.strip()
    if not is_valid_custom_field(f"{CUSTOM_PREFIX}{label.replace(' ', '_')}"):
        raise Invalid({"label": ["Give a label of 1–50 characters."]})
    client = _cc(settings, store, redis, connection_id, config or {})

    def make() -> dict[str, Any]:
        field_id = client.ensure_custom_fields([label])[label]
        for item in client.iter_custom_fields():
            if item.get("custom_field_id") == field_id:
                return _custom_field_view(item)
        return _custom_field_view({"custom_field_id": field_id, "label": label})

    created = _ask("constantcontact", connection_id, make)
    log.info("custom field %s ready through connection %s", created["id"], connection_id)
    return created
