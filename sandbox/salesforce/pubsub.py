"""The Salesforce Pub/Sub API (gRPC service `eventbus.v1.PubSub`) over one sandbox org.

Transport only: what a stream sends, and when, is `pubsub_bus.PubSubBus`'s business; the
event shapes are `pubsub_schema`'s. Implemented: `GetTopic`, `GetSchema` and `Subscribe`
(Publish, PublishStream and the beta ManagedSubscribe answer UNIMPLEMENTED: change events are
published by the org, not by clients).

Every call needs Salesforce's session metadata: `accesstoken` (a token the sandbox's REST side
issued and still honours), `instanceurl`, `tenantid` (the org id); anything else is
UNAUTHENTICATED. Failures carry Salesforce's `error-code` trailer (e.g.
`sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted`) and an `rpc-id` trailer,
and their message ends with `rpcId: <id>`, as Salesforce's do.

`start_pubsub(sf_app)` serves it on a port (TLS with the sandbox CA when asked), next to the
REST app of the same org: `sandbox serve` does so on 127.0.0.1:8703, tests on a free port.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import grpc
from flask import Flask

from sandbox.salesforce import pubsub_proto
from sandbox.salesforce.pubsub_bus import (
    BusEvent,
    PubSubBus,
    PubSubError,
    Subscription,
    encode_replay,
    topic_error,
)
from sandbox.salesforce.pubsub_schema import ALL_CHANGES_TOPIC
from sandbox.tls import DEFAULT_DIR, TlsFiles, ensure_certificates

log = logging.getLogger(__name__)

pb2, pb2_grpc = pubsub_proto.load()

MAX_WORKERS = 32  # each open Subscribe stream holds one


# Generated at run time, so type checkers see Any.
_Servicer: Any = pb2_grpc.PubSubServicer


class PubSubService(_Servicer):
    """`eventbus.v1.PubSub` for one sandbox org."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.bus: PubSubBus = sandbox.pubsub

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _fail(context: grpc.ServicerContext, error: PubSubError, rpc_id: str) -> NoReturn:
        trailers = [("rpc-id", rpc_id)]
        if error.error_code:
            trailers.insert(0, ("error-code", error.error_code))
        context.set_trailing_metadata(tuple(trailers))
        context.abort(getattr(grpc.StatusCode, error.status), f"{error.message} rpcId: {rpc_id}")
        raise AssertionError("unreachable: abort raises")  # for type checkers

    def _authenticate(self, context: grpc.ServicerContext, rpc_id: str) -> None:
        metadata = {
            key.lower(): value
            for key, value in context.invocation_metadata()
            if isinstance(value, str)
        }
        try:
            self.bus.authenticate(metadata)
        except PubSubError as error:
            self._fail(context, error, rpc_id)

    @staticmethod
    def _consumer_event(event: BusEvent) -> Any:
        return pb2.ConsumerEvent(
            event=pb2.ProducerEvent(
                id=event.event_id, schema_id=event.schema_id, payload=event.payload
            ),
            replay_id=encode_replay(event.replay),
        )

    # -- RPCs ----------------------------------------------------------------------------------

    def GetTopic(self, request: Any, context: grpc.ServicerContext) -> Any:
        rpc_id = str(uuid.uuid4())
        self._authenticate(context, rpc_id)
        topic = request.topic_name
        schema_id = ""  # /data/ChangeEvents mixes schemas: each event names its own
        if topic != ALL_CHANGES_TOPIC:
            schema = self.bus.schemas.by_topic(topic)
            if schema is None:
                self._fail(context, topic_error(topic), rpc_id)
            schema_id = schema.schema_id
        return pb2.TopicInfo(
            topic_name=topic,
            tenant_guid=str(self.sandbox.config["ORG_ID"]),
            can_publish=False,
            can_subscribe=True,
            schema_id=schema_id,
            rpc_id=rpc_id,
        )

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        rpc_id = str(uuid.uuid4())
        self._authenticate(context, rpc_id)
        schema = self.bus.schemas.by_id(request.schema_id)
        if schema is None:
            error = PubSubError("NOT_FOUND", f"The schema ID {request.schema_id!r} is unknown.")
            self._fail(context, error, rpc_id)
        return pb2.SchemaInfo(
            schema_json=schema.schema_json, schema_id=schema.schema_id, rpc_id=rpc_id
        )

    def Subscribe(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        rpc_id = str(uuid.uuid4())
        self._authenticate(context, rpc_id)
        fault = self.bus.take_fault()
        if fault is not None:
            self._fail(context, fault, rpc_id)
        try:
            first = next(request_iterator)
        except (StopIteration, grpc.RpcError):
            return  # the client left before asking for anything
        try:
            sub = self.bus.subscribe(
                first.topic_name,
                pb2.ReplayPreset.Name(first.replay_preset),
                first.replay_id,
                first.num_requested,
                rpc_id,
                peer=context.peer(),
            )
        except PubSubError as error:
            self._fail(context, error, rpc_id)
        context.add_callback(lambda: self.bus.end(sub))
        threading.Thread(
            target=self._read_fetches,
            args=(request_iterator, sub),
            name=f"sf-pubsub-fetch-{rpc_id[:8]}",
            daemon=True,
        ).start()
        try:
            while True:
                try:
                    step = self.bus.next_step(sub)
                except PubSubError as error:
                    self._fail(context, error, rpc_id)
                if step is None:
                    return
                yield pb2.FetchResponse(
                    events=[self._consumer_event(e) for e in step.events],
                    latest_replay_id=encode_replay(step.latest),
                    rpc_id=rpc_id,
                    pending_num_requested=step.pending,
                )
        finally:
            self.bus.end(sub)

    def _read_fetches(self, request_iterator: Iterator[Any], sub: Subscription) -> None:
        """The client's later FetchRequests, read beside the responses (the stream is duplex)."""
        try:
            for fetch in request_iterator:
                if sub.ended:
                    return
                self.bus.fetch(sub, fetch.topic_name, fetch.num_requested)
        except grpc.RpcError:
            pass  # cancelled or reset: the call's callback ends the subscription
        except Exception:  # a reader must never take the server down
            log.exception("reading FetchRequests of %s failed", sub.rpc_id)


def start_pubsub(
    sf_app: Flask,
    port: int = 0,
    tls: bool | TlsFiles = False,
    host: str = "127.0.0.1",
    tls_dir: Path | str = DEFAULT_DIR,
    max_workers: int = MAX_WORKERS,
) -> tuple[grpc.Server, int]:
    """Serve the Pub/Sub API of `sf_app`'s org; returns the started server and its port.

    `port=0` picks a free port. `tls=True` uses the sandbox CA's server certificate (made in
    `tls_dir` if needed; clients trust `<tls_dir>/ca.pem`), or pass the `TlsFiles` to use.
    Stop it with `server.stop(grace)`; open streams end with CANCELLED.
    """
    sandbox = sf_app.extensions["sf_sandbox"]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sf-pubsub"),
        # Two sandboxes must never share a port silently (gRPC sets SO_REUSEPORT by default).
        options=[("grpc.so_reuseport", 0)],
    )
    pb2_grpc.add_PubSubServicer_to_server(PubSubService(sandbox), server)
    shown_host = f"[{host}]" if ":" in host else host
    address = f"{shown_host}:{port}"
    if tls:
        files = tls if isinstance(tls, TlsFiles) else ensure_certificates(tls_dir)
        credentials = grpc.ssl_server_credentials(
            [(files.key.read_bytes(), files.cert.read_bytes())]
        )
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
    server.start()
    sandbox.pubsub.endpoints.append(f"{shown_host}:{bound}")
    log.info("salesforce pub/sub api on %s:%d (%s)", shown_host, bound, "tls" if tls else "plain")
    return server, bound
