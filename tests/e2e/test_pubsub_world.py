"""A World can serve its Salesforce org's Pub/Sub API: what a listener test builds on."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import fastavro
import grpc

from tests.e2e.harness import SF_BASE, world

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"


def test_world_serves_pubsub_for_its_org() -> None:
    sys.path.append(str(PROTO_ROOT))  # the proto's import root, only while compiling it
    try:
        pb2, services = grpc.protos_and_services("eventbus/v1/pubsub_api.proto")
    finally:
        sys.path.remove(str(PROTO_ROOT))
    with world() as w:
        _server, port = w.start_pubsub()
        org_id = w.sf_app.extensions["sf_sandbox"].config["ORG_ID"]
        metadata = (("accesstoken", w.sf_token), ("instanceurl", SF_BASE), ("tenantid", org_id))
        w.sf_create(FirstName="Ada", LastName="Lovelace", Email="ada@example.org")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = services.PubSubStub(channel)
            first = pb2.FetchRequest(
                topic_name="/data/ChangeEvents", replay_preset=pb2.EARLIEST, num_requested=1
            )
            call = stub.Subscribe(iter([first]), metadata=metadata, timeout=10)
            response = next(call)
            call.cancel()
            [event] = response.events
            info = stub.GetSchema(
                pb2.SchemaRequest(schema_id=event.event.schema_id), metadata=metadata
            )
        schema = fastavro.parse_schema(json.loads(info.schema_json))
        record = fastavro.schemaless_reader(io.BytesIO(event.event.payload), schema)
        assert isinstance(record, dict)
        assert record["ChangeEventHeader"]["changeType"] == "CREATE"
        assert record["Email"] == "ada@example.org"
        # The webhook delivery the world already had keeps working beside it.
        assert w.events and w.events[0]["data"]["payload"]["Email"] == "ada@example.org"
