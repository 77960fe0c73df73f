"""A Pub/Sub API server for the listener's tests: the real protocol (grpc + the vendor proto),
with just enough of Salesforce's behaviour to be steered from a test.

- topics with an Avro schema each; events published into a per-topic log with growing,
  non-contiguous replay ids (8 bytes, big-endian, as Salesforce's clients read them);
- auth: every call's `accesstoken` metadata must be one of `valid_tokens` (UNAUTHENTICATED);
- Subscribe honours the first request's preset (LATEST / EARLIEST / CUSTOM after a replay id;
  an id before `retained_from`, or unknown, fails INVALID_ARGUMENT with Salesforce's
  `error-code` trailer), delivers no more events than requested, reports
  `pending_num_requested`, and sends an empty keepalive carrying the latest replay id every
  `keepalive_seconds`;
- `faults`: statuses the next Subscribe calls fail with; `close_after`: end a stream with
  UNAVAILABLE (RST_STREAM) after that many events, as Salesforce does now and then.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from middleware.salesforce import pubsub_proto

pb2, services = pubsub_proto.load()

REPLAY_STEP = 7  # replay ids are not contiguous


def replay_bytes(number: int) -> bytes:
    return number.to_bytes(8, "big")


@dataclass
class Fault:
    status: grpc.StatusCode
    details: str
    error_code: str = ""


@dataclass
class Topic:
    schema_id: str
    origin: int  # the position before its first event (a valid replay id, the empty tip)
    events: list[tuple[int, str, bytes]] = field(default_factory=list)  # replay, schema, payload


@dataclass
class SubscribeLog:
    """What one Subscribe call asked for."""

    metadata: dict[str, str]
    topic: str = ""
    preset: str = ""
    replay_id: int | None = None
    num_requested: list[int] = field(default_factory=list)
    delivered: int = 0


class FakePubSub(services.PubSubServicer):  # type: ignore[misc,name-defined]
    def __init__(self, *, keepalive_seconds: float = 0.2, max_batch: int = 100) -> None:
        self.cond = threading.Condition()
        self.topics: dict[str, Topic] = {}
        self.schemas: dict[str, str] = {}
        self.valid_tokens: set[str] = {"token-1"}
        self.retained_from = 0
        self.faults: list[Fault] = []
        self.close_after: int | None = None
        self.keepalive_seconds = keepalive_seconds
        self.max_batch = max_batch
        self.subscribes: list[SubscribeLog] = []
        self.schema_requests: list[str] = []
        self.max_pending_seen = 0
        self._next_replay = 100
        self._stopping = False

    # -- steering -------------------------------------------------------------------------------

    def add_topic(self, name: str, schema_id: str, schema: dict[str, Any]) -> None:
        with self.cond:
            self.topics[name] = Topic(schema_id, self._next_replay)
            self.schemas[schema_id] = json.dumps(schema)

    def publish(self, name: str, payload: bytes, schema_id: str | None = None) -> int:
        with self.cond:
            topic = self.topics[name]
            self._next_replay += REPLAY_STEP
            topic.events.append((self._next_replay, schema_id or topic.schema_id, payload))
            self.cond.notify_all()
            return self._next_replay

    def tip(self, name: str) -> int:
        with self.cond:
            topic = self.topics[name]
            return topic.events[-1][0] if topic.events else topic.origin

    def fail_next(self, status: grpc.StatusCode, details: str, error_code: str = "") -> None:
        with self.cond:
            self.faults.append(Fault(status, details, error_code))

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()

    # -- the service ----------------------------------------------------------------------------

    def _authenticate(self, context: grpc.ServicerContext) -> dict[str, str]:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        if metadata.get("accesstoken") not in self.valid_tokens:
            context.set_trailing_metadata(
                (("error-code", "sfdc.platform.eventbus.grpc.service.auth.error"),)
            )
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "An authentication exception occurred.")
        return metadata

    def _topic(self, name: str, context: grpc.ServicerContext) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"The topic {name!r} doesn't exist")
            raise AssertionError("abort raises")
        return topic

    def GetTopic(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._authenticate(context)
        topic = self._topic(request.topic_name, context)
        return pb2.TopicInfo(
            topic_name=request.topic_name,
            can_publish=False,
            can_subscribe=True,
            schema_id=topic.schema_id,
        )

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._authenticate(context)
        self.schema_requests.append(request.schema_id)
        text = self.schemas.get(request.schema_id)
        if text is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown schema")
        return pb2.SchemaInfo(schema_json=text, schema_id=request.schema_id)

    def Subscribe(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        log = SubscribeLog(metadata={})
        with self.cond:
            self.subscribes.append(log)
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            if fault.error_code:
                context.set_trailing_metadata((("error-code", fault.error_code),))
            context.abort(fault.status, fault.details)
        log.metadata = self._authenticate(context)
        first = next(request_iterator)
        log.topic = first.topic_name
        log.preset = pb2.ReplayPreset.Name(first.replay_preset)
        log.num_requested.append(first.num_requested)
        topic = self._topic(first.topic_name, context)
        with self.cond:
            if log.preset == "CUSTOM":
                log.replay_id = int.from_bytes(first.replay_id, "big")
                known = {r for r, _, _ in topic.events}
                if log.replay_id < self.retained_from or (
                    log.replay_id not in known and log.replay_id != topic.origin
                ):
                    context.set_trailing_metadata(
                        (
                            (
                                "error-code",
                                "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted",
                            ),
                        )
                    )
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "The Replay ID validation failed.",
                    )
                cursor = log.replay_id
            elif log.preset == "EARLIEST":
                cursor = self.retained_from - 1
            else:
                cursor = topic.events[-1][0] if topic.events else topic.origin
        state = {"pending": first.num_requested, "open": True}
        self.max_pending_seen = max(self.max_pending_seen, first.num_requested)

        def read_more() -> None:
            try:
                for request in request_iterator:
                    with self.cond:
                        log.num_requested.append(request.num_requested)
                        state["pending"] += request.num_requested
                        self.max_pending_seen = max(self.max_pending_seen, state["pending"])
                        self.cond.notify_all()
            except Exception:
                pass
            finally:
                with self.cond:
                    state["open"] = False
                    self.cond.notify_all()

        threading.Thread(target=read_more, daemon=True).start()
        while context.is_active():
            with self.cond:

                def ready(cursor: int = cursor) -> bool:
                    waiting = [e for e in topic.events if e[0] > cursor]
                    return self._stopping or (state["pending"] > 0 and bool(waiting))

                self.cond.wait_for(ready, timeout=self.keepalive_seconds)
                if self._stopping:
                    return
                limit = min(state["pending"], self.max_batch)
                batch = [e for e in topic.events if e[0] > cursor][:limit]
                if batch:
                    cursor = batch[-1][0]
                    state["pending"] -= len(batch)
                    log.delivered += len(batch)
                tip = topic.events[-1][0] if topic.events else topic.origin
                pending = state["pending"]
                close = self.close_after is not None and log.delivered >= self.close_after
                if close:
                    self.close_after = None
            if batch:
                yield pb2.FetchResponse(
                    events=[
                        pb2.ConsumerEvent(
                            event=pb2.ProducerEvent(
                                id=f"ev-{replay}", schema_id=schema_id, payload=payload
                            ),
                            replay_id=replay_bytes(replay),
                        )
                        for replay, schema_id, payload in batch
                    ],
                    latest_replay_id=replay_bytes(batch[-1][0]),
                    rpc_id="rpc",
                    pending_num_requested=pending,
                )
            else:
                yield pb2.FetchResponse(
                    latest_replay_id=replay_bytes(tip), rpc_id="rpc", pending_num_requested=pending
                )
            if close:
                context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    "RST_STREAM closed stream. HTTP/2 error code: NO_ERROR",
                )


@dataclass
class Running:
    fake: FakePubSub
    server: grpc.Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.fake.stop()
        self.server.stop(grace=None)


def start(fake: FakePubSub, *, credentials: grpc.ServerCredentials | None = None) -> Running:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    services.add_PubSubServicer_to_server(fake, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return Running(fake, server, port)
