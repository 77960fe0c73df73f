"""Setup services without Flask: validation, conflicts, pause and resume, status."""

from __future__ import annotations

from typing import Any

import pytest
from redis import Redis

from middleware import intake
from middleware.services import exceptions as exc
from middleware.services import setups
from middleware.settings import Settings
from middleware.store.db import Store

SETUP = {"name": "Contacts", "main_list": "Newsletter"}


def create(settings: Settings, store: Store, connected: dict[str, int], **extra: Any) -> Any:
    data = {
        **SETUP,
        "salesforce_connection": connected["salesforce"],
        "constant_contact_connection": connected["constantcontact"],
        **extra,
    }
    with store.transaction() as session:
        return setups.create_setup(settings, session, data)


def test_create_returns_the_view_with_its_secret_once(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> None:
    view = create(settings, sqlite_store, connected)
    assert view["webhook_secret"]
    assert view["webhook"]["url"] == f"{settings.public_url}/webhooks/salesforce/{view['id']}"
    with sqlite_store.transaction() as session:
        shown = setups.show_setup(settings, session, view["id"])
        listed = setups.list_setups(settings, session)
    assert "webhook_secret" not in shown
    assert [s["id"] for s in listed] == [view["id"]]


def test_invalid_options_name_each_field(settings: Settings, sqlite_store: Store) -> None:
    with sqlite_store.transaction() as session, pytest.raises(exc.Invalid) as raised:
        setups.create_setup(settings, session, {"name": "", "object_type": "Lead"})
    assert raised.value.detail == "The setup has invalid options."
    assert raised.value.errors is not None
    assert {"name", "main_list"} <= set(raised.value.errors)


def test_connections_of_the_wrong_vendor_or_missing_are_invalid(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> None:
    data = {**SETUP, "salesforce_connection": connected["constantcontact"]}
    data["constant_contact_connection"] = 999
    with sqlite_store.transaction() as session, pytest.raises(exc.Invalid) as raised:
        setups.create_setup(settings, session, data)
    assert raised.value.errors == {
        "salesforce_connection": [
            f"Connection {connected['constantcontact']} is a constantcontact connection, "
            "not salesforce."
        ],
        "constant_contact_connection": ["Connection 999 does not exist."],
    }


def test_a_second_setup_with_the_same_name_conflicts(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> None:
    first = create(settings, sqlite_store, connected)
    with pytest.raises(exc.Conflict) as raised:
        create(settings, sqlite_store, connected)
    assert raised.value.errors == {"name": ["Already used by another setup."]}
    other = create(settings, sqlite_store, connected, name="Other")
    with sqlite_store.transaction() as session, pytest.raises(exc.Conflict):
        setups.update_setup(settings, session, other["id"], {"name": first["name"]})


def test_update_merges_and_refuses_a_null_webhook(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> None:
    setup_id = create(settings, sqlite_store, connected)["id"]
    with sqlite_store.transaction() as session:
        view = setups.update_setup(settings, session, setup_id, {"main_list": "Members"})
    assert view["options"]["main_list"] == "Members"
    with sqlite_store.transaction() as session, pytest.raises(exc.Invalid) as raised:
        setups.update_setup(settings, session, setup_id, {"webhook": None})
    assert raised.value.errors is not None and "webhook" in raised.value.errors


@pytest.mark.parametrize("setup_id", [999, 0, -1, 2**31, 10**30])
def test_unknown_or_impossible_ids_are_not_found(
    settings: Settings, sqlite_store: Store, fake_redis: Redis, setup_id: int
) -> None:
    with sqlite_store.transaction() as session:
        with pytest.raises(exc.NotFound, match=f"Setup {setup_id} does not exist"):
            setups.show_setup(settings, session, setup_id)
        with pytest.raises(exc.NotFound):
            setups.setup_status(session, fake_redis, setup_id)
    with pytest.raises(exc.NotFound):
        setups.resume_setup(settings, sqlite_store, fake_redis, setup_id)


def test_pause_resume_and_status(
    settings: Settings, sqlite_store: Store, fake_redis: Redis, connected: dict[str, int]
) -> None:
    setup_id = create(settings, sqlite_store, connected)["id"]
    with sqlite_store.transaction() as session:
        paused = setups.pause_setup(settings, session, setup_id, "maintenance")
    assert paused["paused"] is True and paused["pause_reason"] == "maintenance"
    intake.mark_dirty(fake_redis, setup_id, "Contact", ["003000000000001AAA"])
    with sqlite_store.transaction() as session:
        status = setups.setup_status(session, fake_redis, setup_id)
    assert status["paused"] is True
    assert status["pending"] == 1
    assert status["connections"] == {"salesforce": "active", "constantcontact": "active"}
    assert status["open_errors_total"] == 0 and status["last_runs"] == []

    resumed = setups.resume_setup(settings, sqlite_store, fake_redis, setup_id)
    assert resumed["paused"] is False
    with sqlite_store.transaction() as session:
        assert setups.setup_status(session, fake_redis, setup_id)["paused"] is False


def test_rotate_and_delete(
    settings: Settings, sqlite_store: Store, fake_redis: Redis, connected: dict[str, int]
) -> None:
    created = create(settings, sqlite_store, connected)
    with sqlite_store.transaction() as session:
        rotated = setups.rotate_secret(settings, session, created["id"])
    assert rotated["webhook_secret"] not in ("", created["webhook_secret"])
    intake.mark_dirty(fake_redis, created["id"], "Contact", ["003000000000001AAA"])
    with sqlite_store.transaction() as session:
        setups.delete_setup(session, fake_redis, created["id"])
    assert intake.pending(fake_redis, created["id"]) == 0  # its pending changes went with it
    with sqlite_store.transaction() as session, pytest.raises(exc.NotFound):
        setups.show_setup(settings, session, created["id"])


def test_a_draft_is_judged_on_the_options_it_gives(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> None:
    with sqlite_store.transaction() as session:
        # main_list is required of a setup, not of a draft that has not asked for it yet.
        setups.check_setup_draft(session, {"name": "Draft", "object_type": "Lead"})
        with pytest.raises(exc.Invalid) as bad:
            setups.check_setup_draft(
                session,
                {
                    "name": "Draft",
                    "namespace_prefix": "acme__",
                    "salesforce_connection": connected["constantcontact"],
                },
            )
        assert set(bad.value.errors or {}) == {"namespace_prefix"}
        with pytest.raises(exc.Invalid) as wrong_vendor:
            setups.check_setup_draft(
                session, {"name": "Draft", "salesforce_connection": connected["constantcontact"]}
            )
        assert set(wrong_vendor.value.errors or {}) == {"salesforce_connection"}
        setups.create_setup(settings, session, {"name": "Taken", "main_list": "Main"})
        with pytest.raises(exc.Conflict):
            setups.check_setup_draft(session, {"name": "Taken"})
