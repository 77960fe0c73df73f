"""Change Data Capture events: shapes, replay, gaps, merged updates, delivery and signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from typing import Any

import pytest
from flask import Flask, request

from sandbox.adapter import in_process_session
from sandbox.salesforce.events import sign
from tests.sandbox.salesforce._sf_fakes import make_app

CONTACT = {
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "Email": "ada@example.org",
    "MailingCity": "London",
    "MailingPostalCode": "N1",
    "HasOptedOutOfEmail": False,
}


def _payload(env: dict[str, Any]) -> dict[str, Any]:
    return env["data"]["payload"]  # type: ignore[no-any-return]


@pytest.fixture
def org():
    app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    yield app, sandbox, store
    sandbox.events.close()


def test_create_event_nests_compound_fields_and_hides_system_fields(org):
    _app, sandbox, store = org
    rid = store.create("Contact", CONTACT, origin="com/salesforce/api/rest/64.0;client=ctct-sync")
    [env] = sandbox.events.replay()
    assert env["channel"] == "/data/ContactChangeEvent"
    assert len(env["data"]["schema"]) == 22
    payload = _payload(env)
    header = payload["ChangeEventHeader"]
    assert header["entityName"] == "Contact"
    assert header["recordIds"] == [rid]
    assert header["changeType"] == "CREATE"
    assert header["changeOrigin"].endswith(";client=ctct-sync")
    assert header["changedFields"] == [] and header["diffFields"] == []
    assert header["commitUser"] == sandbox.config["USER_ID"]
    assert payload["Name"] == {"Salutation": None, "FirstName": "Ada", "LastName": "Lovelace"}
    assert payload["MailingAddress"]["City"] == "London"
    assert payload["MailingAddress"]["PostalCode"] == "N1"
    assert payload["MailingAddress"]["Street"] is None
    assert payload["Email"] == "ada@example.org"
    assert payload["CreatedDate"].endswith(".000Z") or payload["CreatedDate"].endswith("Z")
    for hidden in ("Id", "IsDeleted", "SystemModstamp", "FirstName", "MailingCity"):
        assert hidden not in payload


def test_update_carries_only_changed_fields_named_by_compound(org):
    _app, sandbox, store = org
    rid = store.create("Contact", CONTACT)
    store.update("Contact", rid, {"MailingCity": "Paris", "LastName": "King", "Email": None})
    env = sandbox.events.replay()[-1]
    payload = _payload(env)
    header = payload["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE"
    assert set(header["changedFields"]) == {
        "MailingAddress.City",
        "Name.LastName",
        "Email",
        "LastModifiedDate",
    }
    assert header["nulledFields"] == ["Email"]
    assert payload["MailingAddress"] == {"City": "Paris"}
    assert payload["Name"] == {"LastName": "King"}
    assert payload["Email"] is None
    assert "LastModifiedDate" in payload
    assert "HasOptedOutOfEmail" not in payload and "CreatedDate" not in payload


def test_delete_event_has_no_fields_and_replay_ids_increase(org):
    _app, sandbox, store = org
    rid = store.create("Contact", CONTACT)
    store.delete("Contact", rid)
    create, delete = sandbox.events.replay()
    assert set(_payload(delete)) == {"ChangeEventHeader"}
    assert _payload(delete)["ChangeEventHeader"]["changeType"] == "DELETE"
    assert delete["data"]["event"]["replayId"] > create["data"]["event"]["replayId"]


def test_lead_conversion_is_one_transaction_and_lead_update_has_no_last_modified(org):
    _app, sandbox, store = org
    lead = store.create("Lead", {"LastName": "Ng", "Company": "Acme", "Email": "ng@example.org"})
    store.convert_lead(lead, origin="com/salesforce/api/rest/64.0")
    events = sandbox.events.replay()[1:]
    headers = [_payload(e)["ChangeEventHeader"] for e in events]
    assert [h["entityName"] for h in headers] == ["Account", "Contact", "Lead"]
    assert len({h["transactionKey"] for h in headers}) == 1
    assert [h["sequenceNumber"] for h in headers] == [1, 2, 3]
    assert [h["changeType"] for h in headers] == ["CREATE", "CREATE", "UPDATE"]
    lead_payload = _payload(events[-1])
    assert "LastModifiedDate" not in lead_payload
    assert "LastModifiedDate" not in headers[-1]["changedFields"]
    assert lead_payload["IsConverted"] is True
    assert lead_payload["ConvertedContactId"] == headers[1]["recordIds"][0]
    # A business Account keeps its plain Name.
    assert _payload(events[0])["Name"] == "Acme"


def test_person_account_emits_account_and_contact_events():
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync", "ORG_PROFILE": "person_accounts"})
    acc = store.create(
        "Account",
        {
            "FirstName": "Grace",
            "LastName": "Hopper",
            "PersonEmail": "grace@example.org",
            "PersonMailingCity": "Arlington",
        },
    )
    events = sandbox.events.replay()
    assert len(events) == 2
    by_channel = {e["channel"]: _payload(e) for e in events}
    assert set(by_channel) == {"/data/AccountChangeEvent", "/data/ContactChangeEvent"}
    account = by_channel["/data/AccountChangeEvent"]
    assert account["ChangeEventHeader"]["recordIds"] == [acc]
    assert account["Name"]["LastName"] == "Hopper"
    assert account["PersonMailingAddress"]["City"] == "Arlington"
    contact = by_channel["/data/ContactChangeEvent"]
    assert contact["Email"] == "grace@example.org"
    assert contact["MailingAddress"]["City"] == "Arlington"
    assert contact["Name"]["FirstName"] == "Grace"
    # A later change to a person field shows up on both channels as well.
    store.update("Account", acc, {"PersonEmail": "g.hopper@example.org"})
    later = {e["channel"]: _payload(e) for e in sandbox.events.replay()[len(events) :]}
    assert later["/data/AccountChangeEvent"]["PersonEmail"] == "g.hopper@example.org"
    assert "Email" in later["/data/ContactChangeEvent"]["ChangeEventHeader"]["changedFields"]


def test_person_account_contact_side_is_derived_when_the_store_sends_only_the_account(org):
    _app, sandbox, _store = org
    from sandbox.salesforce.store import ChangeRecord

    change = ChangeRecord(
        entity="Account",
        record_id="001SB0000000001AAA",
        change_type="CREATE",
        values={
            "FirstName": "Ada",
            "LastName": "King",
            "PersonEmail": "ada@example.org",
            "IsPersonAccount": True,
            "PersonContactId": "003SB0000000999AAA",
            "Hobby__pc": "Math",
        },
        changed_fields=[],
        nulled_fields=[],
        origin="",
        transaction_key="k1",
        sequence_number=1,
        commit_timestamp=1,
        commit_user="005SB0000000001AAA",
    )
    account, contact = sandbox.events.on_changes([change])
    assert account["channel"] == "/data/AccountChangeEvent"
    cp = _payload(contact)
    assert cp["ChangeEventHeader"]["recordIds"] == ["003SB0000000999AAA"]
    assert cp["Email"] == "ada@example.org" and cp["Hobby__c"] == "Math"
    assert cp["ChangeEventHeader"]["transactionKey"] == "k1"


def test_merged_route_emits_one_update_with_all_ids(org):
    app, _sandbox, store = org
    ids = [store.create("Contact", {**CONTACT, "Email": f"p{i}@example.org"}) for i in range(3)]
    client = app.test_client()
    resp = client.post(
        "/_sandbox/events/merged",
        json={"entity": "Contact", "ids": ids, "fields": {"HasOptedOutOfEmail": True}},
    )
    assert resp.status_code == 200
    [event] = resp.get_json()["events"]
    header = _payload(event)["ChangeEventHeader"]
    assert header["recordIds"] == ids
    assert header["changedFields"] == ["HasOptedOutOfEmail", "LastModifiedDate"]
    assert client.post("/_sandbox/events/merged", json={"entity": "Contact"}).status_code == 400


def test_gap_events_are_header_only_and_overflow_has_no_ids(org):
    app, _sandbox, _store = org
    client = app.test_client()
    resp = client.post(
        "/_sandbox/events/gap",
        json={"entity": "Contact", "change_type": "GAP_UPDATE", "ids": ["003A", "003B"]},
    )
    payload = _payload(resp.get_json())
    assert set(payload) == {"ChangeEventHeader"}
    assert payload["ChangeEventHeader"]["recordIds"] == ["003A", "003B"]
    resp = client.post(
        "/_sandbox/events/gap", json={"entity": "Lead", "change_type": "GAP_OVERFLOW"}
    )
    header = _payload(resp.get_json())["ChangeEventHeader"]
    assert header["recordIds"] == [] and header["changeType"] == "GAP_OVERFLOW"
    bad = client.post("/_sandbox/events/gap", json={"entity": "Lead", "change_type": "GAP"})
    assert bad.status_code == 400
    no_ids = client.post(
        "/_sandbox/events/gap", json={"entity": "Lead", "change_type": "GAP_CREATE"}
    )
    assert no_ids.status_code == 400


def test_replay_route_pages_and_expires_after_retention(org):
    app, sandbox, store = org
    for i in range(5):
        store.create("Contact", {"LastName": f"L{i}"})
    client = app.test_client()
    all_events = client.get("/_sandbox/events").get_json()["events"]
    ids = [e["data"]["event"]["replayId"] for e in all_events]
    assert ids == sorted(ids) and len(ids) == 5
    page = client.get(f"/_sandbox/events?after={ids[1]}&limit=2").get_json()["events"]
    assert [e["data"]["event"]["replayId"] for e in page] == ids[2:4]
    assert client.get("/_sandbox/events?after=-1").get_json()["events"] == []

    sandbox.clock.advance(73 * 3600)
    store.create("Contact", {"LastName": "Late"})
    resp = client.get(f"/_sandbox/events?after={ids[0]}")
    assert resp.status_code == 400
    assert "replayId" in resp.get_json()["error"]
    remaining = client.get("/_sandbox/events").get_json()["events"]
    assert len(remaining) == 1


def test_kept_events_are_bounded():
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync", "EVENT_MAX_KEPT": 3})
    for i in range(5):
        store.create("Contact", {"LastName": f"L{i}"})
    assert len(sandbox.events.replay()) == 3


def test_sync_sink_receives_batches_in_the_writing_thread():
    received: list[tuple[list[dict], str]] = []
    app, _sandbox, store = make_app(
        {
            "EVENT_DELIVERY": "sync",
            "EVENT_SINK": lambda batch: received.append((batch, threading.current_thread().name)),
            "EVENT_BATCH_SIZE": 2,
        }
    )
    with store.transaction():
        for i in range(5):
            store.create("Contact", {"LastName": f"L{i}"})
    assert [len(b) for b, _ in received] == [2, 2, 1]
    assert {name for _, name in received} == {threading.current_thread().name}
    log = app.test_client().get("/_sandbox/events/deliveries").get_json()["deliveries"]
    assert [d["count"] for d in log] == [2, 2, 1]
    assert all(d["status"] == "delivered" for d in log)


class Receiver:
    """A webhook endpoint in-process: records bodies and headers, answers a scripted status."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.calls: list[tuple[dict[str, str], bytes, float]] = []
        self.statuses = list(statuses or [])
        self.app = Flask("receiver")
        self.app.add_url_rule("/hook", "hook", self._hook, methods=["POST"])

    def _hook(self):  # type: ignore[no-untyped-def]
        self.calls.append((dict(request.headers), request.get_data(), time.monotonic()))
        return ("", self.statuses.pop(0) if self.statuses else 204)

    def session(self):  # type: ignore[no-untyped-def]
        return in_process_session("https://hooks.test", self.app)


