"""The sandboxes' shared pieces: clock, fault injection, control routes, TLS, in-process mount."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import requests
from flask import Flask, jsonify
from werkzeug.serving import make_server

from sandbox.adapter import in_process_session
from sandbox.common import Clock, Fault, Faults, control_blueprint, install_faults
from sandbox.tls import ensure_certificates


def _app(faults: Faults, clock: Clock, resets: list[int]) -> Flask:
    app = Flask("t")

    @app.get("/v1/thing")
    def thing():
        return jsonify(ok=True)

    def vendor_error(fault: Fault):
        resp = jsonify(error=fault.error_key or "boom")
        resp.status_code = fault.status
        return resp

    install_faults(app, faults, vendor_error)
    app.register_blueprint(control_blueprint(clock, faults, lambda: resets.append(1)))
    return app


@pytest.fixture
def parts():
    slept: list[float] = []
    faults, clock, resets = Faults(sleep=slept.append), Clock(), []
    session = in_process_session("http://t.test", _app(faults, clock, resets))
    return session, faults, clock, resets, slept


def test_fault_answers_the_next_n_matching_calls_then_clears(parts) -> None:
    session, faults, _, _, _ = parts
    r = session.post("http://t.test/_sandbox/faults", json={"status": 503, "count": 2})
    assert r.status_code == 201
    codes = [session.get("http://t.test/v1/thing").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert faults.pending() == []


def test_fault_filters_by_path_and_method_and_never_hits_control_routes(parts) -> None:
    session, _, _, _, _ = parts
    session.post(
        "http://t.test/_sandbox/faults", json={"status": 500, "path": "/v1/other", "method": "GET"}
    )
    assert session.get("http://t.test/v1/thing").status_code == 200
    assert session.get("http://t.test/_sandbox/faults").json()["faults"][0]["status"] == 500


def test_slow_fault_stalls_then_answers_normally(parts) -> None:
    session, _, _, _, slept = parts
    session.post("http://t.test/_sandbox/faults", json={"kind": "slow", "delay": 2.5})
    assert session.get("http://t.test/v1/thing").status_code == 200
    assert slept == [2.5]


def test_throttle_kind_defaults_to_429_with_error_key(parts) -> None:
    session, _, _, _, _ = parts
    session.post(
        "http://t.test/_sandbox/faults", json={"kind": "throttle", "error_key": "quota_exceeded"}
    )
    r = session.get("http://t.test/v1/thing")
    assert (r.status_code, r.json()) == (429, {"error": "quota_exceeded"})


def test_fault_without_status_or_kind_is_refused(parts) -> None:
    session, _, _, _, _ = parts
    assert session.post("http://t.test/_sandbox/faults", json={"count": 1}).status_code == 400


def test_clock_moves_and_resets(parts) -> None:
    session, _, clock, resets, _ = parts
    before = clock.now()
    r = session.post("http://t.test/_sandbox/clock", json={"advance": 86400})
    moved = datetime.fromisoformat(r.json()["now"])
    assert 86390 < (moved - before).total_seconds() < 86410
    session.post("http://t.test/_sandbox/clock", json={"set": "2030-01-01T00:00:00Z"})
    assert clock.now().year == 2030
    assert session.post("http://t.test/_sandbox/reset").status_code == 204
    assert clock.now().year == datetime.now(UTC).year
    assert resets == [1]


def test_tls_certificate_is_trusted_through_the_ca_bundle_only(tmp_path) -> None:
    tls = ensure_certificates(tmp_path)
    again = ensure_certificates(tmp_path)
    assert again.cert.read_bytes() == tls.cert.read_bytes()  # made once, then reused

    app = Flask("tls")
    app.get("/ping")(lambda: "pong")
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=tls.ssl_context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        session = requests.Session()
        session.trust_env = False
        for host in ("127.0.0.1", "localhost"):
            url = f"https://{host}:{server.port}/ping"
            assert session.get(url, verify=str(tls.ca_cert), timeout=5).text == "pong"
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://127.0.0.1:{server.port}/ping", verify=True, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
