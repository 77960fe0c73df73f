"""The sandbox's Salesforce Pub/Sub API, seen through a plain client built from the vendor's docs.

The client below shares no code with the server: it compiles the proto itself, decodes payloads
with the Avro schema GetSchema serves (fastavro), and expands the bitmap header fields the way
Salesforce documents it (bit i of the first element = Avro field i; "<pos>-0x.." = the nested
fields of the compound field at that position).
"""

from __future__ import annotations

import io
import json
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import grpc
import pytest

from sandbox import server
from sandbox.salesforce.pubsub import start_pubsub
from sandbox.salesforce.pubsub_schema import hex_bitmap
from sandbox.tls import ensure_certificates
from tests.sandbox.salesforce.conftest import SF_BASE

PROTO_ROOT = Path(__file__).resolve().parents[3] / "proto"


def _protocol() -> tuple[Any, Any]:
    sys.path.append(str(PROTO_ROOT))  # the proto's import root, only while compiling it
    try:
        return grpc.protos_and_services("eventbus/v1/pubsub_api.proto")  # type: ignore[no-any-return]
    finally:
        sys.path.remove(str(PROTO_ROOT))


pb2, services = _protocol()

ALL = "/data/ChangeEvents"
CONTACTS = "/data/ContactChangeEvent"
BITMAP = re.compile(r"^(\d+-)?0x(?:[0-9A-F]{2})+$")


# -- the reference client ----------------------------------------------------------------------


