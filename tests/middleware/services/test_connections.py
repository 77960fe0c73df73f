"""Connection services without Flask: listing, deleting, the vendor session hook."""

from __future__ import annotations

import pytest
import requests

from middleware.services import connections, setups
from middleware.services import exceptions as exc
from middleware.settings import Settings
from middleware.store.db import Store


def test_list_shows_who_uses_each_connection_and_never_a_token(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> None:
    with sqlite_store.transaction() as session:
        setup_id = setups.create_setup(
            settings,
            session,
            {
                "name": "Contacts",
                "main_list": "Newsletter",
                "salesforce_connection": connected["salesforce"],
            },
        )["id"]
        listed = connections.list_connections(session)
    by_vendor = {c["vendor"]: c for c in listed}
    assert by_vendor["salesforce"]["used_by"] == [setup_id]
    assert by_vendor["constantcontact"]["used_by"] == []
    assert "svc-access-token" not in str(listed) and "svc-refresh-token" not in str(listed)


def test_delete_is_refused_while_a_setup_uses_it(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> None:
    with sqlite_store.transaction() as session:
        setups.create_setup(
            settings,
            session,
            {
                "name": "Contacts",
                "main_list": "Newsletter",
                "salesforce_connection": connected["salesforce"],
            },
        )
    with sqlite_store.transaction() as session, pytest.raises(exc.Conflict, match="used by setup"):
        connections.delete_connection(session, connected["salesforce"])
    with sqlite_store.transaction() as session:
        connections.delete_connection(session, connected["constantcontact"])
    with sqlite_store.transaction() as session, pytest.raises(exc.NotFound):
        connections.delete_connection(session, connected["constantcontact"])


def test_vendor_session_comes_from_the_config_when_set() -> None:
    made = requests.Session()
    assert connections.vendor_session({}, "salesforce") is None
    config = {"VENDOR_SESSION": lambda vendor: made if vendor == "salesforce" else None}
    assert connections.vendor_session(config, "salesforce") is made
    assert connections.vendor_session(config, "constantcontact") is None
