"""`flask --app app sandbox connect`: connections from the service to running sandboxes.

The sandbox's own command (registered on `sandbox_cli`), so the product never imports the
sandbox: this module uses the service's settings, store and OAuth flow, never the reverse.
It still writes through the service's store directly (not yet through its admin API).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
import requests
from redis import Redis

from middleware.settings import ConfigError, Settings
from middleware.store.db import Store
from middleware.web import EXTENSION, handles
from middleware.web import oauth as oauth_flow
from sandbox.server import CC_PORT, SF_PORT
from sandbox.tls import DEFAULT_DIR
from schemas import admin as s

DEFAULT_SF_URL = f"https://127.0.0.1:{SF_PORT}"
DEFAULT_CC_URL = f"http://127.0.0.1:{CC_PORT}"
SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"


def sandbox_settings(
    settings: Settings, sf_url: str, cc_url: str, ca_bundle: str | None
) -> Settings:
    """The app's settings pointed at the local sandboxes and their connected app."""
    return settings.replace(
        salesforce_login_url=sf_url.rstrip("/"),
        salesforce_client_id=SANDBOX_CLIENT_ID,
        salesforce_client_secret=SANDBOX_CLIENT_SECRET,
        salesforce_ca_bundle=ca_bundle,
        cc_auth_url=f"{cc_url.rstrip('/')}/oauth2/default/v1",
        cc_api_url=f"{cc_url.rstrip('/')}/v3",
        cc_client_id=SANDBOX_CLIENT_ID,
        cc_client_secret=SANDBOX_CLIENT_SECRET,
    )


def _loopback_redirect(settings: Settings, vendor: str) -> str:
    # The sandboxes redirect only to loopback URIs with a port; the code is read from the
    # redirect itself, so nothing has to listen there.
    parts = urlsplit(settings.public_url)
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1") and parts.port:
        return oauth_flow.callback_uri(settings, vendor)
    return f"http://127.0.0.1:5000/oauth/{vendor}/callback"


def connect_sandbox(
    settings: Settings,
    store: Store,
    redis: Redis,
    vendor: str,
    label: str,
    http: requests.Session,
) -> dict[str, Any]:
    """One real OAuth flow against a running sandbox; returns the stored connection's view."""
    name = oauth_flow.VENDOR_NAMES[vendor]
    flow = oauth_flow.begin_flow(
        settings, redis, vendor, label, redirect_uri=_loopback_redirect(settings, vendor)
    )
    try:
        answer = http.get(flow.authorize_url, allow_redirects=False, timeout=30)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"cannot reach the {name} sandbox ({type(exc).__name__}); is "
            "`flask --app app sandbox serve` running, and is --ca-bundle its CA?"
        ) from None
    location = answer.headers.get("Location", "")
    query = parse_qs(urlsplit(location).query)
    if answer.status_code != 302 or "code" not in query:
        reason = (query.get("error_description") or query.get("error") or [answer.text[:200]])[0]
        raise click.ClickException(f"the {name} sandbox did not approve: {reason}")
    try:
        return oauth_flow.complete_flow(
            settings,
            store,
            redis,
            vendor,
            code=query["code"][0],
            state=(query.get("state") or [""])[0],
            session=http,
        )
    except oauth_flow.FlowError as exc:
        raise click.ClickException(exc.message) from None


# The settings the web and worker processes need to use sandbox connections (Settings attribute
# -> environment variable). Nothing else is ever printed or written: not ADMIN_TOKEN, not
# TOKEN_ENCRYPTION_KEY, not SECRET_KEY.
SANDBOX_ENV = {
    "salesforce_login_url": "SALESFORCE_LOGIN_URL",
    "salesforce_client_id": "SALESFORCE_CLIENT_ID",
    "salesforce_client_secret": "SALESFORCE_CLIENT_SECRET",
    "salesforce_ca_bundle": "SALESFORCE_CA_BUNDLE",
    "cc_api_url": "CC_API_URL",
    "cc_auth_url": "CC_AUTH_URL",
    "cc_client_id": "CC_CLIENT_ID",
    "cc_client_secret": "CC_CLIENT_SECRET",
}
_BARE_VALUE = re.compile(r"[A-Za-z0-9_./:@%+,=-]*")


def sandbox_env(settings: Settings) -> dict[str, str]:
    """The environment variables that point the service at the sandboxes, in a stable order."""
    return {env: str(getattr(settings, attr) or "") for attr, env in SANDBOX_ENV.items()}


def export_line(env: Mapping[str, str]) -> str:
    """One POSIX shell line that sets ``env``: ``export A=... B=...``."""
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())


