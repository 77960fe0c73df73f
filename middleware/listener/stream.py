"""One channel's Subscribe stream: events in, hints recorded for every setup, then the replay id.

The loop of one channel of one connection, until the listener stops it:

1. Start after the stored replay id (`CUSTOM`), or at the tip (`LATEST`) when none is stored.
2. `GetTopic` (may we subscribe?), then `Subscribe`: a first `FetchRequest` for `batch` events;
   whenever fewer than `top_up_below` of those asked for are still to come, ask for the rest,
   so events keep flowing without ever more than `batch` (100, Salesforce's limit) pending.
3. Each response: decode the events (an unreadable one is logged with its replay id, counted
   and skipped), record the hints for every setup the channel serves (`changes.record`), and
   ONLY THEN move the stream's position past the last event. The position is written to the
   store at most every `position_seconds` while events flow (a write per response would be a
   database commit per event at a steady trickle), and whenever the stream ends; after a crash
   the events since the last write come again and are dropped as duplicates by their event
   keys. An empty response is the server's keepalive (within 270 s): its latest replay id is
   written at once, so a quiet channel's position never ages out of the 72 h retention.
4. The stream ends or fails: subscribe again after the stored replay id, after a pause that
   grows while nothing gets through. By failure:
   - stream closed, `UNAVAILABLE` (RST_STREAM) and other passing errors, or a stream silent
     for longer than the keepalives allow (a dead connection): again, from the store;
   - `UNAUTHENTICATED`: refresh the connection's token (once for every process), then again;
     refused again right after a refresh, the connection needs re-consent (marked, as the
     sync jobs mark it) and the listener leaves it until it is connected again;
   - `INVALID_ARGUMENT` for the replay id (older than the retention, or not this org's): start
     at the tip instead, and have each setup catch up what the stream cannot give back — a
     SystemModstamp catch-up of its object since the id was stored (the `GAP_OVERFLOW` marker
     in the intake), or its scheduled catch-up job for another object's channel (an Account
     rename for contacts, Campaign members);
   - `RESOURCE_EXHAUSTED` (too many clients, the delivery allocation): a longer pause;
   - `NOT_FOUND` / `PERMISSION_DENIED` (CDC not enabled for the object, a user without access):
     logged as an error, tried again every `refused_seconds`;
   - `NotRecorded` (Redis down, or the flush not scheduled): the replay id is not stored; the
     stream is dropped and, after a pause, resumes from the stored id, so the same events come
     again and nothing is lost (events recorded meanwhile are duplicates by their event keys).
"""

from __future__ import annotations

import logging
import queue as queue_lib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from redis import Redis

from middleware import metrics, queue, vendor_errors
from middleware.listener import plan as plans
from middleware.salesforce import pubsub
from middleware.salesforce.events import OVERFLOW, ChangeHint
from middleware.salesforce.pubsub_client import PubSubClient, details_of, error_code, status_of
from middleware.services import changes
from middleware.services.changes import Scope
from middleware.sf_to_cc import catch_up
from middleware.store import connections as connection_repo
from middleware.store.db import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuning:
    """The listener's pace (tests shorten every wait)."""

    batch: int = 100  # events requested at once, and the most ever pending (Salesforce: 100)
    top_up_below: int = 50  # ask for more when fewer than this remain requested
    retry_seconds: float = 1.0  # first pause after a failure; doubles while failures repeat
    max_retry_seconds: float = 60.0
    exhausted_seconds: float = 30.0  # first pause after RESOURCE_EXHAUSTED
    refused_seconds: float = 300.0  # after NOT_FOUND, PERMISSION_DENIED or a revoked grant
    rpc_timeout: float = 30.0  # GetTopic, GetSchema
    lease_seconds: float = 30.0  # a dead holder's connection is taken over within this
    renew_seconds: float = 5.0
    plan_seconds: float = 30.0  # how often the setups on the door are read again
    tick_seconds: float = 1.0  # the supervisor's step
    stop_seconds: float = 10.0  # how long a stop waits for a stream's thread
    silence_seconds: float = 330.0  # no response this long (keepalives come within 270 s)
    position_seconds: float = 1.0  # the replay id is written at most this often while events flow


