"""The Salesforce Pub/Sub API protocol (`eventbus.v1`), compiled from `proto/` at run time.

The proto file is the vendor's, unchanged (`proto/eventbus/v1/pubsub_api.proto`); grpcio-tools
turns it into message and service modules on first use, so no generated code is committed and
the client can never drift from the file. It is loaded under the one name every loader in this
repository uses, `eventbus/v1/pubsub_api.proto` with `proto/` as the import root: protobuf's
descriptor pool accepts the same file twice (the sandbox's server and this client in one test
process) but refuses a second file that defines `eventbus.v1` again.
"""

from __future__ import annotations

import functools
import sys
import threading
from pathlib import Path
from typing import Any

import grpc

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
PROTO_FILE = "eventbus/v1/pubsub_api.proto"

_lock = threading.Lock()


@functools.cache
def load() -> tuple[Any, Any]:
    """`(pb2, pb2_grpc)`: the messages (FetchRequest, ...) and the PubSub service helpers."""
    root = str(PROTO_ROOT)
    with _lock:
        # grpcio-tools finds the file, and resolves its imports, through sys.path; the root is
        # there only while compiling, so `proto/` never shadows an importable package.
        added = root not in sys.path
        if added:
            sys.path.append(root)
        try:
            return grpc.protos_and_services(PROTO_FILE)  # type: ignore[no-any-return]
        finally:
            if added:
                sys.path.remove(root)
