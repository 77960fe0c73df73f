"""`sandbox connect`: the service's connections to the sandboxes, made only through its HTTP API.

The service runs on a real socket (a werkzeug server in a thread), the sandboxes too; the command
reaches the service the way an operator's shell would, and the tests then look in its store.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from dotenv import dotenv_values
from flask import Flask
from rq import SimpleWorker
from werkzeug.serving import make_server

from app import create_app
from middleware import queue
from middleware.store import connections as connection_repo
from sandbox import server
from sandbox.cli import sandbox_cli

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token"
SETUP = {"name": "Contacts", "main_list": "Newsletter"}


def store_of(app: Flask) -> Any:
    return app.extensions["middleware"]["store"]


def flask_cli(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def sandbox(*args: str) -> Result:
    """`python -m sandbox ...` as a shell runs it, with none of the developer's variables."""
    env = {"ADMIN_TOKEN": None, "PUBLIC_URL": None}
    return CliRunner().invoke(sandbox_cli, list(args), env=env)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Both sandboxes on real sockets (shared by the module: stopping a server takes ~0.5 s)."""
    sandboxes = server.start(
        sf_port=0,
        cc_port=0,
        tls_dir=tmp_path_factory.mktemp("tls"),
        cc_config={"RATE_PER_SECOND": 0, "DAILY_QUOTA": 0},
    )
    yield sandboxes
    sandboxes.stop()
    events = sandboxes.sf.events
    if hasattr(events, "close"):
        events.close(timeout=1)


def sandbox_settings(running: Any) -> dict[str, str]:
    """The nine settings `sandbox connect` prints, for these sandboxes."""
    return {
        "SALESFORCE_LOGIN_URL": running.sf_url,
        "SALESFORCE_SANDBOX_LOGIN_URL": running.sf_url,
        "SALESFORCE_CLIENT_ID": "sandbox-client-id",
        "SALESFORCE_CLIENT_SECRET": "sandbox-client-secret",
        "SALESFORCE_CA_BUNDLE": str(running.tls.ca_cert),
        "CC_API_URL": f"{running.cc_url}/v3",
        "CC_AUTH_URL": f"{running.cc_url}/oauth2/default/v1",
        "CC_CLIENT_ID": "sandbox-client-id",
        "CC_CLIENT_SECRET": "sandbox-client-secret",
    }


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Serve an app on a real socket; returns its URL (stopped after the test)."""
    servers: list[Any] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for served in servers:
        served.shutdown()
        served.server_close()


@pytest.fixture
def sandbox_app(config: dict[str, Any], running: Any) -> Iterator[Flask]:
    """A service configured for the running sandboxes, as `sandbox connect` tells the user to."""
    config.update(sandbox_settings(running))
    application = create_app(config)
    yield application
    store_of(application).dispose()


def connect_args(service_url: str, running: Any, *more: str) -> list[str]:
    return [
        "connect",
        "--service-url",
        service_url,
        "--admin-token",
        TOKEN,
        "--sf-url",
        running.sf_url,
        "--cc-url",
        running.cc_url,
        "--ca-bundle",
        str(running.tls.ca_cert),
        *more,
    ]


def test_connect_stores_working_connections_through_the_admin_api(
    sandbox_app: Flask, running: Any, serve: Callable[[Flask], str]
) -> None:
    result = sandbox(*connect_args(serve(sandbox_app), running, "--json"))
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["salesforce"]["base_url"] == running.sf_url  # https instance_url
    assert made["salesforce"]["account_id"].startswith("00D")
    assert made["constantcontact"]["base_url"] == f"{running.cc_url}/v3"
    assert "access_token" not in result.stdout
    with store_of(sandbox_app).transaction() as session:
        assert len(connection_repo.all_connections(session)) == 2
        for conn in made.values():
            assert connection_repo.tokens(session, conn["id"]).refresh_token
    for conn in made.values():
        checked = flask_cli(sandbox_app, "connections", "check", str(conn["id"]))
        assert checked.exit_code == 0, checked.output
        assert ": ok" in checked.output


