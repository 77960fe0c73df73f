"""`python -m sandbox connect`: the running service's OAuth connections to the running sandboxes.

The sandbox's own command: it talks to the running service only through its admin API and OAuth
routes over HTTP, like a person with a browser would. For each vendor it asks
``POST /admin/api/connections/start`` for a flow, opens the signed start link at the service,
lets the sandbox approve the consent, and hands the code to the service's callback
(``Accept: application/json``), which stores the connection. The service must already use the
sandboxes (the nine settings this command prints and ``--write-env`` writes); when it does not,
the command says so and what to set. It imports nothing from ``middleware``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
import requests

from sandbox.server import CC_PORT, SF_PORT
from sandbox.tls import DEFAULT_DIR

DEFAULT_SF_URL = f"https://127.0.0.1:{SF_PORT}"
DEFAULT_CC_URL = f"http://127.0.0.1:{CC_PORT}"
DEFAULT_SERVICE_URL = "http://localhost:5000"
SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"
VENDOR_NAMES = {"salesforce": "Salesforce", "constantcontact": "Constant Contact"}
TIMEOUT = 30


def sandbox_env(sf_url: str, cc_url: str, ca_bundle: str | None) -> dict[str, str]:
    """The environment variables that point the service at the sandboxes, in a stable order.

    Nothing else is ever printed or written: not ADMIN_TOKEN, TOKEN_ENCRYPTION_KEY or SECRET_KEY.
    """
    return {
        "SALESFORCE_LOGIN_URL": sf_url.rstrip("/"),
        # The dashboard's "Sandbox" sign-in choice: the same local org, so either choice works.
        "SALESFORCE_SANDBOX_LOGIN_URL": sf_url.rstrip("/"),
        "SALESFORCE_CLIENT_ID": SANDBOX_CLIENT_ID,
        "SALESFORCE_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "SALESFORCE_CA_BUNDLE": ca_bundle or "",
        "CC_API_URL": f"{cc_url.rstrip('/')}/v3",
        "CC_AUTH_URL": f"{cc_url.rstrip('/')}/oauth2/default/v1",
        "CC_CLIENT_ID": SANDBOX_CLIENT_ID,
        "CC_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
    }


def consent_prefix(vendor: str, env: Mapping[str, str]) -> str:
    """Where the service sends a vendor's sign-ins when it uses the sandbox."""
    if vendor == "salesforce":
        return f"{env['SALESFORCE_LOGIN_URL']}/services/oauth2/authorize?"
    return f"{env['CC_AUTH_URL']}/authorize?"


