"""The sandbox's Outbound Messages: what fires them, their SOAP shape, batching, Salesforce's retry
schedule on a movable clock, give-up after 24 h, duplicates, reordering, the thread sender."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element

import pytest
from defusedxml.ElementTree import fromstring
from flask import Flask, request

from sandbox.adapter import in_process_session
from sandbox.salesforce.app import create_app
from sandbox.salesforce.outbound import RetryPolicy, is_ack

HOOK = "https://hooks.test/webhooks/salesforce/1/outbound?secret=s3cret"
ENV = "{http://schemas.xmlsoap.org/soap/envelope/}"
OM = "{http://soap.sforce.com/2005/09/outbound}"
SF = "{urn:sobject.enterprise.soap.sforce.com}"
XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
ACK = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


class Endpoint:
    """A scripted receiver: records each POST, answers from `answers` (then Ack)."""

    def __init__(self, answers: list[tuple[int, bytes]] | None = None) -> None:
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []
        self.answers = list(answers or [])
        self.always: tuple[int, bytes] | None = None

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        self.posts.append((url, body, headers))
        if self.always is not None:
            return self.always
        return self.answers.pop(0) if self.answers else (200, ACK)

    def notifications(self, index: int = -1) -> list[Element]:
        return _notifications(self.posts[index][1])


def _notifications(body: bytes) -> list[Element]:
    root = fromstring(body)
    return root.findall(f"{ENV}Body/{OM}notifications/{OM}Notification")


def _record_ids(body: bytes) -> list[str]:
    return [n.findtext(f"{OM}sObject/{SF}Id") or "" for n in _notifications(body)]


@pytest.fixture
def endpoint() -> Endpoint:
    return Endpoint()


@pytest.fixture
def org(endpoint: Endpoint) -> Any:
    app = create_app({"OUTBOUND_DELIVERY": "sync", "OUTBOUND_SINK": endpoint, "OUTBOUND_SEED": 7})
    sandbox = app.extensions["sf_sandbox"]
    yield app, sandbox
    sandbox.outbound.close()


def _action(app: Flask, **spec: Any) -> dict[str, Any]:
    body = {"url": HOOK, "object": "Contact", "fields": ["Email", "LastName"], **spec}
    r = app.test_client().post("/_sandbox/outbound", json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def _state(app: Flask) -> dict[str, Any]:
    return app.test_client().get("/_sandbox/outbound").get_json()  # type: ignore[no-any-return]


def test_a_create_and_an_edit_send_the_soap_salesforce_sends(org, endpoint) -> None:
    app, sandbox = org
    action = _action(app, fields=["Email", "LastName", "HasOptedOutOfEmail"])
    record_id = sandbox.store.create("Contact", {"LastName": "Ada & co", "Email": "a@example.org"})
    sandbox.store.update("Contact", record_id, {"Email": "b@example.org"})
    assert len(endpoint.posts) == 2
    url, body, headers = endpoint.posts[0]
    assert url == HOOK
    assert headers["Content-Type"] == "text/xml; charset=utf-8" and headers["SOAPAction"] == '""'
    root = fromstring(body)
    assert root.tag == f"{ENV}Envelope"
    message = root.find(f"{ENV}Body/{OM}notifications")
    assert message is not None
    assert message.findtext(f"{OM}OrganizationId") == sandbox.config["ORG_ID"]
    assert message.findtext(f"{OM}ActionId") == action["action_id"]
    session = message.find(f"{OM}SessionId")
    assert session is not None and session.get(f"{XSI}nil") == "true"
    org15 = sandbox.config["ORG_ID"][:15]
    assert message.findtext(f"{OM}EnterpriseUrl", "").endswith(f"/services/Soap/c/66.0/{org15}")
    assert message.findtext(f"{OM}PartnerUrl", "").endswith(f"/services/Soap/u/66.0/{org15}")
    (note,) = endpoint.notifications(0)
    sobject = note.find(f"{OM}sObject")
    assert sobject is not None and sobject.get(f"{XSI}type") == "sf:Contact"
    assert [child.tag.split("}")[1] for child in sobject] == [
        "Id",
        "Email",
        "LastName",
        "HasOptedOutOfEmail",
    ]
    assert sobject.findtext(f"{SF}Id") == record_id
    assert sobject.findtext(f"{SF}LastName") == "Ada & co"
    assert sobject.findtext(f"{SF}HasOptedOutOfEmail") == "false"
    (edit,) = endpoint.notifications(1)
    assert edit.findtext(f"{OM}sObject/{SF}Email") == "b@example.org"
    ids = {n.findtext(f"{OM}Id") for i in (0, 1) for n in endpoint.notifications(i)}
    assert len(ids) == 2 and all(len(i or "") == 18 and (i or "").startswith("04l") for i in ids)
    assert _state(app)["queue"]["delivered"] == 2


def test_deletes_undeletes_and_other_objects_send_nothing(org, endpoint) -> None:
    app, sandbox = org
    record_id = sandbox.store.create("Contact", {"LastName": "Before"})
    _action(app)
    sandbox.store.delete("Contact", record_id)
    sandbox.store.undelete("Contact", record_id)
    sandbox.store.create("Lead", {"LastName": "L", "Company": "C"})
    assert endpoint.posts == []


def test_an_inactive_or_removed_action_fires_nothing(org, endpoint) -> None:
    app, sandbox = org
    _action(app, active=False)
    sandbox.store.create("Contact", {"LastName": "Quiet"})
    _action(app)
    assert app.test_client().delete("/_sandbox/outbound/Contact").status_code == 200
    sandbox.store.create("Contact", {"LastName": "Quiet"})
    assert endpoint.posts == []
    assert app.test_client().delete("/_sandbox/outbound/Contact").status_code == 404


def test_a_message_queued_before_its_action_is_removed_still_goes_out(org, endpoint) -> None:
    app, sandbox = org
    endpoint.answers = [(503, b"")]
    _action(app)
    sandbox.store.create("Contact", {"LastName": "Queued"})
    app.test_client().delete("/_sandbox/outbound")
    sandbox.clock.advance(30)
    assert sandbox.outbound.step()["delivered"] == 1
    assert len(endpoint.posts) == 2 and endpoint.posts[0][1] == endpoint.posts[1][1]


def test_notifications_go_in_messages_of_at_most_100(org, endpoint) -> None:
    app, sandbox = org
    _action(app)
    with sandbox.store.transaction():
        created = [sandbox.store.create("Contact", {"LastName": f"L{i}"}) for i in range(250)]
    assert [len(_notifications(body)) for _, body, _ in endpoint.posts] == [100, 100, 50]
    assert [i for _, body, _ in endpoint.posts for i in _record_ids(body)] == created


def test_failures_are_retried_on_salesforces_schedule_and_dropped_after_24_hours(
    org, endpoint
) -> None:
    app, sandbox = org
    endpoint.always = (503, b"down")
    _action(app)
    start = sandbox.clock.now()
    sandbox.store.create("Contact", {"LastName": "Retry"})
    while pending := [m for m in _state(app)["messages"] if m["status"] == "pending"]:
        sandbox.clock.set(datetime.fromisoformat(pending[0]["next_attempt_at"]))
        sandbox.outbound.step()
    attempts = [a["at"] for a in _state(app)["messages"][0]["attempt_log"]]
    seconds = [round((datetime.fromisoformat(at) - start).total_seconds()) for at in attempts]
    # 30 s, then doubling (1, 2, 4 ... min) up to 2 h between attempts, until 24 h have passed.
    expected = [0, 30, 90, 210, 450, 930, 1890, 3810, 7650]
    while expected[-1] + 7200 < 86400:
        expected.append(expected[-1] + 7200)
    assert seconds == expected
    assert len(endpoint.posts) == len(expected) == 19
    final = _state(app)
    assert final["messages"][0]["status"] == "dropped"
    assert final["queue"]["dropped"] == 1 and final["queue"]["pending"] == 0


def test_the_schedule_follows_the_configured_policy() -> None:
    policy = RetryPolicy(first_delay_seconds=10, max_delay_seconds=60, give_up_seconds=600)
    assert [policy.delay(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]


@pytest.mark.parametrize(
    "answer",
    [
        (200, b""),
        (204, b""),
        (200, ACK.replace(b">true<", b">false<")),
        (500, ACK),
        (200, b"<Ack>true</Ack>"),
        (200, b'<!DOCTYPE x [<!ENTITY a "b">]>' + ACK),
    ],
)
def test_anything_but_a_proper_ack_is_a_failure(org, endpoint, answer) -> None:
    app, sandbox = org
    endpoint.answers = [answer]
    _action(app)
    sandbox.store.create("Contact", {"LastName": "Ack"})
    (message,) = _state(app)["messages"]
    assert message["status"] == "pending" and message["attempts"] == 1
    sandbox.clock.advance(30)
    assert sandbox.outbound.step()["delivered"] == 1
    assert is_ack(200, ACK)


def test_a_retry_carries_the_values_at_send_time(org, endpoint) -> None:
    app, sandbox = org
    endpoint.answers = [(500, b"")]
    _action(app)
    record_id = sandbox.store.create("Contact", {"LastName": "Old", "Email": "old@example.org"})
    endpoint.always = (500, b"")
    sandbox.store.update("Contact", record_id, {"Email": "new@example.org"})
    endpoint.always = None
    sandbox.clock.advance(60)
    sandbox.outbound.step()
    emails = [
        n.findtext(f"{OM}sObject/{SF}Email")
        for _, body, _ in endpoint.posts[-2:]
        for n in _notifications(body)
    ]
    assert emails == ["new@example.org", "new@example.org"]


def test_duplicates_on_demand_repeat_the_same_notifications(org, endpoint) -> None:
    app, sandbox = org
    _action(app, duplicate_rate=1.0)
    sandbox.store.create("Contact", {"LastName": "Twice"})
    assert len(endpoint.posts) == 2
    assert endpoint.posts[0][1] == endpoint.posts[1][1]
    state = _state(app)
    assert state["queue"]["duplicates_sent"] == 1 and state["queue"]["delivered"] == 1


def test_reorder_sends_notifications_out_of_order(org, endpoint) -> None:
    app, sandbox = org
    _action(app, reorder=True)
    with sandbox.store.transaction():
        created = [sandbox.store.create("Contact", {"LastName": f"R{i}"}) for i in range(30)]
    sent = _record_ids(endpoint.posts[0][1])
    assert sorted(sent) == sorted(created) and sent != created


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"url": "ftp://x"}, "'url'"),
        ({"url": HOOK, "object": "Nope"}, "no object"),
        ({"url": HOOK, "fields": ["Nope"]}, "has no field"),
        ({"url": HOOK, "fields": ["MailingAddress"]}, "compound"),
        ({"url": HOOK, "retry": {"first_delay_seconds": 0}}, "positive"),
        ({"url": HOOK, "retry": {"first_delay_seconds": 9000}}, "more than max"),
        ({"url": HOOK, "duplicate_rate": 2}, "between 0 and 1"),
        ({"url": HOOK, "colour": "red"}, "unknown key"),
        ({"url": HOOK, "reorder": "yes"}, "true or false"),
    ],
)
def test_an_action_is_validated(org, spec, words) -> None:
    app, _sandbox = org
    r = app.test_client().post("/_sandbox/outbound", json=spec)
    assert r.status_code == 400 and words in r.get_json()["error"]


def test_actions_are_named_shown_without_secrets_and_reset(org, endpoint) -> None:
    app, sandbox = org
    first = _action(app)
    again = _action(app, fields=["Email"])
    assert again["action_id"] == first["action_id"]  # replaced, not added
    _action(app, name="Leads", object="Lead")
    state = _state(app)
    assert [a["name"] for a in state["actions"]] == ["Contact", "Leads"]
    assert "s3cret" not in json.dumps(state)
    sandbox.store.create("Lead", {"LastName": "L", "Company": "C"})
    assert len(endpoint.posts) == 1
    assert app.test_client().post("/_sandbox/reset").status_code == 204
    assert _state(app)["actions"] == [] and _state(app)["queue"]["delivered"] == 0


class Receiver:
    """An HTTP endpoint in-process that acks, or fails the first `failures` posts."""

    def __init__(self, failures: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.failures = failures
        self.app = Flask("receiver")
        self.app.add_url_rule("/webhooks/salesforce/1/outbound", "om", self._om, methods=["POST"])

    def _om(self):  # type: ignore[no-untyped-def]
        self.bodies.append(request.get_data())
        if len(self.bodies) <= self.failures:
            return "no", 500
        return ACK, 200, {"Content-Type": "text/xml"}


def test_the_thread_sender_posts_over_http_and_retries_when_the_clock_moves() -> None:
    receiver = Receiver(failures=1)
    app = create_app({"OUTBOUND_HTTP": in_process_session("https://hooks.test", receiver.app)})
    sandbox = app.extensions["sf_sandbox"]
    try:
        _action(app)
        with sandbox.store.transaction():
            for i in range(3):
                sandbox.store.create("Contact", {"LastName": f"T{i}"})
        assert sandbox.outbound.flush(5)
        assert len(receiver.bodies) == 1 and _state(app)["queue"]["pending"] == 1
        sandbox.clock.advance(30)
        r = app.test_client().post("/_sandbox/outbound/flush")
        assert r.get_json() == {"idle": True}
        assert len(receiver.bodies) == 2
        assert receiver.bodies[0] == receiver.bodies[1]
        state = _state(app)
        assert state["queue"]["delivered"] == 1 and state["queue"]["attempts"] == 2
    finally:
        sandbox.outbound.close()


def test_sandbox_outbound_cli_sets_shows_and_removes_actions(tmp_path) -> None:
    from click.testing import CliRunner

    from sandbox import server
    from sandbox.cli import sandbox_cli

    running = server.start(sf_port=0, cc_port=0, tls_dir=tmp_path / "tls")
    try:
        common = ["--sf-url", running.sf_url, "--ca-bundle", str(running.tls.ca_cert)]
        runner = CliRunner()
        set_ = runner.invoke(
            sandbox_cli,
            [
                "outbound",
                "--url",
                HOOK,
                "--field",
                "Email",
                "--first-delay",
                "5",
                "--duplicate-rate",
                "0.5",
                *common,
            ],
        )
        assert set_.exit_code == 0, set_.output
        shown = json.loads(set_.output)
        assert shown["fields"] == ["Id", "Email"] and "s3cret" not in set_.output
        assert shown["retry"]["first_delay_seconds"] == 5.0
        state = json.loads(runner.invoke(sandbox_cli, ["outbound", *common]).output)
        assert [a["name"] for a in state["actions"]] == ["Contact"]
        off = runner.invoke(sandbox_cli, ["outbound", "--off", *common])
        assert off.exit_code == 0 and json.loads(off.output) == {"removed": ["Contact"]}
        bad = runner.invoke(sandbox_cli, ["outbound", "--url", HOOK, "--field", "Nope", *common])
        assert bad.exit_code == 1 and "has no field" in bad.output
    finally:
        running.stop()
        running.sf.outbound.close(timeout=1)
