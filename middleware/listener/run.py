"""The listener process: which connections to consume, their leases, their streams, a clean stop.

`Listener.run(stop)` steps every `tick_seconds` until ``stop`` is set (SIGTERM, SIGINT):

- every `plan_seconds` it reads which Salesforce connections have setups on the Pub/Sub door
  (`plan.connection_plans`);
- for each such connection no one here consumes yet, it tries to take the connection's lease;
  with it, a `ConnectionWorker` starts one `ChannelStream` thread per channel;
- every `renew_seconds` it renews the leases it holds; a lease it cannot renew (taken over,
  Redis unreachable) stops that connection's streams at once: another listener may have it;
- a connection whose setups changed (a setup joined or left the door, changed its object or
  its Campaign lists) restarts with its new channels under the same lease; one with no setup
  left on the door (or needing re-consent) stops and gives its lease up.

On stop every stream's call is cancelled, its thread joined, and each lease released, so another
listener can take the connections over at once instead of after the lease runs out.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from sqlalchemy.exc import SQLAlchemyError

from middleware import connections
from middleware.listener import plan as plans
from middleware.listener.lease import Lease
from middleware.listener.stream import ChannelStream, TokenSource, Tuning, Wiring
from middleware.salesforce import pubsub
from middleware.salesforce.pubsub_client import Auth, Endpoint, PubSubClient, open_channel
from middleware.services.changes import Scope
from middleware.settings import Settings
from middleware.store.db import Store

log = logging.getLogger(__name__)


class ConnectionWorker:
    """One connection's streams (a thread per channel) over one gRPC channel, under its lease."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        redis: Redis,
        connection: plans.ConnectionPlan,
        lease: Lease,
        tuning: Tuning,
        *,
        tokens: TokenSource | None = None,
    ) -> None:
        self.plan = connection
        self.lease = lease
        self.tuning = tuning
        self.stop_event = threading.Event()
        self.channel = open_channel(
            Endpoint.from_url(settings.salesforce_pubsub_url),
            ca_bundle=settings.salesforce_ca_bundle,
        )
        if tokens is None:
            tokens = connections.salesforce_token_source(
                settings, store, redis, connection.connection_id
            )
        source = tokens

        def auth() -> Auth:
            return Auth(source.access_token(), source.instance_url(), connection.tenant_id)

        client = PubSubClient(self.channel, auth, timeout=tuning.rpc_timeout)
        wiring = Wiring(
            connection_id=connection.connection_id,
            store=store,
            redis=redis,
            client=client,
            schemas=pubsub.SchemaCache(client.schema_json),
            tokens=source,
            call_client=settings.salesforce_call_client,
            flush_delay=settings.flush_delay_seconds,
        )
        self.streams: dict[str, ChannelStream] = {
            channel: ChannelStream(
                wiring, channel, _entity(channel, scopes), scopes, tuning, self.stop_event
            )
            for channel, scopes in connection.channels().items()
        }
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for channel, stream in self.streams.items():
            thread = threading.Thread(
                target=stream.run,
                name=f"listener-{self.plan.connection_id}-{channel}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Cancel every stream's call and wait for its thread (bounded)."""
        self.stop_event.set()
        for stream in self.streams.values():
            stream.cancel()
        deadline = time.monotonic() + self.tuning.stop_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not stop in time", thread.name)
        self.channel.close()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)


def _entity(channel: str, scopes: tuple[Scope, ...]) -> str:
    """The object a channel carries, from the entities of the setups it serves."""
    for scope in scopes:
        for entity in scope.entities():
            if plans.channel_for(entity) == channel:
                return entity
    raise ValueError(f"no setup wants {channel}")


class Listener:
    """The supervisor of one listener process (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        redis: Redis,
        *,
        tuning: Tuning | None = None,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        token_source: Callable[[int], TokenSource] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self.tuning = tuning or Tuning()
        self.owner = owner
        self.clock = clock
        # The connection's tokens by connection id; the stored, refreshing source by default.
        self.token_source = token_source
        self.workers: dict[int, ConnectionWorker] = {}
        self.plans: dict[int, plans.ConnectionPlan] = {}
        self._planned_at: float | None = None
        self._renewed_at: float = clock()

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set, then stop every stream and release every lease."""
        log.info("Pub/Sub listener started (%s)", self.settings.salesforce_pubsub_url)
        try:
            while not stop.is_set():
                self.step()
                stop.wait(self.tuning.tick_seconds)
        finally:
            self.shutdown()
        log.info("Pub/Sub listener stopped")

    def step(self) -> None:
        now = self.clock()
        if self._planned_at is None or now - self._planned_at >= self.tuning.plan_seconds:
            self._read_plans()
            self._planned_at = now
        if now - self._renewed_at >= self.tuning.renew_seconds:
            self._renew()
            self._renewed_at = now
        self._reconcile()

    def shutdown(self) -> None:
        for connection_id in list(self.workers):
            self._stop(connection_id, release=True)

    # -- internals ------------------------------------------------------------------------------

    def _read_plans(self) -> None:
        try:
            self.plans = plans.connection_plans(self.store)
        except SQLAlchemyError as exc:
            # Keep consuming what we had: the streams store positions through the same
            # database and will back off on their own while it is away.
            log.warning("cannot read the setups on the Pub/Sub door: %s", exc)

    def _renew(self) -> None:
        for connection_id, worker in list(self.workers.items()):
            if not worker.lease.renew():
                log.warning(
                    "lost the lease on Salesforce connection %s: stopping its streams",
                    connection_id,
                )
                self._stop(connection_id, release=False)

    def _reconcile(self) -> None:
        for connection_id, worker in list(self.workers.items()):
            wanted = self.plans.get(connection_id)
            if wanted is None:
                log.info("Salesforce connection %s has no setup on the door now", connection_id)
                self._stop(connection_id, release=True)
            elif wanted != worker.plan:
                log.info("the setups of Salesforce connection %s changed", connection_id)
                self._stop(connection_id, release=False)
                self._start(wanted, worker.lease)
        for connection_id, wanted in self.plans.items():
            if connection_id in self.workers:
                continue
            lease = Lease(
                self.redis, connection_id, seconds=self.tuning.lease_seconds, owner=self.owner
            )
            if lease.acquire():
                self._start(wanted, lease)

    def _start(self, wanted: plans.ConnectionPlan, lease: Lease) -> None:
        try:
            worker = self.make_worker(wanted, lease)
        except Exception:  # a bad CA bundle, say: leave this connection, keep the others
            log.exception("cannot consume Salesforce connection %s", wanted.connection_id)
            lease.release()
            return
        self.workers[wanted.connection_id] = worker
        worker.start()
        log.info(
            "consuming Salesforce connection %s: %s",
            wanted.connection_id,
            ", ".join(worker.streams),
        )

    def make_worker(self, wanted: plans.ConnectionPlan, lease: Lease) -> ConnectionWorker:
        tokens = self.token_source(wanted.connection_id) if self.token_source else None
        return ConnectionWorker(
            self.settings, self.store, self.redis, wanted, lease, self.tuning, tokens=tokens
        )

    def _stop(self, connection_id: int, *, release: bool) -> None:
        worker = self.workers.pop(connection_id)
        worker.stop()
        if release:
            worker.lease.release()


def serve(settings: Settings, store: Store, redis: Redis, **kwargs: Any) -> None:
    """Run the listener in this process until SIGTERM or SIGINT (the `listen` command)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping the listener", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    Listener(settings, store, redis, **kwargs).run(stop)
