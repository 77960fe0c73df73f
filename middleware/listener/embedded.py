"""The embedded listener: the Pub/Sub listener in a thread of the web process (no Redis).

In embedded mode the queue and the intake live in this process (fakeredis), so no
``flask --app app listen`` process could share them; the web process runs the listener itself,
beside the embedded worker that flushes what it records (``EMBEDDED_LISTENER``, on by default
there). With no setup on the Pub/Sub door its plan is empty: it only reads the setups again
every `EMBEDDED_TUNING.plan_seconds` and opens no connection.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from redis import Redis

from middleware.listener.run import Listener
from middleware.listener.stream import Tuning
from middleware.settings import Settings
from middleware.store.db import Store

log = logging.getLogger(__name__)

# One process reads its own database: a setup saved on the door is picked up within seconds
# (the listener process reads every 30 s, as several of them may run).
EMBEDDED_TUNING = dataclasses.replace(Tuning(), plan_seconds=3.0)


class EmbeddedListenerThread:
    """Runs a `Listener` in a background thread until `stop` (leases released, streams closed)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        redis: Redis,
        *,
        tuning: Tuning = EMBEDDED_TUNING,
    ) -> None:
        self.listener = Listener(settings, store, redis, tuning=tuning, owner="embedded")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            self.listener.run(self._stop)
        except Exception:
            # `/readyz` reports the thread gone; the log says why.
            log.exception("the embedded Pub/Sub listener failed")

    def start(self) -> EmbeddedListenerThread:
        """Start the background thread (daemon: it never holds the process open)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="embedded-pubsub-listener", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop every stream, release every lease and wait for the thread (bounded)."""
        self._stop.set()
        if self._thread is not None:
            # Each connection's streams get `stop_seconds` to finish; one more for the rest.
            wait = timeout if timeout is not None else self.listener.tuning.stop_seconds + 5.0
            self._thread.join(wait)

    @property
    def alive(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def connections(self) -> list[int]:
        """The Salesforce connections whose streams this thread consumes now."""
        return sorted(self.listener.workers)


def start_embedded_listener(
    settings: Settings, store: Store, redis: Redis, *, tuning: Tuning = EMBEDDED_TUNING
) -> EmbeddedListenerThread:
    """Start an embedded listener thread on ``redis`` (the embedded stand-in)."""
    return EmbeddedListenerThread(settings, store, redis, tuning=tuning).start()