def _dotenv_value(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise click.ClickException("a setting with a line break cannot go into a .env file")
    if _BARE_VALUE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_env_file(path: Path, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Set ``env`` in the .env file at ``path``, keeping every other line; (updated, added).

    A variable already in the file is rewritten in place (a repeated one keeps only its first
    line, so python-dotenv and honcho agree on its value); missing ones are appended. The file is
    replaced atomically and keeps its mode (a new one is readable by its owner only).
    """
    try:
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    pattern = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
    updated: list[str] = []
    out: list[str] = []
    for line in lines:
        match = pattern.match(line)
        name = match.group(1) if match else None
        if name is None or name not in env:
            out.append(line)
        elif name not in updated:
            updated.append(name)
            out.append(f"{name}={_dotenv_value(env[name])}\n")
    added = [name for name in env if name not in updated]
    if added:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append("# The local sandboxes (written by `flask --app app sandbox connect`)\n")
        out.extend(f"{name}={_dotenv_value(env[name])}\n" for name in added)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(out))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
    return updated, added


@click.command("connect")
@click.option("--sf-url", default=DEFAULT_SF_URL, show_default=True)
@click.option("--cc-url", default=DEFAULT_CC_URL, show_default=True)
@click.option(
    "--ca-bundle",
    default=None,
    help=f"CA of the Salesforce sandbox's certificate [default: {DEFAULT_DIR / 'ca.pem'}].",
)
@click.option("--sf-label", default="Salesforce sandbox", show_default=True)
@click.option("--cc-label", default="Constant Contact sandbox", show_default=True)
@click.option(
    "--write-env",
    "env_file",
    is_flag=False,
    flag_value=".env",
    default=None,
    metavar="[PATH]",
    help="Also set the sandbox settings in this .env file (default .env), keeping its other lines.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def sandbox_connect(
    sf_url: str,
    cc_url: str,
    ca_bundle: str | None,
    sf_label: str,
    cc_label: str,
    env_file: str | None,
    as_json: bool,
) -> None:
    """Connect to running sandboxes through their real OAuth flows; prints the connection ids.

    Then prints the settings the web and worker processes need to use these connections, as one
    `export ...` line to source (on stderr with --json); --write-env puts them in a .env file.
    """
    from flask.cli import ScriptInfo

    ctx = click.get_current_context()
    try:
        app = ctx.ensure_object(ScriptInfo).load_app()
        if EXTENSION not in app.extensions:  # the CLI-only app of an unconfigured environment
            Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(f"connecting needs the service's settings; {exc}") from None
    with app.app_context():
        current: Settings = handles()["settings"]
        bundle = ca_bundle or str(DEFAULT_DIR / "ca.pem")
        if sf_url.startswith("https://") and not Path(bundle).is_file():
            raise click.ClickException(
                f"no CA bundle at {bundle}; pass --ca-bundle (the sandbox prints its path)"
            )
        settings = sandbox_settings(current, sf_url, cc_url, bundle)
        http = requests.Session()
        http.trust_env = False
        http.verify = bundle
        store, redis = handles()["store"], handles()["redis"]
        made = {
            vendor: connect_sandbox(settings, store, redis, vendor, label, http)
            for vendor, label in (("salesforce", sf_label), ("constantcontact", cc_label))
        }
        env = sandbox_env(settings)
        stale = [name for name, value in env.items() if sandbox_env(current)[name] != value]
    written = write_env_file(Path(env_file), env) if env_file else None
    if as_json:
        click.echo(
            json.dumps(
                {v: s.ConnectionSchema().dump(c) for v, c in made.items()}, indent=2, sort_keys=True
            )
        )
    else:
        for vendor, conn in made.items():
            account = f" ({conn['account_id']})" if conn.get("account_id") else ""
            click.echo(f"{oauth_flow.VENDOR_NAMES[vendor]} connection: {conn['id']}{account}")
        click.echo(
            "create a setup with: flask --app app setups create --file setup.json "
            f"--sf-connection {made['salesforce']['id']} "
            f"--cc-connection {made['constantcontact']['id']}"
        )
    if written is not None:
        updated, added = written
        click.echo(
            f"{env_file}: updated {len(updated)} and added {len(added)} of the "
            f"{len(env)} sandbox settings (other lines kept); restart the web and worker "
            "processes so they read them",
            err=True,
        )
    elif stale:
        click.secho(
            f"The web and worker processes use these connections only with {', '.join(stale)} "
            "set as below: source the line in their shells, or rerun with --write-env",
            fg="yellow",
            err=True,
        )
    click.echo(export_line(env), err=as_json)