@dataclass
class Service:
    """The running service, reached over HTTP at ``url`` with the admin token."""

    url: str
    admin_token: str
    http: requests.Session

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request to the service; a clear error when it cannot be reached."""
        headers = dict(kwargs.pop("headers", {}))
        if path.startswith("/admin/api/"):
            headers["Authorization"] = f"Bearer {self.admin_token}"
        try:
            return self.http.request(
                method, self.url + path, headers=headers, timeout=TIMEOUT, **kwargs
            )
        except requests.RequestException as exc:
            raise click.ClickException(
                f"cannot reach the service at {self.url} ({type(exc).__name__}); is it running "
                "(`honcho start`, or `flask --app app run`), and is --service-url its address?"
            ) from None


def _refusal(service: Service, answer: requests.Response, what: str) -> click.ClickException:
    if answer.status_code == 401 and "/admin/api/" in answer.url:
        return click.ClickException(
            f"the service at {service.url} refused the admin token (401); pass its ADMIN_TOKEN "
            "with --admin-token or in the environment"
        )
    try:
        body = answer.json()
        detail = body.get("detail") or body.get("title") or ""
        for field, messages in (body.get("errors") or {}).items():
            detail += f" ({field}: {'; '.join(messages)})"
    except ValueError:
        detail = answer.text[:200]
    return click.ClickException(f"{what}: the service answered {answer.status_code}: {detail}")


def _path(url: str) -> str:
    # The service's own links carry its PUBLIC_URL; they are followed at --service-url instead,
    # which is where this command reaches it (the same service, maybe by another address).
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class NotUsingSandbox(click.ClickException):
    """The service sends sign-ins to the real vendor (or another sandbox)."""


def connect_vendor(
    service: Service,
    sandbox: requests.Session,
    vendor: str,
    label: str,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """One real OAuth flow through the service against a running sandbox; the stored connection."""
    name = VENDOR_NAMES[vendor]
    answer = service.call(
        "POST", "/admin/api/connections/start", json={"vendor": vendor, "label": label}
    )
    if answer.status_code != 201:
        raise _refusal(service, answer, f"starting the {name} connection")
    flow = answer.json()
    authorize_url = str(flow["authorize_url"])
    client_id = parse_qs(urlsplit(authorize_url).query).get("client_id", [""])[0]
    if not authorize_url.startswith(consent_prefix(vendor, env)) or client_id != SANDBOX_CLIENT_ID:
        where = urlsplit(authorize_url)
        raise NotUsingSandbox(
            f"the service at {service.url} sends {name} sign-ins to "
            f"{where.scheme}://{where.netloc}{where.path} (client {client_id or 'none'}), not to "
            "the sandbox: give its web and worker processes the settings below (--write-env puts "
            "them in .env), restart them, and run this command again"
        )
    opened = service.call("GET", _path(flow["start_url"]), allow_redirects=False)
    if opened.status_code != 302:
        raise _refusal(service, opened, f"opening the {name} start link")
    try:
        consent = sandbox.get(opened.headers["Location"], allow_redirects=False, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"cannot reach the {name} sandbox ({type(exc).__name__}); is "
            "`python -m sandbox serve` running, and is --ca-bundle its CA?"
        ) from None
    location = consent.headers.get("Location", "")
    query = parse_qs(urlsplit(location).query)
    if consent.status_code != 302 or "code" not in query:
        reason = (query.get("error_description") or query.get("error") or [consent.text[:200]])[0]
        raise click.ClickException(
            f"the {name} sandbox did not approve: {reason} (it accepts only loopback callbacks: "
            "the service's PUBLIC_URL must be e.g. http://localhost:5000)"
        )
    stored = service.call(
        "GET", _path(location), headers={"Accept": "application/json"}, allow_redirects=False
    )
    if stored.status_code != 201:
        raise _refusal(service, stored, f"storing the {name} connection")
    return dict(stored.json()["connection"])


def export_line(env: Mapping[str, str]) -> str:
    """One POSIX shell line that sets ``env``: ``export A=... B=...``."""
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())


_BARE_VALUE = re.compile(r"[A-Za-z0-9_./:@%+,=-]*")


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
        out.append("# The local sandboxes (written by `sandbox connect`)\n")
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
@click.option(
    "--service-url",
    envvar="PUBLIC_URL",
    default=DEFAULT_SERVICE_URL,
    show_default=True,
    help="The running service (env PUBLIC_URL).",
)
@click.option(
    "--admin-token",
    envvar="ADMIN_TOKEN",
    default=None,
    help="The service's admin token (env ADMIN_TOKEN).",
)
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
    service_url: str,
    admin_token: str | None,
    sf_url: str,
    cc_url: str,
    ca_bundle: str | None,
    sf_label: str,
    cc_label: str,
    env_file: str | None,
    as_json: bool,
) -> None:
    """Connect the running service to running sandboxes through its admin API and the real OAuth
    flows; prints the connection ids.

    Then prints the settings the web and worker processes need to use these connections, as one
    `export ...` line to source (on stderr with --json); --write-env puts them in a .env file.
    """
    if not admin_token:
        raise click.ClickException(
            "ADMIN_TOKEN is required: pass the service's admin token with --admin-token or set "
            "ADMIN_TOKEN"
        )
    bundle = ca_bundle or str(DEFAULT_DIR / "ca.pem")
    if sf_url.startswith("https://") and not Path(bundle).is_file():
        raise click.ClickException(
            f"no CA bundle at {bundle}; pass --ca-bundle (the sandbox prints its path)"
        )
    env = sandbox_env(sf_url, cc_url, bundle)
    written = write_env_file(Path(env_file), env) if env_file else None
    service_http = requests.Session()
    service_http.trust_env = False
    service = Service(service_url.rstrip("/"), admin_token, service_http)
    sandbox = requests.Session()
    sandbox.trust_env = False
    sandbox.verify = bundle
    try:
        made = {
            vendor: connect_vendor(service, sandbox, vendor, label, env)
            for vendor, label in (("salesforce", sf_label), ("constantcontact", cc_label))
        }
    except NotUsingSandbox:
        _say_written(env_file, env, written)
        click.echo(export_line(env), err=True)
        raise
    finally:
        service_http.close()
        sandbox.close()
    if as_json:
        click.echo(json.dumps(made, indent=2, sort_keys=True))
    else:
        for vendor, conn in made.items():
            account = f" ({conn['account_id']})" if conn.get("account_id") else ""
            click.echo(f"{VENDOR_NAMES[vendor]} connection: {conn['id']}{account}")
        click.echo(
            "create a setup with: flask --app app setups create --file setup.json "
            f"--sf-connection {made['salesforce']['id']} "
            f"--cc-connection {made['constantcontact']['id']}"
        )
    _say_written(env_file, env, written)
    click.echo(export_line(env), err=as_json)


def _say_written(
    env_file: str | None, env: Mapping[str, str], written: tuple[list[str], list[str]] | None
) -> None:
    if written is None:
        return
    updated, added = written
    click.echo(
        f"{env_file}: updated {len(updated)} and added {len(added)} of the "
        f"{len(env)} sandbox settings (other lines kept); restart the web and worker "
        "processes so they read them",
        err=True,
    )