def test_connect_prints_ids_and_the_settings_workers_need(
    sandbox_app: Flask, running: Any, serve: Callable[[Flask], str]
) -> None:
    result = sandbox(*connect_args(serve(sandbox_app), running))
    assert result.exit_code == 0, result.output
    assert "Salesforce connection: 1 (00D" in result.stdout  # a fresh service: ids start at 1
    assert "Constant Contact connection: 2" in result.stdout
    assert "--sf-connection 1 --cc-connection 2" in result.stdout
    # The last line is one the user can source; a shell that does sees all nine settings.
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("export ")
    shell = subprocess.run(
        ["sh", "-c", f'{line}; env | grep -E "^(SALESFORCE|CC)_"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert dict(x.split("=", 1) for x in shell.stdout.splitlines()) == sandbox_settings(running)
    assert TOKEN not in result.output
    # Connecting the same org and account again re-authorises them: still two connections.
    again = sandbox(*connect_args(serve(sandbox_app), running))
    assert again.exit_code == 0, again.output
    assert "Salesforce connection: 1 (00D" in again.stdout


def test_write_env_updates_a_dotenv_file_in_place(
    sandbox_app: Flask,
    config: dict[str, Any],
    running: Any,
    serve: Callable[[Flask], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = serve(sandbox_app)
    env_file = tmp_path / "service.env"
    kept = (
        "# my settings\n"
        "ADMIN_TOKEN=mine-not-yours\n"
        "TOKEN_ENCRYPTION_KEY=keep-this-key\n"
        "export SALESFORCE_LOGIN_URL=https://login.salesforce.com\n"
        "CC_CLIENT_ID=old\n"
        "CC_CLIENT_ID=older\n"
        "LOG_LEVEL=DEBUG"  # no final newline
    )
    env_file.write_text(kept)
    env_file.chmod(0o640)
    args = connect_args(url, running)
    result = sandbox(*args, "--write-env", str(env_file), "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # stdout stays pure JSON for scripts
    assert "updated 2 and added 7 of the 9 sandbox settings" in result.stderr
    assert "export SALESFORCE_LOGIN_URL=" in result.stderr
    text = env_file.read_text()
    lines = text.splitlines()
    assert lines[:3] == [
        "# my settings",
        "ADMIN_TOKEN=mine-not-yours",
        "TOKEN_ENCRYPTION_KEY=keep-this-key",
    ]
    assert lines[3] == f"SALESFORCE_LOGIN_URL={running.sf_url}"  # rewritten where it was
    assert lines[4] == "CC_CLIENT_ID=sandbox-client-id" and "older" not in text
    assert lines[5] == "LOG_LEVEL=DEBUG"
    assert env_file.stat().st_mode & 0o777 == 0o640
    values = dotenv_values(env_file)
    assert values["SALESFORCE_CA_BUNDLE"] == str(running.tls.ca_cert)
    assert values["CC_AUTH_URL"] == f"{running.cc_url}/oauth2/default/v1"
    assert values["ADMIN_TOKEN"] == "mine-not-yours"
    # Connecting again changes nothing in the file: same values, same lines.
    again = sandbox(*args, "--write-env", str(env_file))
    assert again.exit_code == 0, again.output
    assert env_file.read_text() == text
    # A worker started with that file uses the new connections as they are.
    fresh = {k: str(v) for k, v in values.items() if k in sandbox_settings(running)}
    assert fresh == sandbox_settings(running)
    worker_app = create_app({**config, **fresh, "STORE": store_of(sandbox_app)})
    for conn in ("1", "2"):
        checked = flask_cli(worker_app, "connections", "check", conn)
        assert checked.exit_code == 0 and ": ok" in checked.output, checked.output
    # Without a path: a new .env in the working directory, readable by its owner only.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    made = sandbox(*args, "--write-env")
    assert made.exit_code == 0, made.output
    assert "updated 0 and added 9" in made.stderr
    assert (work / ".env").stat().st_mode & 0o777 == 0o600
    assert dotenv_values(work / ".env") == fresh


def test_a_service_not_using_the_sandboxes_is_told_what_to_set(
    app: Flask, running: Any, serve: Callable[[Flask], str], tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    result = sandbox(*connect_args(serve(app), running, "--write-env", str(env_file)))
    assert result.exit_code == 1
    assert "sends Salesforce sign-ins to https://login.salesforce.com" in result.stderr
    assert "not to the sandbox" in result.stderr and "run this command again" in result.stderr
    assert "export SALESFORCE_LOGIN_URL=" in result.stderr  # what to set, ready to source
    assert "added 9 of the 9 sandbox settings" in result.stderr
    assert dotenv_values_of(env_file) == sandbox_settings(running)
    with store_of(app).transaction() as session:
        assert connection_repo.all_connections(session) == []


def dotenv_values_of(path: Path) -> dict[str, str]:
    return {k: str(v) for k, v in dotenv_values(path).items()}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_service_sandbox_or_wrong_token_are_explained(
    config: dict[str, Any], running: Any, serve: Callable[[Flask], str], tmp_path: Path
) -> None:
    no_service = sandbox(*connect_args(f"http://127.0.0.1:{_closed_port()}", running))
    assert no_service.exit_code == 1
    assert "cannot reach the service at http://127.0.0.1:" in no_service.output

    # A service pointed at a Salesforce sandbox that is not running.
    dead_sf = f"http://127.0.0.1:{_closed_port()}"
    config.update(sandbox_settings(running), SALESFORCE_LOGIN_URL=dead_sf)
    url = serve(create_app(config))
    args = connect_args(url, running)
    args[args.index("--sf-url") + 1] = dead_sf
    no_sandbox = sandbox(*args)
    assert no_sandbox.exit_code == 1
    assert "cannot reach the Salesforce sandbox" in no_sandbox.output

    wrong = connect_args(url, running)
    wrong[wrong.index("--admin-token") + 1] = "not-the-token"
    refused = sandbox(*wrong)
    assert refused.exit_code == 1
    assert "refused the admin token (401)" in refused.output

    no_ca = sandbox(*connect_args(url, running, "--ca-bundle", str(tmp_path / "missing.pem")))
    assert no_ca.exit_code == 1
    assert "no CA bundle" in no_ca.output
    no_token = sandbox("connect", "--service-url", url)
    assert no_token.exit_code == 1
    assert "ADMIN_TOKEN is required" in no_token.output


def test_connect_then_sync_now_wait_runs_the_real_job(
    sandbox_app: Flask, running: Any, serve: Callable[[Flask], str], tmp_path: Path
) -> None:
    connected = sandbox(*connect_args(serve(sandbox_app), running, "--json"))
    made = json.loads(connected.stdout)
    setup_file = tmp_path / "setup.json"
    setup_file.write_text(json.dumps(SETUP))
    created = flask_cli(
        sandbox_app,
        "setups",
        "create",
        "--file",
        str(setup_file),
        "--sf-connection",
        str(made["salesforce"]["id"]),
        "--cc-connection",
        str(made["constantcontact"]["id"]),
        "--json",
    )
    setup_id = json.loads(created.stdout)["id"]
    redis = sandbox_app.extensions["middleware"]["redis"]
    worker = SimpleWorker(
        list(queue.get_queues(redis).values()), connection=redis, serializer=queue.SERIALIZER
    )
    runtime = sandbox_app.extensions["middleware"]["runtime"]

    def work(_seconds: float) -> None:
        with queue.use_runtime(runtime):
            worker.work(burst=True)

    sandbox_app.config["CLI_SLEEP"] = work
    result = flask_cli(sandbox_app, "sync", "now", str(setup_id), "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "sync_now  succeeded" in result.output


def test_connect_imports_nothing_from_the_service() -> None:
    """It reaches the service over HTTP only: no `middleware` import in sandbox/connect.py."""
    tree = ast.parse((ROOT / "sandbox" / "connect.py").read_text(encoding="utf-8"))
    imported = [
        name
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    ]
    assert not [n for n in imported if n == "middleware" or n.startswith("middleware.")]


def test_connect_through_flask_without_settings_names_what_is_missing() -> None:
    flask = str(Path(sys.executable).with_name("flask"))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    done = subprocess.run(
        [flask, "--app", "app", "sandbox", "connect", "--sf-url", "http://127.0.0.1:9"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "ADMIN_TOKEN is required" in done.stderr