def test_thread_delivery_batches_signs_and_is_recorded():
    receiver = Receiver()
    app, sandbox, store = make_app({"EVENT_HTTP": receiver.session()})
    client = app.test_client()
    resp = client.post(
        "/_sandbox/events/delivery",
        json={
            "url": "https://hooks.test/hook",
            "headers": {"X-Webhook-Secret": "s3cret"},
            "batch_size": 50,
            "hmac_secret": "whsec_" + base64.b64encode(b"key-bytes").decode(),
        },
    )
    assert resp.status_code == 200 and resp.get_json()["signed"] is True
    assert "s3cret" not in resp.get_data(as_text=True)
    with store.transaction():
        for i in range(120):
            store.create("Contact", {"LastName": f"L{i}"})
    assert sandbox.events.flush(5)
    bodies = [json.loads(body) for _, body, _ in receiver.calls]
    assert sum(len(b) for b in bodies) == 120
    assert max(len(b) for b in bodies) <= 50
    replay_ids = [e["data"]["event"]["replayId"] for b in bodies for e in b]
    assert replay_ids == sorted(replay_ids)
    headers, body, _ = receiver.calls[0]
    assert headers["X-Webhook-Secret"] == "s3cret"
    signed = f"{headers['Webhook-Id']}.{headers['Webhook-Timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(b"key-bytes", signed, hashlib.sha256).digest()).decode()
    assert headers["Webhook-Signature"] == f"v1,{expected}"
    assert len({h["Webhook-Id"] for h, _, _ in receiver.calls}) == len(receiver.calls)
    log = client.get("/_sandbox/events/deliveries").get_json()["deliveries"]
    assert [d["http_status"] for d in log] == [204] * len(receiver.calls)
    assert sum(d["count"] for d in log) == 120
    sandbox.events.close()


