"""Salesforce Pub/Sub API client: the gRPC channel, its auth metadata and the calls we make.

Every call carries the connection's session as gRPC metadata (`accesstoken`, `instanceurl`,
`tenantid` = the org id), read fresh per call, so a token refreshed after an `UNAUTHENTICATED`
answer is used by the next call. The channel is TLS (trusting `SALESFORCE_CA_BUNDLE` when set,
the system roots otherwise); only a loopback endpoint may be plain (the local sandbox).

Calls: `topic` (GetTopic: can we subscribe, its schema id), `schema_json` (GetSchema), and
`subscribe` (the bidirectional Subscribe stream: our `FetchRequest`s in, `FetchResponse`s out).
Failures are `grpc.RpcError`s; `error_code` reads the `error-code` trailer Salesforce adds
(`sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted`...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from middleware.salesforce import pubsub_proto

# A response holds up to 100 events of up to 1 MB each: gRPC's 4 MB default would refuse it.
MAX_RECEIVE_BYTES = 128 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Endpoint:
    """Where the Pub/Sub API listens: ``host:port`` and whether it speaks TLS."""

    target: str
    tls: bool = True

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """From `Settings.salesforce_pubsub_url` (`https://host:port`, or `http://` loopback)."""
        parts = urlsplit(url if "://" in url else f"https://{url}")
        host = parts.hostname or ""
        shown = f"[{host}]" if ":" in host else host
        return cls(target=f"{shown}:{parts.port or 7443}", tls=parts.scheme != "http")


@dataclass(frozen=True)
class Auth:
    """One org's session as the Pub/Sub API wants it on every call."""

    access_token: str = field(repr=False)
    instance_url: str
    tenant_id: str

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (
            ("accesstoken", self.access_token),
            ("instanceurl", self.instance_url),
            ("tenantid", self.tenant_id),
        )


def open_channel(endpoint: Endpoint, *, ca_bundle: str | None = None) -> grpc.Channel:
    """A gRPC channel to the endpoint (connects lazily, on the first call)."""
    options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
    if not endpoint.tls:
        return grpc.insecure_channel(endpoint.target, options=options)
    roots = Path(ca_bundle).read_bytes() if ca_bundle else None
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.secure_channel(endpoint.target, credentials, options=options)


def error_code(exc: grpc.RpcError) -> str:
    """Salesforce's `error-code` trailer of a failed call ("" when there is none)."""
    trailers: Any = getattr(exc, "trailing_metadata", lambda: None)() or ()
    for key, value in trailers:
        if key == "error-code":
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def status_of(exc: grpc.RpcError) -> grpc.StatusCode:
    code: Any = getattr(exc, "code", lambda: None)()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def details_of(exc: grpc.RpcError) -> str:
    return str(getattr(exc, "details", lambda: "")() or "")


class PubSubClient:
    """The calls the listener makes, each with the session ``auth()`` returns at that time."""

    def __init__(
        self,
        channel: grpc.Channel,
        auth: Callable[[], Auth],
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.pb2, services = pubsub_proto.load()
        self.stub = services.PubSubStub(channel)
        self.auth = auth
        self.timeout = timeout

    def topic(self, topic_name: str) -> Any:
        """`GetTopic`: `TopicInfo{topic_name, can_subscribe, schema_id, ...}`."""
        return self.stub.GetTopic(
            self.pb2.TopicRequest(topic_name=topic_name),
            metadata=self.auth().metadata(),
            timeout=self.timeout,
        )

    def schema_json(self, schema_id: str) -> str:
        """`GetSchema`: the Avro schema (JSON text) events with this schema id were written in."""
        info = self.stub.GetSchema(
            self.pb2.SchemaRequest(schema_id=schema_id),
            metadata=self.auth().metadata(),
            timeout=self.timeout,
        )
        return str(info.schema_json)

    def fetch_request(
        self,
        num_requested: int,
        *,
        topic_name: str = "",
        preset: str | None = None,
        replay_id: bytes = b"",
    ) -> Any:
        """A `FetchRequest`: the first of a stream names the topic and where to start (`LATEST`,
        `EARLIEST`, or `CUSTOM` after ``replay_id``); later ones only ask for more events."""
        values: dict[str, Any] = {"num_requested": num_requested}
        if topic_name:
            values["topic_name"] = topic_name
        if preset is not None:
            values["replay_preset"] = self.pb2.ReplayPreset.Value(preset)
        if replay_id:
            values["replay_id"] = replay_id
        return self.pb2.FetchRequest(**values)

    def subscribe(self, requests: Iterator[Any]) -> Any:
        """`Subscribe`: the call, an iterator of `FetchResponse`s that `cancel()` ends."""
        return self.stub.Subscribe(requests, metadata=self.auth().metadata())
