"""`flask --app app sandbox serve` as a user runs it: real sockets, HTTPS, seeding by CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import requests

ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).with_name("flask"))


def test_serve_then_seed_over_the_cli(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    tls = tmp_path / "tls"
    proc = subprocess.Popen(
        [
            FLASK,
            "--app",
            "app",
            "sandbox",
            "serve",
            "--sf-port",
            "0",
            "--cc-port",
            "0",
            "--pubsub-port",
            "0",
            "--tls-dir",
            str(tls),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while "Pub/Sub API:" not in "".join(lines) and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            lines.append(line)
        text = "".join(lines)
        sf_url = re.search(r"Salesforce sandbox:\s+(https://\S+)", text).group(1)  # type: ignore[union-attr]
        cc_url = re.search(r"Constant Contact sandbox:\s+(http://\S+)", text).group(1)  # type: ignore[union-attr]
        session = requests.Session()
        session.trust_env = False
        versions = session.get(f"{sf_url}/services/data/", verify=str(tls / "ca.pem"), timeout=10)
        assert versions.status_code == 200 and versions.json()[-1]["version"] == "66.0"
        pubsub_target = re.search(r"Pub/Sub API:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        token = session.post(f"{sf_url}/_sandbox/tokens", verify=str(tls / "ca.pem"), timeout=10)
        _get_topic_over_tls(pubsub_target, tls / "ca.pem", token.json()["access_token"])
        seeded = subprocess.run(
            [
                FLASK,
                "--app",
                "app",
                "sandbox",
                "seed",
                "--sf-url",
                sf_url,
                "--cc-url",
                cc_url,
                "--ca-bundle",
                str(tls / "ca.pem"),
                "--contacts",
                "500",
                "--cc-contacts",
                "200",
                "--cc-list",
                "Main List",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert seeded.returncode == 0, seeded.stderr
        state = session.get(f"{cc_url}/_sandbox/state", timeout=10).json()
        assert state["records"]["contacts"] == 200
        unauthorised = session.get(f"{cc_url}/v3/contacts", timeout=10)
        assert unauthorised.status_code == 401
        assert unauthorised.json() == {"error_key": "unauthorized", "error_message": "Unauthorized"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def _get_topic_over_tls(target: str, ca: Path, token: str) -> None:
    """The served Pub/Sub API answers over TLS trusting the sandbox CA, as a client would use it."""
    sys.path.append(str(ROOT / "proto"))  # the proto's import root, only while compiling it
    try:
        pb2, services = grpc.protos_and_services("eventbus/v1/pubsub_api.proto")
    finally:
        sys.path.remove(str(ROOT / "proto"))
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(target, credentials) as channel:
        topic = services.PubSubStub(channel).GetTopic(
            pb2.TopicRequest(topic_name="/data/ContactChangeEvent"),
            metadata=(
                ("accesstoken", token),
                ("instanceurl", "https://127.0.0.1"),
                ("tenantid", "00DSB0000000001AAA"),
            ),
            timeout=10,
        )
    assert topic.can_subscribe and topic.schema_id