def test_steady_trickle_is_delivered_promptly():
    receiver = Receiver()
    _app, sandbox, store = make_app(
        {"EVENT_HTTP": receiver.session(), "EVENT_URL": "https://hooks.test/hook"}
    )
    latencies = []
    for i in range(5):
        written = time.monotonic()
        store.create("Contact", {"LastName": f"L{i}"})
        assert sandbox.events.flush(2)
        latencies.append(receiver.calls[-1][2] - written)
    # The sender waits only a few ms to fill a batch, never for a full one.
    assert max(latencies) < 0.1
    sandbox.events.close()


def test_no_retry_by_default_and_configured_retries_on_5xx():
    receiver = Receiver([500, 500, 204])
    _app, sandbox, store = make_app(
        {"EVENT_HTTP": receiver.session(), "EVENT_URL": "https://hooks.test/hook"}
    )
    store.create("Contact", {"LastName": "A"})
    assert sandbox.events.flush(2)
    assert len(receiver.calls) == 1
    assert sandbox.events.deliveries()[-1]["status"] == "failed"
    sandbox.events.close()

    slept: list[float] = []
    receiver = Receiver([503, 502, 204])
    _app, sandbox, store = make_app(
        {
            "EVENT_HTTP": receiver.session(),
            "EVENT_URL": "https://hooks.test/hook",
            "EVENT_RETRIES": 2,
            "EVENT_RETRY_DELAY": 3.0,
            "sleep": slept.append,
        }
    )
    store.create("Contact", {"LastName": "B"})
    assert sandbox.events.flush(2)
    assert [d["http_status"] for d in sandbox.events.deliveries()] == [503, 502, 204]
    assert [d["attempt"] for d in sandbox.events.deliveries()] == [1, 2, 3]
    assert slept == [3.0, 3.0]
    # All attempts of one delivery share its webhook-id, so a receiver can dedupe.
    assert len({h["Webhook-Id"] for h, _, _ in receiver.calls}) == 1
    sandbox.events.close()


