"""Outbound Messages in: secret in the URL, defused XML, the sending org checked, Ack only once
recorded, a SOAP Fault otherwise so Salesforce retries."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from middleware import intake, queue
from middleware.salesforce.ids import to_18
from middleware.salesforce.outbound import ACK
from middleware.services import changes
from middleware.store import connections as connection_repo
from middleware.store import setups as setup_repo
from middleware.web.outbound import fault
from middleware.web.webhooks import forget_setup
from schemas.setup import validate_setup
from tests.middleware.salesforce.outbound_samples import (
    ORG_ID,
    OTHER_ORG,
    contact_id,
    message,
    notification,
)


@pytest.fixture
def setup(app) -> dict[str, Any]:
    store = app.extensions["middleware"]["store"]
    options, _ = validate_setup(
        {"name": "om", "main_list": "Main", "salesforce_changes": ["webhook", "outbound"]}
    )
    with store.transaction() as session:
        conn = connection_repo.create(
            session, vendor="salesforce", label="org", base_url="https://sf.test", account_id=ORG_ID
        )
        row = setup_repo.create(
            session, name="om", options=options, salesforce_connection_id=conn.id
        )
        secret = setup_repo.webhook_secret(session, row)
        setup_id = row.id
        conn_id = conn.id
    return {"id": setup_id, "secret": secret, "store": store, "connection_id": conn_id}


@pytest.fixture
def redis(app):
    return app.extensions["middleware"]["redis"]


@pytest.fixture
def recorded(monkeypatch) -> list[changes.Recorded]:
    """What each call of `changes.record` answered."""
    seen: list[changes.Recorded] = []
    real = changes.record

    def spy(*args: Any, **kwargs: Any) -> changes.Recorded:
        answer = real(*args, **kwargs)
        seen.append(answer)
        return answer

    monkeypatch.setattr(changes, "record", spy)
    return seen


def post(client, setup: dict[str, Any], body: bytes, secret: str | None = None, setup_id=None):
    query = {} if secret == "" else {"secret": setup["secret"] if secret is None else secret}
    return client.post(
        f"/webhooks/salesforce/{setup_id or setup['id']}/outbound",
        data=body,
        content_type="text/xml; charset=utf-8",
        headers={"SOAPAction": '""'},
        query_string=query,
    )


def fault_of(response) -> tuple[str, str]:
    text = response.get_data(as_text=True)
    assert response.status_code == 500, text
    assert response.content_type == "text/xml; charset=utf-8"
    code = text.split("<faultcode>")[1].split("</faultcode>")[0]
    reason = text.split("<faultstring>")[1].split("</faultstring>")[0]
    return code, reason


def counted(reason: str, outcome: str = "rejected") -> float:
    labels = {"source": "salesforce_outbound", "outcome": outcome, "reason": reason}
    return REGISTRY.get_sample_value("ctct_webhook_events_total", labels) or 0.0


def test_acks_exactly_once_recorded_and_schedules_the_flush(client, setup, redis) -> None:
    r = post(client, setup, message(notification(1), notification(2)))
    assert r.status_code == 200
    assert r.content_type == "text/xml; charset=utf-8"
    assert r.get_data() == (
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
        b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
    )
    assert r.get_data() == ACK
    assert intake.pending(redis, setup["id"]) == 2
    assert queue.pending_job_id(f"flush-{setup['id']}", connection=redis) is not None
    # Flask served it (the JSON webhook's fast path matches /webhooks/salesforce/<id> only).
    assert r.headers["X-Request-ID"]


def test_a_retried_message_is_a_duplicate_but_a_new_notification_counts(
    client, setup, redis, recorded
) -> None:
    first = post(client, setup, message(notification(1), notification(2)))
    again = post(client, setup, message(notification(2), notification(1)))  # out of order too
    assert first.get_data() == again.get_data() == ACK
    assert (recorded[0].accepted, recorded[0].duplicates) == (2, 0)
    assert (recorded[1].accepted, recorded[1].duplicates) == (0, 2)
    # The same record changed again: a new notification id, a new hint.
    later = post(client, setup, message(notification(3, record_id=contact_id(1))))
    assert later.get_data() == ACK
    assert (recorded[2].accepted, recorded[2].duplicates) == (1, 0)


def test_a_hundred_notifications_in_one_message(client, setup, redis, recorded) -> None:
    r = post(client, setup, message(*(notification(n) for n in range(1, 101))))
    assert r.get_data() == ACK
    assert recorded[0].accepted == 100
    assert intake.pending(redis, setup["id"]) == 100
    code, reason = fault_of(post(client, setup, message(*(notification(n) for n in range(101)))))
    assert code == "soapenv:Client" and "at most 100" in reason


def test_another_org_is_refused_and_counted(client, setup, redis) -> None:
    before = counted("other_org")
    code, reason = fault_of(post(client, setup, message(notification(1), org_id=OTHER_ORG)))
    assert code == "soapenv:Client"
    assert OTHER_ORG in reason
    assert counted("other_org") == before + 1
    assert intake.pending(redis, setup["id"]) == 0


@pytest.mark.parametrize("org_id", [ORG_ID, ORG_ID[:15], ORG_ID[:15] + "xyz"])
def test_the_org_id_matches_in_its_15_and_18_character_forms(client, setup, org_id) -> None:
    assert post(client, setup, message(notification(1), org_id=org_id)).get_data() == ACK


def test_the_15_character_org_id_is_case_sensitive(client, setup) -> None:
    code, _ = fault_of(post(client, setup, message(notification(1), org_id=ORG_ID.lower())))
    assert code == "soapenv:Client"


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>&lol2;</soapenv:Body></soapenv:Envelope>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>&xxe;</soapenv:Body></soapenv:Envelope>"
)
BARE_DTD = b"<!DOCTYPE soapenv:Envelope>" + message(notification(1))[38:]


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, BARE_DTD])
def test_a_dtd_or_entity_declaration_is_refused(client, setup, redis, body) -> None:
    before = counted("forbidden_xml")
    code, reason = fault_of(post(client, setup, body))
    assert code == "soapenv:Client" and "DTD" in reason
    assert counted("forbidden_xml") == before + 1
    assert intake.pending(redis, setup["id"]) == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<soapenv:Envelope", "not well-formed"),
        (b"", "not well-formed"),
        (b"<Envelope/>", "not a SOAP 1.1 envelope"),
        (
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>',
            "not an Outbound Message",
        ),
        (message(), "no Notification"),
        (message(notification(1), org_id="nope"), "OrganizationId"),
        (message(notification(1, record_id="003bad")), "Notification[0]: sObject Id"),
        (message(notification(1).replace('xsi:type="sf:Contact" ', "")), "xsi:type"),
        (message(notification(1).replace("<Id>04l", "<Id>!04l")), "Notification[0]: Id"),
    ],
)
def test_what_is_not_an_outbound_message_is_a_client_fault(
    client, setup, redis, body, words
) -> None:
    code, reason = fault_of(post(client, setup, body))
    assert code == "soapenv:Client"
    assert words in reason, reason
    assert intake.pending(redis, setup["id"]) == 0


def test_other_objects_are_acked_and_ignored(client, setup, redis, recorded) -> None:
    opportunity = to_18("006SB0000000001")
    body = message(notification(1, record_id=opportunity, sobject="Opportunity"))
    assert post(client, setup, body).get_data() == ACK
    assert recorded[0].other_objects_ignored == 1
    assert intake.pending(redis, setup["id"]) == 0


def test_a_wrong_secret_and_an_unknown_setup_answer_alike(client, setup, redis) -> None:
    body = message(notification(1))
    before = counted("unauthorized")
    wrong = post(client, setup, body, secret="wrong")
    unknown = post(client, setup, body, secret="wrong", setup_id=setup["id"] + 1000)
    too_big = post(client, setup, body, secret="wrong", setup_id=10**12)
    # The setup's own secret on another id is refused too.
    borrowed = post(client, setup, body, setup_id=setup["id"] + 1000)
    for response in (wrong, unknown, too_big, borrowed):
        code, reason = fault_of(response)
        assert code == "soapenv:Client"
        assert reason.endswith("accepts this request: unknown setup, or wrong secret")
    # Byte for byte the same answer, but for the id the request named.
    answers = {
        re.sub(rb"setup [0-9]+ ", b"setup N ", r.get_data())
        for r in (wrong, unknown, too_big, borrowed)
    }
    assert len(answers) == 1
    assert counted("unauthorized") == before + 4
    assert intake.pending(redis, setup["id"]) == 0


def test_no_secret_says_where_it_goes(client, setup) -> None:
    _, reason = fault_of(post(client, setup, message(notification(1)), secret=""))
    assert "?secret=" in reason


def test_the_secret_in_a_header_is_not_enough(client, setup) -> None:
    r = client.post(
        f"/webhooks/salesforce/{setup['id']}/outbound",
        data=message(notification(1)),
        content_type="text/xml",
        headers={"X-Webhook-Secret": setup["secret"]},
    )
    assert fault_of(r)[0] == "soapenv:Client"


def test_a_setup_without_the_outbound_door_refuses(client, setup, redis) -> None:
    with setup["store"].transaction() as session:
        row = setup_repo.get(session, setup["id"])
        assert row is not None
        row.options = {**row.options, "salesforce_changes": ["webhook"]}
    forget_setup(setup["id"])
    code, reason = fault_of(post(client, setup, message(notification(1))))
    assert code == "soapenv:Client"
    assert 'add "outbound" to its salesforce_changes' in reason
    assert intake.pending(redis, setup["id"]) == 0


def test_a_connection_without_an_org_id_cannot_check_the_sender(client, setup, redis) -> None:
    with setup["store"].transaction() as session:
        conn = connection_repo.get(session, setup["connection_id"])
        assert conn is not None
        conn.account_id = None
    forget_setup(setup["id"])
    code, reason = fault_of(post(client, setup, message(notification(1))))
    assert code == "soapenv:Server" and "no org id" in reason
    assert intake.pending(redis, setup["id"]) == 0


def test_redis_down_is_a_server_fault_so_salesforce_retries(client, setup, monkeypatch) -> None:
    def down(*_a: Any, **_k: Any) -> None:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(intake, "add_hints", down)
    code, reason = fault_of(post(client, setup, message(notification(1))))
    assert code == "soapenv:Server" and "retry" in reason


def test_an_unscheduled_flush_is_a_server_fault_and_the_retry_schedules_it(
    client, setup, redis, monkeypatch
) -> None:
    real = queue.ensure_scheduled

    def broken(*_a: Any, **_k: Any) -> None:
        raise RedisConnectionError("gone")

    monkeypatch.setattr(queue, "ensure_scheduled", broken)
    code, _ = fault_of(post(client, setup, message(notification(1))))
    assert code == "soapenv:Server"
    monkeypatch.setattr(queue, "ensure_scheduled", real)
    assert post(client, setup, message(notification(1))).get_data() == ACK
    assert queue.pending_job_id(f"flush-{setup['id']}", connection=redis) is not None


def test_the_store_down_is_a_server_fault(client, setup, monkeypatch) -> None:
    def down(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("database unavailable")

    forget_setup(setup["id"])
    monkeypatch.setattr(setup_repo, "get", down)
    code, _ = fault_of(post(client, setup, message(notification(1))))
    assert code == "soapenv:Server"


def test_a_body_over_the_limit_is_refused(app, client, setup) -> None:
    limit = app.extensions["middleware"]["settings"].webhook_max_bytes
    body = message(notification(1)) + b" " * limit
    code, reason = fault_of(post(client, setup, body))
    assert code == "soapenv:Client" and str(limit) in reason


def test_a_fault_string_is_escaped() -> None:
    body = fault("Client", "<b>&").get_data()
    assert b"<faultstring>&lt;b&gt;&amp;</faultstring>" in body
