"""OAuth connect-flow services without Flask: start links work once, forged ones are refused."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from redis import Redis

from middleware.services import connect
from middleware.services import exceptions as exc
from middleware.settings import Settings
from middleware.store.db import Store


def flow_token(flow: connect.Flow) -> str:
    return parse_qs(urlsplit(flow.start_url).query)["flow"][0]


def test_a_start_link_opens_the_consent_page_once(settings: Settings, fake_redis: Redis) -> None:
    flow = connect.begin_flow(settings, fake_redis, "constantcontact", "Main")
    assert flow.redirect_uri == f"{settings.public_url}/oauth/constantcontact/callback"
    assert flow.public()["start_url"] == flow.start_url
    assert "state" not in flow.public()
    token = flow_token(flow)
    assert connect.open_start_link(settings, fake_redis, "constantcontact", token) == (
        flow.authorize_url
    )
    with pytest.raises(exc.Gone):
        connect.open_start_link(settings, fake_redis, "constantcontact", token)


def test_forged_or_misdirected_links_and_unknown_sign_ins_are_rejected(
    settings: Settings, sqlite_store: Store, fake_redis: Redis
) -> None:
    flow = connect.begin_flow(settings, fake_redis, "salesforce")
    with pytest.raises(exc.Rejected, match="not valid"):
        connect.open_start_link(settings, fake_redis, "salesforce", flow_token(flow) + "x")
    with pytest.raises(exc.Rejected, match="not for this vendor"):
        connect.open_start_link(settings, fake_redis, "constantcontact", flow_token(flow))
    with pytest.raises(exc.NotFound):
        connect.begin_flow(settings, fake_redis, "hubspot")
    with pytest.raises(exc.Rejected, match="unknown, already used or expired"):
        connect.complete_flow(
            settings, sqlite_store, fake_redis, "salesforce", code="c", state="made-up"
        )
    with pytest.raises(exc.Rejected, match="started for salesforce"):
        connect.complete_flow(
            settings, sqlite_store, fake_redis, "constantcontact", code="c", state=flow.state
        )
    assert connect.take_flow(fake_redis, flow.state) is None  # the failed callback used it up


def test_reauthorising_needs_a_connection_of_that_vendor(
    settings: Settings, sqlite_store: Store, fake_redis: Redis, connected: dict[str, int]
) -> None:
    with pytest.raises(exc.Invalid) as raised:
        connect.start_connection(
            settings,
            sqlite_store,
            fake_redis,
            "salesforce",
            connection_id=connected["constantcontact"],
        )
    assert raised.value.errors is not None and "connection_id" in raised.value.errors
    with pytest.raises(exc.NotFound):
        connect.start_connection(
            settings, sqlite_store, fake_redis, "salesforce", connection_id=999
        )
    flow = connect.start_connection(
        settings, sqlite_store, fake_redis, "salesforce", connection_id=connected["salesforce"]
    )
    assert flow.connection_id == connected["salesforce"]


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/connections", "/connections"),
        ("https://evil.example/", None),
        ("//evil.example/x", None),
        ("/\\evil.example", None),
        (None, None),
    ],
)
def test_a_flow_returns_only_to_a_path_on_this_site(
    settings: Settings, fake_redis: Redis, asked: str | None, kept: str | None
) -> None:
    flow = connect.begin_flow(settings, fake_redis, "constantcontact", return_to=asked)
    assert connect.take_flow(fake_redis, flow.state)["return_to"] == kept  # type: ignore[index]