def test_delivery_off_and_validation():
    receiver = Receiver()
    app, sandbox, store = make_app(
        {"EVENT_HTTP": receiver.session(), "EVENT_URL": "https://hooks.test/hook"}
    )
    client = app.test_client()
    assert client.delete("/_sandbox/events/delivery").status_code == 204
    assert client.get("/_sandbox/events/delivery").get_json()["enabled"] is False
    store.create("Contact", {"LastName": "A"})
    assert sandbox.events.flush(2)
    assert receiver.calls == []
    assert len(sandbox.events.replay()) == 1  # still kept for replay
    assert client.post("/_sandbox/events/delivery", json={"url": "ftp://x"}).status_code == 400
    bad = client.post(
        "/_sandbox/events/delivery", json={"url": "https://hooks.test/hook", "batch_size": 0}
    )
    assert bad.status_code == 400
    sandbox.events.close()


def test_platform_event_envelope(org):
    app, sandbox, _store = org
    resp = app.test_client().post(
        "/_sandbox/events/platform",
        json={"name": "Contact_Sync__e", "payload": {"Record_Id__c": "003X"}},
    )
    env = resp.get_json()
    assert env["channel"] == "/event/Contact_Sync__e"
    payload = _payload(env)
    assert payload["Record_Id__c"] == "003X"
    assert payload["CreatedById"] == sandbox.config["USER_ID"]
    assert len(payload["EventUuid"]) == 36
    assert payload["CreatedDate"].endswith("Z")
    assert env["data"]["event"]["replayId"] > 0


