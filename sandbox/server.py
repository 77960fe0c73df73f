"""Run both sandboxes as real servers: Salesforce over HTTPS, Constant Contact over HTTP.

With `pubsub_port`, the Salesforce org's Pub/Sub API (gRPC) is served too, over TLS with the
same sandbox CA (`sandbox.salesforce.pubsub`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.tls import DEFAULT_DIR, TlsFiles, ensure_certificates

log = logging.getLogger(__name__)

SF_PORT = 8701
CC_PORT = 8702
PUBSUB_PORT = 8703


@dataclass
class RunningSandboxes:
    """Both sandboxes serving on sockets; `stop()` shuts them down."""

    sf_app: Flask
    cc_app: Flask
    sf_url: str
    cc_url: str
    tls: TlsFiles
    pubsub_target: str | None = None  # host:port of the Salesforce Pub/Sub API (gRPC over TLS)
    _servers: list[BaseWSGIServer] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _grpc_servers: list[Any] = field(default_factory=list)

    @property
    def sf(self) -> Any:
        return self.sf_app.extensions["sf_sandbox"]

    @property
    def cc(self) -> Any:
        return self.cc_app.extensions["cc_sandbox"]

    def stop(self) -> None:
        for grpc_server in self._grpc_servers:
            grpc_server.stop(grace=None)  # open Subscribe streams end with CANCELLED
        for server in self._servers:
            server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        for server in self._servers:
            server.server_close()


def start(
    *,
    host: str = "127.0.0.1",
    sf_port: int = SF_PORT,
    cc_port: int = CC_PORT,
    tls_dir: Path | str = DEFAULT_DIR,
    sf_config: dict[str, Any] | None = None,
    cc_config: dict[str, Any] | None = None,
    pubsub_port: int | None = None,
) -> RunningSandboxes:
    """Start both sandboxes in background threads (port 0 picks a free port).

    `pubsub_port` (None: not served) also serves the Salesforce org's Pub/Sub API over TLS.
    """
    # Deferred on purpose: the two sandbox apps are a heavy import (seconds on a busy machine)
    # and the `sandbox` CLI group, which the service's app registers, imports this module.
    from sandbox.constantcontact.app import create_app as create_cc
    from sandbox.salesforce import create_app as create_sf

    tls = ensure_certificates(tls_dir)
    sf_app = create_sf(sf_config)
    cc_app = create_cc(cc_config)
    sf_server = make_server(host, sf_port, sf_app, threaded=True, ssl_context=tls.ssl_context)
    cc_server = make_server(host, cc_port, cc_app, threaded=True)
    shown_host = f"[{host}]" if ":" in host else host
    running = RunningSandboxes(
        sf_app=sf_app,
        cc_app=cc_app,
        sf_url=f"https://{shown_host}:{sf_server.port}",
        cc_url=f"http://{shown_host}:{cc_server.port}",
        tls=tls,
    )
    if pubsub_port is not None:
        # Deferred on purpose: gRPC and the compiled proto are only needed when served.
        from sandbox.salesforce.pubsub import start_pubsub

        try:
            grpc_server, bound = start_pubsub(sf_app, port=pubsub_port, tls=tls, host=host)
        except RuntimeError:  # the port is taken: give the other two back before failing
            sf_server.server_close()
            cc_server.server_close()
            raise
        running._grpc_servers.append(grpc_server)
        running.pubsub_target = f"{shown_host}:{bound}"
    for name, server in (("salesforce", sf_server), ("constantcontact", cc_server)):
        thread = threading.Thread(target=server.serve_forever, name=f"sandbox-{name}", daemon=True)
        thread.start()
        running._servers.append(server)
        running._threads.append(thread)
    log.info("sandboxes up: salesforce %s, constant contact %s", running.sf_url, running.cc_url)
    return running


@contextmanager
def running(**kwargs: Any) -> Iterator[RunningSandboxes]:
    sandboxes = start(**kwargs)
    try:
        yield sandboxes
    finally:
        sandboxes.stop()