def _named_records(schema: Any, found: dict[str, dict[str, Any]]) -> None:
    """Every named record in a schema, by short and full name (later uses refer to them)."""
    if isinstance(schema, list):
        for branch in schema:
            _named_records(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            found[schema["name"]] = schema
            found[f"{schema.get('namespace', '')}.{schema['name']}"] = schema
            for fd in schema["fields"]:
                _named_records(fd["type"], found)
        elif isinstance(schema.get("type"), dict | list):
            _named_records(schema["type"], found)


def expand_bitmaps(schema: dict[str, Any], bitmaps: list[str]) -> set[str]:
    """Salesforce's bitmap strings as field names (`Email`, `MailingAddress.City`)."""
    records: dict[str, dict[str, Any]] = {}
    _named_records(schema, records)
    fields = schema["fields"]
    names: set[str] = set()
    for item in bitmaps:
        position, _, bits = item.rpartition("-")
        value = int(bits, 16)
        if not position:
            names |= {fields[i]["name"] for i in range(value.bit_length()) if value >> i & 1}
            continue
        parent = fields[int(position)]
        branch = next(b for b in parent["type"] if b not in ("null", "string"))
        nested = records[branch] if isinstance(branch, str) else branch
        names |= {
            f"{parent['name']}.{nested['fields'][i]['name']}"
            for i in range(value.bit_length())
            if value >> i & 1
        }
    return names


class Stream:
    """One Subscribe call: FetchRequests fed from a queue, FetchResponses read on a thread."""

    def __init__(self, stub: Any, metadata: Any, first: Any) -> None:
        self._requests: queue.Queue[Any] = queue.Queue()
        self._requests.put(first)
        self.responses: queue.Queue[Any] = queue.Queue()
        self.call = stub.Subscribe(self._fetches(), metadata=metadata)
        threading.Thread(target=self._read, daemon=True).start()

    def _fetches(self) -> Iterator[Any]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for response in self.call:
                self.responses.put(response)
        except grpc.RpcError as error:
            self.responses.put(error)
        self.responses.put(None)

    def fetch(self, n: int, topic: str = "") -> None:
        self._requests.put(pb2.FetchRequest(topic_name=topic, num_requested=n))

    def next(self, timeout: float = 5.0) -> Any:
        """The next FetchResponse; raises the call's RpcError, or AssertionError on a timeout."""
        try:
            item = self.responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no FetchResponse within {timeout} s") from None
        if isinstance(item, grpc.RpcError):
            raise item
        assert item is not None, "the stream ended without a status"
        return item

    def events(self, count: int, timeout: float = 5.0) -> list[Any]:
        """The next `count` ConsumerEvents, skipping keepalives."""
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            response = self.next(max(0.01, deadline - time.monotonic()))
            out.extend(response.events)
        assert len(out) == count, f"{len(out)} events arrived, {count} requested"
        return out

    def quiet(self, seconds: float) -> None:
        """Nothing but keepalives arrives for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.responses.get(timeout=left)
            except queue.Empty:
                return
            assert item is not None and not isinstance(item, grpc.RpcError), item
            assert not item.events, f"unexpected events: {len(item.events)}"

    def error(self, timeout: float = 5.0) -> grpc.RpcError:
        """The status the server ends the call with (skipping what comes before it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.responses.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the call did not fail within {timeout} s") from None
            if isinstance(item, grpc.RpcError):
                return item
            assert item is not None, "the stream ended without an error"

    def close(self) -> None:
        self._requests.put(None)
        self.call.cancel()


class Client:
    """A Pub/Sub API client as a customer writes one: session metadata, schema cache, decode."""

    def __init__(self, channel: grpc.Channel, token: str, org_id: str) -> None:
        self.channel = channel
        self.stub = services.PubSubStub(channel)
        self.metadata: tuple[tuple[str, str], ...] = (
            ("accesstoken", token),
            ("instanceurl", SF_BASE),
            ("tenantid", org_id),
        )
        self.schemas: dict[str, dict[str, Any]] = {}
        self.streams: list[Stream] = []

    def topic(self, name: str) -> Any:
        return self.stub.GetTopic(pb2.TopicRequest(topic_name=name), metadata=self.metadata)

    def schema(self, schema_id: str) -> dict[str, Any]:
        if schema_id not in self.schemas:
            info = self.stub.GetSchema(
                pb2.SchemaRequest(schema_id=schema_id), metadata=self.metadata
            )
            assert info.schema_id == schema_id
            self.schemas[schema_id] = json.loads(info.schema_json)
        return self.schemas[schema_id]

    def decode(self, consumer_event: Any) -> dict[str, Any]:
        """The event's Avro payload as a dict, header bitmaps expanded to field-name sets."""
        schema = self.schema(consumer_event.event.schema_id)
        record = fastavro.schemaless_reader(
            io.BytesIO(consumer_event.event.payload), fastavro.parse_schema(schema)
        )
        assert isinstance(record, dict)
        header = record["ChangeEventHeader"]
        for key in ("changedFields", "nulledFields", "diffFields"):
            assert all(BITMAP.match(b) for b in header[key]), header[key]
            header[f"{key}_names"] = expand_bitmaps(schema, header[key])
        return record

    def subscribe(
        self,
        topic: str = CONTACTS,
        preset: int = 0,
        replay_id: bytes = b"",
        num_requested: int = 10,
    ) -> Stream:
        first = pb2.FetchRequest(
            topic_name=topic,
            replay_preset=preset,
            replay_id=replay_id,
            num_requested=num_requested,
        )
        stream = Stream(self.stub, self.metadata, first)
        self.streams.append(stream)
        return stream


def trailers(error: grpc.RpcError) -> dict[str, str]:
    return {k: v for k, v in (error.trailing_metadata() or ())}  # type: ignore[attr-defined]


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def sf_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The org's config; parametrize indirectly to change it (e.g. a person-account org)."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def pubsub(sf_app: Any) -> Iterator[int]:
    grpc_server, port = start_pubsub(sf_app)
    yield port
    grpc_server.stop(grace=None)


@pytest.fixture
def client(pubsub: int, sf_sandbox: Any, sf_token: str) -> Iterator[Client]:
    channel = grpc.insecure_channel(f"127.0.0.1:{pubsub}")
    c = Client(channel, sf_token, sf_sandbox.config["ORG_ID"])
    yield c
    for stream in c.streams:
        stream.close()
    channel.close()


@pytest.fixture
def ui(sf_session: Any) -> Any:
    """Writes as a user in the org's UI (the control routes), which make change events."""

    class UI:
        def create(self, sobject: str, **values: Any) -> str:
            r = sf_session.post(f"{SF_BASE}/_sandbox/records/{sobject}", json=values)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        def update(self, sobject: str, record_id: str, **values: Any) -> None:
            r = sf_session.patch(f"{SF_BASE}/_sandbox/records/{sobject}/{record_id}", json=values)
            assert r.status_code == 200, r.text

        def delete(self, sobject: str, record_id: str) -> None:
            r = sf_session.delete(f"{SF_BASE}/_sandbox/records/{sobject}/{record_id}")
            assert r.status_code == 204, r.text

        def undelete(self, sobject: str, record_id: str) -> None:
            r = sf_session.post(f"{SF_BASE}/_sandbox/records/{sobject}/{record_id}/undelete")
            assert r.status_code == 200, r.text

        def control(self, method: str, path: str, **body: Any) -> Any:
            r = sf_session.request(method, f"{SF_BASE}/_sandbox/pubsub/{path}", json=body or None)
            assert r.status_code < 300, r.text
            return r.json() if r.content else None

    return UI()


def _contact(ui: Any, **extra: Any) -> str:
    values = {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Email": "ada@example.org",
        "MailingCity": "London",
        "Title": "Countess",
        **extra,
    }
    return str(ui.create("Contact", **values))


def _open(client: Client, ui: Any, *args: Any, **kwargs: Any) -> Stream:
    """Subscribe and wait until the server holds the stream (a LATEST stream starts there)."""
    before = {s["rpc_id"] for s in ui.control("GET", "state")["subscribers"]}
    stream = client.subscribe(*args, **kwargs)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if {s["rpc_id"] for s in ui.control("GET", "state")["subscribers"]} - before:
            return stream
        time.sleep(0.01)
    raise AssertionError("the subscription never opened")


def _latest(ui: Any) -> bytes:
    return bytes.fromhex(ui.control("GET", "state")["latest_replay_id"])


# -- topics and schemas ------------------------------------------------------------------------


def test_topics_and_change_event_schema(client: Client, sf_sandbox: Any) -> None:
    for name in ("Contact", "Lead", "Account", "Campaign", "CampaignMember"):
        topic = client.topic(f"/data/{name}ChangeEvent")
        assert topic.topic_name == f"/data/{name}ChangeEvent"
        assert topic.tenant_guid == sf_sandbox.config["ORG_ID"]
        assert topic.can_subscribe and not topic.can_publish
        assert len(topic.schema_id) == 22 and topic.rpc_id
    assert client.topic(ALL).schema_id == ""  # a mixed channel: every event names its schema

    schema = client.schema(client.topic(CONTACTS).schema_id)
    assert (schema["name"], schema["namespace"]) == ("ContactChangeEvent", "com.sforce.eventbus")
    header = schema["fields"][0]
    assert header["name"] == "ChangeEventHeader"
    assert [
        (f["name"], f["type"] if isinstance(f["type"], str) else f["type"]["type"])
        for f in header["type"]["fields"]
    ] == [
        ("entityName", "string"),
        ("recordIds", "array"),
        ("changeType", "enum"),
        ("changeOrigin", "string"),
        ("transactionKey", "string"),
        ("sequenceNumber", "int"),
        ("commitTimestamp", "long"),
        ("commitNumber", "long"),
        ("commitUser", "string"),
        ("nulledFields", "array"),
        ("diffFields", "array"),
        ("changedFields", "array"),
    ]
    assert "GAP_OVERFLOW" in header["type"]["fields"][2]["type"]["symbols"]
    names = [f["name"] for f in schema["fields"]]
    # Compound fields stand where their parts stood, nested; the flat parts are gone.
    assert names[:6] == [
        "ChangeEventHeader",
        "MasterRecordId",
        "AccountId",
        "Name",
        "OtherAddress",
        "MailingAddress",
    ]
    for hidden in ("Id", "IsDeleted", "SystemModstamp", "FirstName", "MailingCity"):
        assert hidden not in names
    for fd in schema["fields"][1:]:
        assert fd["type"][0] == "null" and fd["default"] is None
    name = schema["fields"][3]["type"][1]
    assert [f["name"] for f in name["fields"]] == ["Salutation", "FirstName", "LastName"]
    other, mailing = schema["fields"][4]["type"][1], schema["fields"][5]["type"][1]
    assert [f["name"] for f in other["fields"]][:5] == [
        "Street",
        "City",
        "State",
        "PostalCode",
        "Country",
    ]
    assert mailing == "com.sforce.eventbus.Address"  # a named type is defined once
    by_name = {f["name"]: f["type"][1] for f in schema["fields"][1:]}
    assert by_name["CreatedDate"] == "long" and by_name["Birthdate"] == "long"
    assert by_name["HasOptedOutOfEmail"] == "boolean"

    campaign = client.schema(client.topic("/data/CampaignChangeEvent").schema_id)
    assert "NumberOfContacts" not in [f["name"] for f in campaign["fields"]]  # formulas: never


def test_unknown_topics_and_schemas_are_not_found(client: Client) -> None:
    for topic in ("/data/NoSuchChangeEvent", "/data/TaskChangeEvent", "/data/contactchangeevent"):
        with pytest.raises(grpc.RpcError) as caught:
            client.topic(topic)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as caught:
        client.schema("AAAAAAAAAAAAAAAAAAAAAA")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    stream = client.subscribe("/data/NoSuchChangeEvent")
    assert stream.error().code() == grpc.StatusCode.NOT_FOUND


# -- events as Pub/Sub delivers them -----------------------------------------------------------


def test_create_update_delete_undelete_as_avro_with_bitmaps(client: Client, ui: Any) -> None:
    stream = _open(client, ui, CONTACTS, num_requested=10)
    contact = _contact(ui, Birthdate="1815-12-10")
    ui.update("Contact", contact, Email="ada@lovelace.org", MailingCity="Marylebone", Title=None)
    ui.delete("Contact", contact)
    ui.undelete("Contact", contact)
    events = stream.events(4)
    replay_ids = [e.replay_id for e in events]
    assert all(len(r) == 8 for r in replay_ids) and replay_ids == sorted(set(replay_ids))
    assert all(uuid.UUID(e.event.id) for e in events)
    created, updated, deleted, undeleted = (client.decode(e) for e in events)

    header = created["ChangeEventHeader"]
    assert (header["entityName"], header["recordIds"], header["changeType"]) == (
        "Contact",
        [contact],
        "CREATE",
    )
    assert header["changedFields"] == [] and header["nulledFields"] == []
    assert header["changeOrigin"] == ""  # a UI edit outside Lightning
    assert created["Email"] == "ada@example.org" and created["Title"] == "Countess"
    assert created["Name"] == {"Salutation": None, "FirstName": "Ada", "LastName": "Lovelace"}
    assert created["MailingAddress"]["City"] == "London"
    assert created["MailingAddress"]["Street"] is None
    assert created["Birthdate"] == -4861728000000  # 1815-12-10T00:00Z in epoch milliseconds
    assert isinstance(created["CreatedDate"], int)
    assert abs(created["CreatedDate"] - header["commitTimestamp"]) < 1000
    assert created["Phone"] is None and created["HasOptedOutOfEmail"] is False

    header = updated["ChangeEventHeader"]
    assert header["changeType"] == "UPDATE" and header["recordIds"] == [contact]
    assert header["changedFields_names"] == {
        "Email",
        "Title",
        "LastModifiedDate",
        "MailingAddress.City",
    }
    assert header["nulledFields_names"] == {"Title"}
    assert header["diffFields"] == []
    assert header["changedFields"][0].startswith("0x")  # non-compound fields first
    assert any(b.startswith(f"{5}-") for b in header["changedFields"])  # MailingAddress's parts
    assert updated["Email"] == "ada@lovelace.org"  # the email change, old address not sent
    assert updated["MailingAddress"]["City"] == "Marylebone"
    assert updated["Title"] is None
    assert updated["Name"] is None and updated["HasOptedOutOfEmail"] is None  # unchanged: null
    assert isinstance(updated["LastModifiedDate"], int)

    header = deleted["ChangeEventHeader"]
    assert (header["changeType"], header["recordIds"]) == ("DELETE", [contact])
    assert all(v is None for k, v in deleted.items() if k != "ChangeEventHeader")

    assert undeleted["ChangeEventHeader"]["changeType"] == "UNDELETE"
    assert undeleted["Email"] == "ada@lovelace.org"
    assert undeleted["Name"]["LastName"] == "Lovelace"


def test_bitmap_strings_are_salesforces(client: Client, ui: Any) -> None:
    # The documented example: bits 5, 6, 7, 10, 24, 26, 29, 30 -> '0x650004E0'.
    assert hex_bitmap({5, 6, 7, 10, 24, 26, 29, 30}) == "0x650004E0"
    assert hex_bitmap({4}) == "0x10" and hex_bitmap({1, 2}) == "0x06"
    stream = _open(client, ui, CONTACTS)
    contact = _contact(ui)
    ui.update("Contact", contact, FirstName="Augusta", MailingCity=None)
    _, updated = (client.decode(e) for e in stream.events(2))
    header = updated["ChangeEventHeader"]
    schema = client.schema(client.topic(CONTACTS).schema_id)
    names = [f["name"] for f in schema["fields"]]
    top = 1 << names.index("LastModifiedDate")
    assert header["changedFields"] == [
        hex_bitmap({names.index("LastModifiedDate")}),
        f"{names.index('Name')}-0x02",  # Name.FirstName: the second part
        f"{names.index('MailingAddress')}-0x02",  # MailingAddress.City
    ]
    assert int(header["changedFields"][0], 16) == top
    # Only compound parts were nulled: no top-level element.
    assert header["nulledFields"] == [f"{names.index('MailingAddress')}-0x02"]
    assert header["nulledFields_names"] == {"MailingAddress.City"}


def test_all_change_events_channel_carries_every_entity(client: Client, ui: Any) -> None:
    stream = _open(client, ui, ALL, num_requested=20)
    contact = _contact(ui)
    lead = ui.create("Lead", LastName="Byron", Company="Newstead", Email="byron@example.org")
    account = ui.create("Account", Name="Analytical Engines Ltd", BillingCity="London")
    campaign = ui.create("Campaign", Name="Spring appeal", IsActive=True)
    member = ui.create("CampaignMember", CampaignId=campaign, ContactId=contact)
    decoded = [client.decode(e) for e in stream.events(5)]
    seen = {
        (d["ChangeEventHeader"]["entityName"], d["ChangeEventHeader"]["recordIds"][0])
        for d in decoded
    }
    assert seen == {
        ("Contact", contact),
        ("Lead", lead),
        ("Account", account),
        ("Campaign", campaign),
        ("CampaignMember", member),
    }
    assert len(client.schemas) == 5  # one schema per entity, each event names its own
    by_entity = {d["ChangeEventHeader"]["entityName"]: d for d in decoded}
    assert by_entity["Lead"]["Name"]["LastName"] == "Byron"
    assert by_entity["Lead"]["Company"] == "Newstead"
    assert by_entity["Account"]["Name"] == "Analytical Engines Ltd"
    assert by_entity["Account"]["BillingAddress"]["City"] == "London"
    assert by_entity["CampaignMember"]["ContactId"] == contact


def test_gap_events_carry_the_header_only(client: Client, ui: Any, sf_session: Any) -> None:
    stream = _open(client, ui, CONTACTS)
    contact = _contact(ui)
    for change_type, ids in (("GAP_UPDATE", [contact]), ("GAP_OVERFLOW", [])):
        r = sf_session.post(
            f"{SF_BASE}/_sandbox/events/gap",
            json={"entity": "Contact", "change_type": change_type, "ids": ids},
        )
        assert r.status_code == 200, r.text
    _, gap, overflow = (client.decode(e) for e in stream.events(3))
    assert gap["ChangeEventHeader"]["changeType"] == "GAP_UPDATE"
    assert gap["ChangeEventHeader"]["recordIds"] == [contact]
    assert overflow["ChangeEventHeader"]["changeType"] == "GAP_OVERFLOW"
    assert overflow["ChangeEventHeader"]["recordIds"] == []
    for event in (gap, overflow):
        assert all(v is None for k, v in event.items() if k != "ChangeEventHeader")


@pytest.mark.parametrize("sf_config", [{"ORG_PROFILE": "person_accounts"}], indirect=True)
def test_person_account_name_is_switchable(client: Client, ui: Any) -> None:
    stream = _open(client, ui, "/data/AccountChangeEvent")
    ui.create("Account", Name="Acme")
    ui.create("Account", FirstName="Mary", LastName="Somerville", PersonEmail="mary@example.org")
    business, person = (client.decode(e) for e in stream.events(2))
    assert business["Name"] == "Acme"
    assert person["Name"] == {"Salutation": None, "FirstName": "Mary", "LastName": "Somerville"}
    assert person["PersonEmail"] == "mary@example.org" and person["IsPersonAccount"] is True


# -- replay ------------------------------------------------------------------------------------


def test_replay_presets(client: Client, ui: Any) -> None:
    first = _contact(ui, Email="one@example.org")
    second = _contact(ui, Email="two@example.org")
    third = _contact(ui, Email="three@example.org")

    earliest = _open(client, ui, CONTACTS, preset=pb2.EARLIEST)
    events = earliest.events(3)
    assert [client.decode(e)["ChangeEventHeader"]["recordIds"] for e in events] == [
        [first],
        [second],
        [third],
    ]

    latest = _open(client, ui, CONTACTS, preset=pb2.LATEST)
    custom = _open(client, ui, CONTACTS, preset=pb2.CUSTOM, replay_id=events[0].replay_id)
    after_first = custom.events(2)
    assert [e.replay_id for e in after_first] == [e.replay_id for e in events[1:]]
    latest.quiet(0.3)  # LATEST: only what happens from now on
    fourth = _contact(ui, Email="four@example.org")
    [new] = latest.events(1)
    assert client.decode(new)["ChangeEventHeader"]["recordIds"] == [fourth]
    assert client.decode(custom.events(1)[0])["ChangeEventHeader"]["recordIds"] == [fourth]


def test_replay_option_counts_only_in_the_first_request(client: Client, ui: Any) -> None:
    _contact(ui)
    stream = _open(client, ui, CONTACTS, preset=pb2.LATEST, num_requested=1)
    stream.quiet(0.2)
    # A later request asking for EARLIEST is only more capacity, never a rewind.
    stream._requests.put(pb2.FetchRequest(replay_preset=pb2.EARLIEST, num_requested=1))
    stream.quiet(0.3)


@pytest.mark.parametrize(
    ("replay_id", "error_code"),
    [
        ((987654).to_bytes(8, "big"), "fetch.replayid.corrupted"),  # never issued
        (b"\x01\x02\x03", "fetch.replayid.corrupted"),  # not a replay id at all
        (b"", "fetch.replayid.validation.failed"),  # CUSTOM without one
    ],
)
def test_invalid_replay_id(client: Client, ui: Any, replay_id: bytes, error_code: str) -> None:
    _contact(ui)
    error = client.subscribe(CONTACTS, preset=pb2.CUSTOM, replay_id=replay_id).error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("The Replay ID validation failed.")
    assert "rpcId: " in error.details()
    found = trailers(error)
    assert found["error-code"] == f"sfdc.platform.eventbus.grpc.subscription.{error_code}"
    assert found["rpc-id"] in error.details()


def test_retention_expires_events_and_their_replay_ids(client: Client, ui: Any) -> None:
    _contact(ui)
    old = _open(client, ui, CONTACTS, preset=pb2.EARLIEST).events(1)[0].replay_id
    _contact(ui, Email="second@example.org")
    tip = _latest(ui)

    advanced = ui.control("POST", "retention/advance", hours=73)
    assert advanced == {"expired": 2, "events_retained": 0}
    error = client.subscribe(CONTACTS, preset=pb2.CUSTOM, replay_id=old).error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailers(error)["error-code"].endswith("fetch.replayid.corrupted")
    _open(client, ui, CONTACTS, preset=pb2.EARLIEST).quiet(0.3)  # nothing left to replay
    # The latest position stays valid (as a keepalive's replay id must), with nothing after it.
    resumed = _open(client, ui, CONTACTS, preset=pb2.CUSTOM, replay_id=tip)
    fresh = _contact(ui, Email="third@example.org")
    assert client.decode(resumed.events(1)[0])["ChangeEventHeader"]["recordIds"] == [fresh]


def test_retention_follows_the_sandbox_clock(
    client: Client, ui: Any, sf_clock: Any, sf_session: Any
) -> None:
    _contact(ui)
    _contact(ui, Email="second@example.org")
    old = _open(client, ui, CONTACTS, preset=pb2.EARLIEST).events(2)[0].replay_id
    assert ui.control("GET", "state")["events_retained"] == 2
    sf_clock.advance(72 * 3600 + 1)
    assert ui.control("GET", "state")["events_retained"] == 0
    fresh = sf_session.post(f"{SF_BASE}/_sandbox/tokens").json()["access_token"]  # 72 h later
    client.metadata = (("accesstoken", fresh), *client.metadata[1:])
    error = client.subscribe(CONTACTS, preset=pb2.CUSTOM, replay_id=old).error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- flow control, keepalive, idle close -------------------------------------------------------


def test_never_more_events_than_requested(client: Client, ui: Any) -> None:
    for i in range(5):
        _contact(ui, Email=f"p{i}@example.org")
    stream = _open(client, ui, CONTACTS, preset=pb2.EARLIEST, num_requested=2)
    response = stream.next()
    assert len(response.events) == 2 and response.pending_num_requested == 0
    assert response.latest_replay_id == response.events[-1].replay_id
    stream.quiet(0.4)  # three more are waiting, none requested
    stream.fetch(2)
    assert len(stream.events(2)) == 2
    stream.quiet(0.3)
    stream.fetch(150)  # more than 100 counts as 100
    response = stream.next()
    assert len(response.events) == 1 and response.pending_num_requested == 99
    state = ui.control("GET", "state")
    [sub] = state["subscribers"]
    assert (sub["topic"], sub["pending"], sub["delivered"]) == (CONTACTS, 99, 5)


def test_keepalive_carries_the_latest_replay_id(client: Client, ui: Any) -> None:
    _contact(ui)
    ui.control("PUT", "settings", keepalive_seconds=0.3)
    stream = _open(client, ui, CONTACTS, num_requested=5)
    started = time.monotonic()
    keepalive = stream.next(timeout=3)
    assert 0.2 < time.monotonic() - started < 2.5
    assert list(keepalive.events) == [] and keepalive.pending_num_requested == 5
    assert keepalive.latest_replay_id == _latest(ui) and keepalive.rpc_id
    assert len(stream.next(timeout=3).events) == 0  # and again, while nothing happens
    # The keepalive's replay id is a valid place to resume from.
    resumed = _open(client, ui, CONTACTS, preset=pb2.CUSTOM, replay_id=keepalive.latest_replay_id)
    new = _contact(ui, Email="later@example.org")
    assert client.decode(resumed.events(1)[0])["ChangeEventHeader"]["recordIds"] == [new]


def test_stream_closes_when_nothing_is_requested(client: Client, ui: Any) -> None:
    ui.control("PUT", "settings", idle_close_seconds=0.5, keepalive_seconds=0.2)
    waiting = _open(client, ui, CONTACTS, num_requested=1)
    stream = _open(client, ui, CONTACTS, num_requested=1)
    _contact(ui)
    waiting.events(1)
    waiting.fetch(1)  # asks for more in time: stays open
    stream.events(1)
    started = time.monotonic()
    error = stream.error(timeout=5)
    assert 0.3 < time.monotonic() - started < 4
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "RST_STREAM" in error.details()
    assert len(waiting.next(timeout=3).events) == 0  # a keepalive, not an error


# -- auth --------------------------------------------------------------------------------------


def test_session_metadata_is_required(client: Client, sf_session: Any, ui: Any) -> None:
    good = client.metadata
    for metadata in (
        (("accesstoken", "00DSB0000000001!bogus"), *good[1:]),
        good[:2],  # no tenantid
        (good[0], good[2]),  # no instanceurl
        (good[0], good[1], ("tenantid", "00D000000000001AAA")),  # another org
        (),
    ):
        client.metadata = metadata
        with pytest.raises(grpc.RpcError) as caught:
            client.topic(CONTACTS)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert trailers(caught.value)["error-code"] == (
            "sfdc.platform.eventbus.grpc.service.auth.error"
        )
        error = client.subscribe(CONTACTS).error()
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    client.metadata = (*good[:2], ("tenantid", good[2][1][:15]))  # the 15-character org id
    assert client.topic(CONTACTS).schema_id
    expired = sf_session.post(f"{SF_BASE}/_sandbox/tokens/expire")
    assert expired.status_code == 200
    error = client.subscribe(CONTACTS).error()
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


# -- faults and read-back ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_code"),
    [
        ("UNAUTHENTICATED", "sfdc.platform.eventbus.grpc.service.auth.error"),
        ("RESOURCE_EXHAUSTED", "sfdc.platform.eventbus.grpc.concurrent.client.limit.exceeded"),
        ("INVALID_ARGUMENT", "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"),
        ("UNAVAILABLE", "sfdc.platform.eventbus.grpc.service.unavailable"),
    ],
)
def test_next_subscribe_fails_on_demand(
    client: Client, ui: Any, status: str, error_code: str
) -> None:
    fault = ui.control("POST", "faults", status=status, count=2)
    assert fault["error_code"] == error_code
    for _ in range(2):
        error = client.subscribe(CONTACTS).error()
        assert error.code() == getattr(grpc.StatusCode, status)
        assert trailers(error)["error-code"] == error_code
    assert ui.control("GET", "faults") == {"faults": []}
    stream = _open(client, ui, CONTACTS)
    _contact(ui)
    assert len(stream.events(1)) == 1


def test_disconnect_resets_every_stream(client: Client, ui: Any) -> None:
    streams = [_open(client, ui, CONTACTS), _open(client, ui, ALL)]
    deadline = time.monotonic() + 5
    while len(ui.control("GET", "state")["subscribers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ui.control("POST", "disconnect") == {"closed": 2}
    for stream in streams:
        error = stream.error()
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "RST_STREAM" in error.details()
    deadline = time.monotonic() + 5
    while ui.control("GET", "state")["subscribers"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ui.control("GET", "state")["subscribers"] == []


def test_undecodable_payload_is_delivered_like_any_event(client: Client, ui: Any) -> None:
    stream = _open(client, ui, CONTACTS)
    published = ui.control("POST", "undecodable", entity="Contact")
    [bad] = stream.events(1)
    assert bad.replay_id.hex() == published["replay_id"]
    assert bad.event.schema_id == client.topic(CONTACTS).schema_id
    with pytest.raises(Exception):  # noqa: B017 - whatever the Avro reader raises
        client.decode(bad)
    contact = _contact(ui)
    assert client.decode(stream.events(1)[0])["ChangeEventHeader"]["recordIds"] == [contact]


def test_settings_apply_to_open_streams(client: Client, ui: Any) -> None:
    stream = _open(client, ui, CONTACTS)
    stream.quiet(0.3)  # keepalive at 270 s: nothing yet
    settings = ui.control("PUT", "settings", keepalive_seconds=0.2)
    assert settings["keepalive_seconds"] == 0.2 and settings["max_pending"] == 100
    assert list(stream.next(timeout=3).events) == []


def test_state_reads_the_bus_back(client: Client, ui: Any) -> None:
    stream = _open(client, ui, ALL, num_requested=3)
    _contact(ui)
    ui.create("Lead", LastName="Byron", Company="Newstead")
    events = stream.events(2)
    state = ui.control("GET", "state")
    assert state["events_retained"] == 2
    assert state["latest_replay_id"] == events[-1].replay_id.hex()
    assert state["earliest_replay_id"] == events[0].replay_id.hex()
    [sub] = state["subscribers"]
    assert (sub["topic"], sub["pending"], sub["delivered"], sub["requested"]) == (ALL, 1, 2, 3)
    assert state["endpoints"] and "/data/LeadChangeEvent" in state["topics"]
    listed = ui.control("GET", "events")["events"]
    assert [e["change_type"] for e in listed] == ["CREATE", "CREATE"]
    assert [e["entity"] for e in listed] == ["Contact", "Lead"]


def test_two_subscribers_each_get_their_events(client: Client, ui: Any) -> None:
    contacts = _open(client, ui, CONTACTS)
    everything = _open(client, ui, ALL)
    contact = _contact(ui)
    lead = ui.create("Lead", LastName="Byron", Company="Newstead")
    [only] = contacts.events(1)
    both = everything.events(2)
    assert client.decode(only)["ChangeEventHeader"]["recordIds"] == [contact]
    assert [client.decode(e)["ChangeEventHeader"]["recordIds"] for e in both] == [[contact], [lead]]
    assert only.replay_id == both[0].replay_id  # one bus, one position per event
    contacts.quiet(0.2)


def test_a_later_request_for_another_topic_fails_the_stream(client: Client, ui: Any) -> None:
    stream = _open(client, ui, CONTACTS, num_requested=1)
    stream.fetch(1, topic="/data/LeadChangeEvent")
    assert stream.error().code() == grpc.StatusCode.INVALID_ARGUMENT


def test_first_request_must_ask_for_events(client: Client) -> None:
    error = client.subscribe(CONTACTS, num_requested=0).error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_with_the_sandbox_ca(sf_app: Any, sf_sandbox: Any, sf_token: str, tmp_path) -> None:
    files = ensure_certificates(tmp_path / "tls")
    grpc_server, port = start_pubsub(sf_app, tls=files)
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=files.ca_cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            client = Client(channel, sf_token, sf_sandbox.config["ORG_ID"])
            assert client.topic(CONTACTS).schema_id
    finally:
        grpc_server.stop(grace=None)


def test_sandbox_server_serves_pubsub_beside_rest(tmp_path) -> None:
    running = server.start(sf_port=0, cc_port=0, pubsub_port=0, tls_dir=tmp_path / "tls")
    try:
        assert running.pubsub_target and running.pubsub_target.startswith("127.0.0.1:")
        token = running.sf.auth.issue().access_token
        credentials = grpc.ssl_channel_credentials(
            root_certificates=running.tls.ca_cert.read_bytes()
        )
        with grpc.secure_channel(running.pubsub_target, credentials) as channel:
            client = Client(channel, token, running.sf.config["ORG_ID"])
            assert client.topic(CONTACTS).schema_id
        port = int(running.pubsub_target.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError):  # never two sandboxes on one port
            server.start(sf_port=0, cc_port=0, pubsub_port=port, tls_dir=tmp_path / "tls")
    finally:
        running.stop()