def test_sign_matches_standard_webhooks_with_plain_secret():
    sig = sign("plain", "msg_1", 1700000000, b'{"a":1}')
    mac = hmac.new(b"plain", b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest()
    assert sig == "v1," + base64.b64encode(mac).decode()


def test_delivery_is_replaced_at_run_time_and_unknown_keys_are_refused():
    receiver = Receiver()
    app, sandbox, store = make_app(
        {"EVENT_HTTP": receiver.session(), "EVENT_URL": "https://hooks.test/old"}
    )
    client = app.test_client()
    store.create("Contact", {"LastName": "Before"})
    assert sandbox.events.flush(2)
    put = client.put(
        "/_sandbox/events/delivery",
        json={"url": "https://hooks.test/hook", "headers": {"X-Webhook-Secret": "s3cret"}},
    )
    assert put.status_code == 200
    assert put.get_json()["url"] == "https://hooks.test/hook"
    assert put.get_json()["headers"] == ["X-Webhook-Secret"]  # names only, never values
    store.create("Contact", {"LastName": "After"})
    assert sandbox.events.flush(2)
    headers, body, _ = receiver.calls[-1]
    assert headers["X-Webhook-Secret"] == "s3cret"
    assert json.loads(body)[0]["data"]["payload"]["Name"]["LastName"] == "After"
    assert store.count("Contact") == 2  # the org is kept: no restart
    # A misspelt option is refused, never silently dropped.
    bad = client.put("/_sandbox/events/delivery", json={"url": "https://h.test", "secret": "x"})
    assert bad.status_code == 400
    assert "'secret'" in bad.get_json()["error"] and "hmac_secret" in bad.get_json()["error"]
    assert client.put("/_sandbox/events/delivery", json=["x"]).status_code == 400
    assert client.get("/_sandbox/events/delivery").get_json()["url"] == "https://hooks.test/hook"
    # Reset (POST /_sandbox/reset) goes back to the target the sandbox was started with.
    sandbox.events.reset()
    assert client.get("/_sandbox/events/delivery").get_json()["url"] == "https://hooks.test/old"
    sandbox.events.close()


def test_sandbox_events_cli_changes_delivery_of_a_running_sandbox(tmp_path):
    from click.testing import CliRunner
    from werkzeug.serving import make_server

    from sandbox import server
    from sandbox.cli import sandbox_cli

    got: list[tuple[dict[str, str], bytes]] = []
    hook = Flask("hook")

    @hook.post("/hook")
    def _hook():  # type: ignore[no-untyped-def]
        got.append((dict(request.headers), request.get_data()))
        return "", 204

    http = make_server("127.0.0.1", 0, hook, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    running = server.start(sf_port=0, cc_port=0, tls_dir=tmp_path / "tls")
    try:
        common = ["--sf-url", running.sf_url, "--ca-bundle", str(running.tls.ca_cert)]
        runner = CliRunner()
        url = f"http://127.0.0.1:{http.server_port}/hook"
        set_ = runner.invoke(
            sandbox_cli,
            ["events", "--url", url, "--header", "X-Webhook-Secret=abc", "--secret", "k", *common],
        )
        assert set_.exit_code == 0, set_.output
        assert json.loads(set_.output)["signed"] is True and "abc" not in set_.output
        running.sf.store.create("Contact", {"LastName": "Cli"})
        assert running.sf.events.flush(5)
        assert got and got[0][0]["X-Webhook-Secret"] == "abc"
        assert got[0][0]["Webhook-Signature"].startswith("v1,")
        shown = runner.invoke(sandbox_cli, ["events", *common])
        assert json.loads(shown.output)["url"] == url
        off = runner.invoke(sandbox_cli, ["events", "--off", *common])
        assert off.exit_code == 0 and "stopped" in off.output
        assert running.sf.events.target.enabled is False
        bad = runner.invoke(sandbox_cli, ["events", "--url", url, "--header", "nope", *common])
        assert bad.exit_code == 2 and "NAME=VALUE" in bad.output
        lonely = runner.invoke(sandbox_cli, ["events", "--header", "A=b", *common])
        assert lonely.exit_code == 2 and "need --url" in lonely.output
    finally:
        running.stop()
        running.sf.events.close(timeout=1)
        http.shutdown()