class Backoff:
    """Pauses that double from ``first`` up to ``most`` until `reset` (something got through)."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = max(first, most)
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.most)
        return delay

    def reset(self) -> None:
        self._next = self.first


@dataclass
class StreamStats:
    """What one channel's stream did (logs, tests)."""

    subscribes: int = 0
    responses: int = 0
    events: int = 0
    keepalives: int = 0
    accepted: int = 0
    duplicates: int = 0
    echoes: int = 0
    undecodable: int = 0
    not_recorded: int = 0
    refreshes: int = 0
    catch_ups: int = 0
    positions_stored: int = 0
    last_error: str | None = None


class TokenSource(Protocol):
    """The connection's refreshing token source (`connections.salesforce_token_source`)."""

    def access_token(self) -> str: ...

    def refresh(self, rejected_token: str) -> str: ...

    def instance_url(self) -> str: ...


class FreshSessions:
    """Access tokens a refresh just issued that no stream of the connection has used with
    success yet: one refused again means the grant itself no longer works."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: set[str] = set()

    def add(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def proven(self, token: str | None) -> None:
        with self._lock:
            self._tokens.discard(token or "")

    def __contains__(self, token: object) -> bool:
        with self._lock:
            return token in self._tokens


@dataclass(frozen=True)
class Wiring:
    """What every stream of one connection shares."""

    connection_id: int
    store: Store
    redis: Redis
    client: PubSubClient
    schemas: pubsub.SchemaCache
    tokens: TokenSource
    call_client: str
    flush_delay: float
    fresh: FreshSessions = field(default_factory=FreshSessions)


class Refused(Exception):
    """Salesforce will not let us subscribe to this channel (GetTopic says so)."""


class _Feed:
    """The `FetchRequest`s of one Subscribe call: the first, then each top-up, until closed."""

    def __init__(self, first: Any) -> None:
        self.first = first
        self._queue: queue_lib.Queue[Any] = queue_lib.Queue()

    def ask(self, request: Any) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Iterator[Any]:
        yield self.first
        while (request := self._queue.get()) is not None:
            yield request


class _Watchdog:
    """Cancels a Subscribe call that has been silent too long: Salesforce sends at least a
    keepalive every 270 s, so longer silence means a connection that died without a word."""

    def __init__(self, seconds: float, on_silence: Callable[[], Any]) -> None:
        self.seconds = seconds
        self.on_silence = on_silence
        self.fired = False
        self._kicked = threading.Event()
        self._closed = False
        threading.Thread(target=self._watch, name="listener-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while not self._closed:
            if not self._kicked.wait(self.seconds):
                if not self._closed:
                    self.fired = True
                    self.on_silence()
                return
            self._kicked.clear()

    def kick(self) -> None:
        self._kicked.set()

    def close(self) -> None:
        self._closed = True
        self._kicked.set()


def _replay_refused(exc: grpc.RpcError) -> bool:
    """Whether an INVALID_ARGUMENT answer is about the replay id (not our request's shape)."""
    code = error_code(exc).lower()
    return "replayid" in code or (not code and "replay" in details_of(exc).lower())


class ChannelStream:
    """One channel of one connection, subscribed until ``stop`` is set (see the module doc)."""

    def __init__(
        self,
        wiring: Wiring,
        channel: str,
        entity: str,
        scopes: tuple[Scope, ...],
        tuning: Tuning,
        stop: threading.Event,
    ) -> None:
        self.wiring = wiring
        self.channel = channel
        self.entity = entity
        self.scopes = scopes
        self.setup_ids = tuple(scope.setup_id for scope in scopes)
        self.tuning = tuning
        self.stop = stop
        self.stats = StreamStats()
        self.retry = Backoff(tuning.retry_seconds, tuning.max_retry_seconds)
        self.exhausted = Backoff(tuning.exhausted_seconds, max(tuning.max_retry_seconds, 300.0))
        self._lock = threading.Lock()
        self._call: Any = None
        self._from_latest = False  # the stored id was refused: start at the tip once
        self._custom = False  # the current stream started after a stored id
        self._token_used: str | None = None
        self._silenced = False  # the last stream was cancelled for saying nothing too long
        self._unsaved: bytes | None = None  # the position reached and not yet written
        self._saved_at = float("-inf")  # time.monotonic() of the last write

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        log.info("listening to %s for setups %s", self.channel, list(self.setup_ids))
        while not self.stop.is_set():
            try:
                delay = self._attempt()
            except Exception as exc:  # the loop must outlive any one failure; say what it was
                log.exception("%s: unexpected failure; subscribing again", self.channel)
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                delay = self.retry.next()
            if delay > 0:
                self.stop.wait(delay)
        log.info("stopped listening to %s", self.channel)

    def cancel(self) -> None:
        """End the current Subscribe call now (the listener is stopping)."""
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def _attempt(self) -> float:
        """One subscription from the stored position; the pause before the next one."""
        position = plans.load_position(self.wiring.store, self.setup_ids, self.channel)
        try:
            self._subscribe(position)
        except grpc.RpcError as exc:
            if self.stop.is_set():
                return 0.0
            return self._after_rpc_error(exc, position)
        except changes.NotRecorded as exc:
            self.stats.not_recorded += 1
            self.stats.last_error = f"not recorded: {exc.reason}"
            log.error(
                "%s: events not recorded (%s): the replay id stays where it was; "
                "subscribing again from it",
                self.channel,
                exc.reason,
            )
            return self.retry.next()
        except vendor_errors.NeedsReauth as exc:
            return self._needs_reauth(str(exc))
        except vendor_errors.RetryLater as exc:
            self.stats.last_error = str(exc)
            log.warning("%s: %s; trying again", self.channel, exc)
            return self.retry.next()
        except Refused as exc:
            self.stats.last_error = str(exc)
            log.error("%s", exc)
            return self.tuning.refused_seconds
        if self.stop.is_set():
            return 0.0
        log.info("%s: the server closed the stream; subscribing again", self.channel)
        return self.retry.next()

    def _subscribe(self, position: plans.Position | None) -> None:
        client = self.wiring.client
        self._custom = position is not None and not self._from_latest
        # The session every call of this attempt sends: the one to refresh if it is refused.
        self._token_used = self.wiring.tokens.access_token()
        info = client.topic(self.channel)
        if not info.can_subscribe:
            raise Refused(
                f"{self.channel}: this user may not subscribe (is Change Data Capture enabled "
                "for the object, and may the user read it?)"
            )
        first = client.fetch_request(
            self.tuning.batch,
            topic_name=self.channel,
            preset="CUSTOM" if self._custom else "LATEST",
            replay_id=position.replay_id if position is not None and self._custom else b"",
        )
        feed = _Feed(first)
        call = client.subscribe(iter(feed))
        with self._lock:
            self._call = call
        self.stats.subscribes += 1
        # Events asked for and not yet received, counted here: the server's own count
        # (`pending_num_requested`) lags the top-ups still on their way to it, and trusting it
        # would ask again for what is already asked (more than `batch` pending).
        outstanding = self.tuning.batch
        watchdog = _Watchdog(self.tuning.silence_seconds, call.cancel)
        try:
            if self.stop.is_set():
                call.cancel()
            for response in call:
                watchdog.kick()
                self._handle(response)
                self.retry.reset()
                self.exhausted.reset()
                self.wiring.fresh.proven(self._token_used)
                outstanding = max(0, outstanding - len(response.events))
                if outstanding < self.tuning.top_up_below:
                    feed.ask(client.fetch_request(self.tuning.batch - outstanding))
                    outstanding = self.tuning.batch
        finally:
            watchdog.close()
            self._silenced = watchdog.fired
            with self._lock:
                self._call = None
            feed.close()
            call.cancel()
            self._write_position(when_ended=True)

    # -- one response ---------------------------------------------------------------------------

    def _handle(self, response: Any) -> None:
        self.stats.responses += 1
        events = list(response.events)
        if not events:
            self.stats.keepalives += 1
            # The tip is ours to store only while we had events requested: with none pending
            # the server may hold events back that we have not seen.
            if response.latest_replay_id and response.pending_num_requested > 0:
                self._store(bytes(response.latest_replay_id), now=True)
            return
        hints = self._hints(events)
        if hints:
            for scope in self.scopes:
                recorded = changes.record(
                    self.wiring.redis, scope, hints, flush_delay=self.wiring.flush_delay
                )
                self.stats.accepted += recorded.accepted
                self.stats.duplicates += recorded.duplicates
                self.stats.echoes += recorded.echoes_ignored
                metrics.listener_events("accepted", recorded.accepted, self.wiring.redis)
                metrics.listener_events("duplicate", recorded.duplicates, self.wiring.redis)
                metrics.listener_events("echo", recorded.echoes_ignored, self.wiring.redis)
        # Every setup has the batch: only now may the stream's position move past it.
        self._store(bytes(events[-1].replay_id))

    def _hints(self, events: list[Any]) -> list[ChangeHint]:
        hints: list[ChangeHint] = []
        for consumer in events:
            self.stats.events += 1
            try:
                schema = self._schema(consumer.event.schema_id)
                hints.append(
                    pubsub.event_hint(
                        schema,
                        bytes(consumer.event.payload),
                        channel=self.channel,
                        replay_id=bytes(consumer.replay_id),
                        call_client=self.wiring.call_client,
                    )
                )
            except pubsub.UndecodableEvent as exc:
                self.stats.undecodable += 1
                metrics.listener_events("undecodable", 1, self.wiring.redis)
                log.warning(
                    "%s: skipped the event with replay id %s (event id %s): %s",
                    self.channel,
                    pubsub.replay_number(bytes(consumer.replay_id)),
                    consumer.event.id or "-",
                    exc,
                )
        metrics.listener_events("received", len(events), self.wiring.redis)
        return hints

    def _schema(self, schema_id: str) -> pubsub.EventSchema:
        """The event's schema; one the server does not know makes the event unreadable (an
        outage of GetSchema is not: it fails the stream, and the event comes again)."""
        try:
            return self.wiring.schemas.get(schema_id)
        except grpc.RpcError as exc:
            status = status_of(exc)
            if status not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise
            raise pubsub.UndecodableEvent(
                f"schema {schema_id} refused ({status.name}: {details_of(exc)})"
            ) from None

    def _store(self, replay_id: bytes, *, now: bool = False) -> None:
        """The stream is past ``replay_id`` (its events are recorded): written now, or when
        ``position_seconds`` have passed since the last write, or when the stream ends."""
        self._unsaved = replay_id
        if now or time.monotonic() - self._saved_at >= self.tuning.position_seconds:
            self._write_position()

    def _write_position(self, *, when_ended: bool = False) -> None:
        replay_id = self._unsaved
        if replay_id is None:
            return
        try:
            plans.save_position(self.wiring.store, self.setup_ids, self.channel, replay_id)
        except Exception:
            if not when_ended:
                raise  # the stream fails and starts again from the last written position
            # Ending anyway (maybe for this very outage): the next stream starts from the
            # last written position and the events since come again, as duplicates.
            log.warning("%s: the stream's position could not be written", self.channel)
            return
        self._unsaved = None
        self._saved_at = time.monotonic()
        self.stats.positions_stored += 1
        self._from_latest = False

    # -- failures -------------------------------------------------------------------------------

    def _after_rpc_error(self, exc: grpc.RpcError, position: plans.Position | None) -> float:
        status = status_of(exc)
        text = f"{status.name}: {details_of(exc)}"
        self.stats.last_error = text
        if status is grpc.StatusCode.CANCELLED and self._silenced:
            log.warning(
                "%s: nothing from the server for %.0f s (not even a keepalive); "
                "subscribing again from the stored id",
                self.channel,
                self.tuning.silence_seconds,
            )
            return self.retry.next()
        if status is grpc.StatusCode.UNAUTHENTICATED:
            return self._refresh(text)
        if status is grpc.StatusCode.INVALID_ARGUMENT and self._custom and _replay_refused(exc):
            assert position is not None  # a CUSTOM start had one
            self._catch_up(position)
            return 0.0
        if status is grpc.StatusCode.RESOURCE_EXHAUSTED:
            delay = self.exhausted.next()
            log.warning("%s: %s; waiting %.0f s", self.channel, text, delay)
            return delay
        if status in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.UNIMPLEMENTED,
        ):
            log.error(
                "%s: refused (%s); trying again in %.0f s",
                self.channel,
                text,
                self.tuning.refused_seconds,
            )
            return self.tuning.refused_seconds
        log.warning(
            "%s: stream failed (%s); subscribing again from the stored id", self.channel, text
        )
        return self.retry.next()

    def _refresh(self, why: str) -> float:
        rejected = self._token_used or ""
        if rejected in self.wiring.fresh:
            return self._needs_reauth(
                f"the Pub/Sub API refused a freshly refreshed session ({why})"
            )
        try:
            self.wiring.fresh.add(self.wiring.tokens.refresh(rejected))
        except vendor_errors.NeedsReauth as exc:
            return self._needs_reauth(str(exc))
        except vendor_errors.RetryLater as exc:
            log.warning("%s: cannot refresh the session yet (%s)", self.channel, exc)
            return self.retry.next()
        self.stats.refreshes += 1
        log.info("%s: session refreshed after %s", self.channel, why)
        return 0.0

    def _needs_reauth(self, message: str) -> float:
        self.stats.last_error = message
        log.error(
            "Salesforce connection %s needs re-consent: %s", self.wiring.connection_id, message
        )
        with self.wiring.store.transaction() as session:
            connection_repo.mark_status(session, self.wiring.connection_id, "needs_reauth", message)
        return self.tuning.refused_seconds

    def _catch_up(self, position: plans.Position) -> None:
        """The stored replay id is gone: catch up from when it was stored, then start at the tip.

        Recorded before the stream moves on: if this fails, the next attempt meets the same
        refusal and tries again, so the gap is never forgotten.
        """
        for scope in self.scopes:
            if scope.object_type == self.entity:
                marker = ChangeHint(
                    entity=self.entity,
                    record_ids=(),
                    change_type=OVERFLOW,
                    is_own_echo=False,
                    event_key=None,
                    transaction_key=None,
                    commit_timestamp=position.stored_at,
                    changed_fields=None,
                    channel=self.channel,
                )
                changes.record(
                    self.wiring.redis, scope, [marker], flush_delay=self.wiring.flush_delay
                )
            else:
                queue.ensure_scheduled(
                    catch_up.job_key(scope.setup_id),
                    catch_up.JOB,
                    [scope.setup_id],
                    connection=self.wiring.redis,
                )
        self.stats.catch_ups += 1
        self._from_latest = True
        log.warning(
            "%s: the stored replay id is no longer valid (older than the event retention?): "
            "starting at the latest event; setups %s catch up since %s",
            self.channel,
            list(self.setup_ids),
            position.stored_at.isoformat(),
        )
