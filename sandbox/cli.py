"""`flask --app app sandbox ...` or `python -m sandbox ...`: serve, seed, poke the sandboxes."""

from __future__ import annotations

import json
import signal
import threading
from datetime import datetime, timedelta
from typing import Any

import click
import requests

from sandbox import server
from sandbox.connect import DEFAULT_CC_URL, DEFAULT_SF_URL, sandbox_connect
from sandbox.constantcontact.store import is_uuid
from sandbox.server import CC_PORT, PUBSUB_PORT, SF_PORT
from sandbox.tls import DEFAULT_DIR


@click.group("sandbox")
def sandbox_cli() -> None:
    """Local Salesforce and Constant Contact sandboxes."""


sandbox_cli.add_command(sandbox_connect)


@sandbox_cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--sf-port", default=SF_PORT, show_default=True, help="Salesforce (HTTPS) port.")
@click.option("--cc-port", default=CC_PORT, show_default=True, help="Constant Contact port.")
@click.option(
    "--pubsub-port",
    default=PUBSUB_PORT,
    show_default=True,
    help="Salesforce Pub/Sub API (gRPC over TLS) port; 0 picks a free one.",
)
@click.option("--pubsub/--no-pubsub", default=True, show_default=True, help="Serve Pub/Sub.")
@click.option(
    "--pubsub-keepalive",
    default=270.0,
    show_default=True,
    help="Seconds before an idle Subscribe stream gets an empty keepalive FetchResponse.",
)
@click.option(
    "--pubsub-idle-close",
    default=60.0,
    show_default=True,
    help="Seconds a Subscribe stream may have nothing requested before it is closed.",
)
@click.option("--tls-dir", default=str(DEFAULT_DIR), show_default=True)
@click.option(
    "--org-profile",
    default="standard",
    show_default=True,
    help="Comma-separated: standard, person_accounts, state_country, npsp.",
)
@click.option("--duplicate-rule/--no-duplicate-rule", default=False, show_default=True)
@click.option("--sf-snapshot", default=None, help="SQLite file to load/save the Salesforce org.")
@click.option("--cc-snapshot", default=None, help="SQLite file to load/save the CC account.")
@click.option("--event-url", default=None, help="POST Salesforce change events here.")
@click.option(
    "--event-header",
    multiple=True,
    help="Header sent with change events, NAME=VALUE (e.g. X-Webhook-Secret=...).",
)
@click.option(
    "--event-secret",
    default=None,
    help="Sign change events like Standard Webhooks with this secret (whsec_... or any string).",
)
@click.option("--cc-rate", default=4, show_default=True, help="CC requests/s (0 = no limit).")
@click.option("--cc-quota", default=10000, show_default=True, help="CC requests/day (0 = none).")
@click.option(
    "--cc-activity-seconds",
    default=0.5,
    show_default=True,
    help="How long CC bulk activities take to process.",
)
def serve(
    host: str,
    sf_port: int,
    cc_port: int,
    pubsub_port: int,
    pubsub: bool,
    pubsub_keepalive: float,
    pubsub_idle_close: float,
    tls_dir: str,
    org_profile: str,
    duplicate_rule: bool,
    sf_snapshot: str | None,
    cc_snapshot: str | None,
    event_url: str | None,
    event_header: tuple[str, ...],
    event_secret: str | None,
    cc_rate: int,
    cc_quota: int,
    cc_activity_seconds: float,
) -> None:
    """Serve both sandboxes until interrupted."""
    headers = _headers(event_header, "--event-header")
    try:
        running = server.start(
            host=host,
            sf_port=sf_port,
            cc_port=cc_port,
            pubsub_port=pubsub_port if pubsub else None,
            tls_dir=tls_dir,
            sf_config={
                "ORG_PROFILE": org_profile,
                "DUPLICATE_RULE": duplicate_rule,
                "SNAPSHOT": sf_snapshot,
                "EVENT_URL": event_url,
                "EVENT_HEADERS": headers,
                "EVENT_HMAC_SECRET": event_secret,
                "PUBSUB_KEEPALIVE_SECONDS": pubsub_keepalive,
                "PUBSUB_IDLE_CLOSE_SECONDS": pubsub_idle_close,
            },
            cc_config={
                "SNAPSHOT": cc_snapshot,
                "RATE_PER_SECOND": cc_rate,
                "DAILY_QUOTA": cc_quota,
                "ACTIVITY_SECONDS": cc_activity_seconds,
            },
        )
    except RuntimeError as exc:  # gRPC could not bind the Pub/Sub port
        raise click.ClickException(
            f"{exc} Another sandbox may be serving it: --pubsub-port 0 picks a free port."
        ) from exc
    click.echo(f"Salesforce sandbox:        {running.sf_url}  (CA bundle: {running.tls.ca_cert})")
    click.echo(f"Constant Contact sandbox:  {running.cc_url}")
    if running.pubsub_target:
        click.echo(f"Salesforce Pub/Sub API:    {running.pubsub_target}  (gRPC, TLS, same CA)")
    click.echo("OAuth client: sandbox-client-id / sandbox-client-secret. Ctrl-C stops.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


def _headers(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint=option)
        headers[name.strip()] = value
    return headers


def _session(ca_bundle: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle or str(DEFAULT_DIR / "ca.pem")
    return session


def _post(session: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return _call(session, "POST", url, body)


def _call(
    session: requests.Session, method: str, url: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    try:
        resp = session.request(method, url, json=body, timeout=600)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"cannot reach {url} ({type(exc).__name__}); is `sandbox serve` running there, "
            "and is --ca-bundle its CA?"
        ) from None
    if resp.status_code >= 400:
        raise click.ClickException(f"{url} answered {resp.status_code}: {resp.text[:500]}")
    return resp.json() if resp.content else {}


@sandbox_cli.command("seed")
@click.option("--sf-url", default=DEFAULT_SF_URL, show_default=True)
@click.option("--cc-url", default=DEFAULT_CC_URL, show_default=True)
@click.option("--ca-bundle", default=None, help="Defaults to the sandbox CA in --tls-dir.")
@click.option("--contacts", default=0, show_default=True, help="Salesforce contacts.")
@click.option("--leads", default=0, show_default=True, help="Salesforce leads.")
@click.option("--accounts", default=0, show_default=True, help="Salesforce business accounts.")
@click.option("--person-accounts", default=0, show_default=True)
@click.option("--campaigns", default=0, show_default=True, help="Active Salesforce campaigns.")
@click.option(
    "--members-per-campaign", default=25, show_default=True, help="Members in each campaign."
)
@click.option(
    "--member-lead-ratio",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of members that are Leads [default: 0.25 when the org has leads].",
)
@click.option("--cc-contacts", default=0, show_default=True, help="Constant Contact contacts.")
@click.option("--cc-list", "cc_lists", multiple=True, help="CC list(s) the contacts join.")
@click.option("--seed", "random_seed", default=42, show_default=True)
def seed(
    sf_url: str,
    cc_url: str,
    ca_bundle: str | None,
    contacts: int,
    leads: int,
    accounts: int,
    person_accounts: int,
    campaigns: int,
    members_per_campaign: int,
    member_lead_ratio: float | None,
    cc_contacts: int,
    cc_lists: tuple[str, ...],
    random_seed: int,
) -> None:
    """Seed running sandboxes in bulk (the fast path: a million contacts in seconds)."""
    session = _session(ca_bundle)
    if contacts or leads or accounts or person_accounts or campaigns:
        sf_body: dict[str, Any] = {
            "contacts": contacts,
            "leads": leads,
            "accounts": accounts,
            "person_accounts": person_accounts,
            "campaigns": campaigns,
            "members_per_campaign": members_per_campaign,
            "seed": random_seed,
        }
        if member_lead_ratio is not None:
            sf_body["lead_member_ratio"] = member_lead_ratio
        result = _post(session, f"{sf_url}/_sandbox/seed", sf_body)
        click.echo(f"Salesforce: {json.dumps(result)}")
    if cc_contacts:
        body: dict[str, Any] = {"contacts": cc_contacts, "seed": random_seed}
        if cc_lists:
            body["lists"] = list(cc_lists)
        click.echo(
            f"Constant Contact: {json.dumps(_post(session, f'{cc_url}/_sandbox/seed', body))}"
        )


@sandbox_cli.command("fault")
@click.argument("vendor", type=click.Choice(["salesforce", "constantcontact"]))
@click.option("--status", type=int, default=None, help="Answer with this HTTP status.")
@click.option(
    "--kind", type=click.Choice(["slow", "timeout", "throttle"]), default=None, help="Or this."
)
@click.option("--count", default=1, show_default=True, help="How many calls are affected.")
@click.option("--delay", default=0.0, show_default=True, help="Seconds to stall first.")
@click.option("--path", default="", help="Only requests whose path starts with this.")
@click.option("--error-key", default="", help="CC 429 flavour: throttled or quota_exceeded.")
@click.option("--sf-url", default=DEFAULT_SF_URL, show_default=True)
@click.option("--cc-url", default=DEFAULT_CC_URL, show_default=True)
@click.option("--ca-bundle", default=None)
def fault(
    vendor: str,
    status: int | None,
    kind: str | None,
    count: int,
    delay: float,
    path: str,
    error_key: str,
    sf_url: str,
    cc_url: str,
    ca_bundle: str | None,
) -> None:
    """Make the next COUNT calls to a sandbox fail, stall or time out."""
    base = sf_url if vendor == "salesforce" else cc_url
    body: dict[str, Any] = {"count": count, "delay": delay, "path": path, "error_key": error_key}
    if status is not None:
        body["status"] = status
    if kind:
        body["kind"] = kind
    click.echo(json.dumps(_post(_session(ca_bundle), f"{base}/_sandbox/faults", body)))


@sandbox_cli.command("clock")
@click.argument("vendor", type=click.Choice(["salesforce", "constantcontact"]))
@click.option("--advance", type=float, default=None, help="Seconds to move forward.")
@click.option("--set", "set_to", default=None, help="ISO time to jump to.")
@click.option("--sf-url", default=DEFAULT_SF_URL, show_default=True)
@click.option("--cc-url", default=DEFAULT_CC_URL, show_default=True)
@click.option("--ca-bundle", default=None)
def clock(
    vendor: str,
    advance: float | None,
    set_to: str | None,
    sf_url: str,
    cc_url: str,
    ca_bundle: str | None,
) -> None:
    """Move a sandbox's clock (token expiry, daily quotas, retention windows)."""
    base = sf_url if vendor == "salesforce" else cc_url
    body: dict[str, Any] = {"advance": advance} if advance is not None else {"set": set_to}
    click.echo(json.dumps(_post(_session(ca_bundle), f"{base}/_sandbox/clock", body)))


@sandbox_cli.command("events")
@click.option("--url", default=None, help="POST the Salesforce change events here from now on.")
@click.option("--header", "headers", multiple=True, help="NAME=VALUE sent with each batch.")
@click.option("--secret", default=None, help="Sign each batch (Standard Webhooks) with this.")
@click.option("--batch-size", type=click.IntRange(1, 2000), default=None, help="[default: 200]")
@click.option("--off", is_flag=True, help="Stop delivering (events are still kept for replay).")
@click.option("--sf-url", default=DEFAULT_SF_URL, show_default=True)
@click.option("--ca-bundle", default=None)
def events(
    url: str | None,
    headers: tuple[str, ...],
    secret: str | None,
    batch_size: int | None,
    off: bool,
    sf_url: str,
    ca_bundle: str | None,
) -> None:
    """Show or change where the running Salesforce sandbox delivers its change events.

    Without options, shows the current target. --url replaces it (headers, secret and batch size
    with it) without restarting the sandbox, so the org is kept.
    """
    endpoint = f"{sf_url.rstrip('/')}/_sandbox/events/delivery"
    session = _session(ca_bundle)
    if off:
        if url or headers or secret or batch_size:
            raise click.UsageError("--off takes no --url, --header, --secret or --batch-size")
        _call(session, "DELETE", endpoint)
        click.echo("change-event delivery stopped (events are still kept for replay)")
        return
    if url is None:
        if headers or secret or batch_size:
            raise click.UsageError("--header, --secret and --batch-size need --url")
        click.echo(json.dumps(_call(session, "GET", endpoint), sort_keys=True))
        return
    body: dict[str, Any] = {"url": url, "headers": _headers(headers, "--header")}
    if secret:
        body["hmac_secret"] = secret
    if batch_size is not None:
        body["batch_size"] = batch_size
    click.echo(json.dumps(_call(session, "PUT", endpoint, body), sort_keys=True))


@sandbox_cli.command("outbound")
@click.option("--url", default=None, help="Endpoint the Outbound Messages POST to (SOAP).")
@click.option("--object", "sobject", default="Contact", show_default=True)
@click.option("--field", "fields", multiple=True, help="A field to send besides Id (repeatable).")
@click.option("--name", default=None, help="The action's name [default: the object's].")
@click.option("--inactive", is_flag=True, help="Keep the action but fire nothing.")
@click.option(
    "--first-delay", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True
)
@click.option(
    "--max-delay", type=click.FloatRange(min=0, min_open=True), default=7200.0, show_default=True
)
@click.option(
    "--give-up", type=click.FloatRange(min=0, min_open=True), default=86400.0, show_default=True
)
@click.option(
    "--duplicate-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of delivered messages sent a second time.",
)
@click.option("--reorder", is_flag=True, help="Send notifications and messages out of order.")
@click.option("--off", is_flag=True, help="Remove the action named --name (or every action).")
@click.option("--sf-url", default=DEFAULT_SF_URL, show_default=True)
@click.option("--ca-bundle", default=None)
def outbound(
    url: str | None,
    sobject: str,
    fields: tuple[str, ...],
    name: str | None,
    inactive: bool,
    first_delay: float,
    max_delay: float,
    give_up: float,
    duplicate_rate: float,
    reorder: bool,
    off: bool,
    sf_url: str,
    ca_bundle: str | None,
) -> None:
    """Show or set the running Salesforce sandbox's Outbound Message actions.

    Without --url or --off, shows the actions and their queue (pending, delivered, dropped,
    attempts). --url adds an action (or replaces the one of that name): every create and edit of
    --object then sends a SOAP notification with Id and each --field, retried as Salesforce does.
    """
    endpoint = f"{sf_url.rstrip('/')}/_sandbox/outbound"
    session = _session(ca_bundle)
    if off:
        if url:
            raise click.UsageError("--off takes no --url")
        target = f"{endpoint}/{name}" if name else endpoint
        click.echo(json.dumps(_call(session, "DELETE", target), sort_keys=True))
        return
    if url is None:
        click.echo(json.dumps(_call(session, "GET", endpoint), sort_keys=True))
        return
    body: dict[str, Any] = {
        "url": url,
        "object": sobject,
        "fields": list(fields),
        "active": not inactive,
        "retry": {
            "first_delay_seconds": first_delay,
            "max_delay_seconds": max_delay,
            "give_up_seconds": give_up,
        },
        "duplicate_rate": duplicate_rate,
        "reorder": reorder,
    }
    if name:
        body["name"] = name
    click.echo(json.dumps(_post(session, endpoint, body), sort_keys=True))


@sandbox_cli.command("send")
@click.option(
    "--list", "lists", multiple=True, required=True, help="A CC list, by id or name (repeatable)."
)
@click.option("--name", required=True, help="The campaign's name (unique in the account).")
@click.option("--subject", default=None, help="[default: the name]")
@click.option("--link", "links", multiple=True, help="A URL in the email to click (repeatable).")
@click.option("--opens", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option("--clicks", type=click.FloatRange(0, 1), default=0.05, show_default=True)
@click.option("--bounces", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option("--optouts", type=click.FloatRange(0, 1), default=0.002, show_default=True)
@click.option("--forwards", type=click.FloatRange(0, 1), default=0.001, show_default=True)
@click.option(
    "--reopens",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Share of openers who open again.",
)
@click.option("--spread-hours", type=click.FloatRange(min=0), default=24.0, show_default=True)
@click.option(
    "--sent-at", default=None, help="ISO time [default: --spread-hours before the sandbox's now]."
)
@click.option("--type-code", type=int, default=None, help="e.g. 57 (A/B Test) [default: 10].")
@click.option("--type", "type_name", default=None, help="e.g. NEWSLETTER [default: the code's].")
@click.option("--seed", "random_seed", default=42, show_default=True)
@click.option("--cc-url", default=DEFAULT_CC_URL, show_default=True)
@click.option("--ca-bundle", default=None)
def send(
    lists: tuple[str, ...],
    name: str,
    subject: str | None,
    links: tuple[str, ...],
    opens: float,
    clicks: float,
    bounces: float,
    optouts: float,
    forwards: float,
    reopens: float,
    spread_hours: float,
    sent_at: str | None,
    type_code: int | None,
    type_name: str | None,
    random_seed: int,
    cc_url: str,
    ca_bundle: str | None,
) -> None:
    """Send an email campaign in the running Constant Contact sandbox and draw its results.

    Every active contact of the lists gets it; opens, clicks, bounces, opt-outs (which
    unsubscribe) and forwards are drawn at the given shares of recipients, spread over the hours
    after the send and never past the sandbox clock. Prints the ids and counts as JSON.
    """
    base = cc_url.rstrip("/")
    session = _session(ca_bundle)
    spread = spread_hours * 3600
    if sent_at is None:
        now = datetime.fromisoformat(_call(session, "GET", f"{base}/_sandbox/clock")["now"])
        sent_at = (now - timedelta(seconds=spread)).isoformat()
    body: dict[str, Any] = {
        "name": name,
        "subject": subject or name,
        "list_ids": [x for x in lists if is_uuid(x)],
        "list_names": [x for x in lists if not is_uuid(x)],
        "sent_at": sent_at,
        "links": list(links),
        "rates": {
            "open": opens,
            "click": clicks,
            "bounce": bounces,
            "optout": optouts,
            "forward": forwards,
            "reopen": reopens,
        },
        "spread_seconds": spread,
        "seed": random_seed,
    }
    if type_code is not None:
        body["type_code"] = type_code
    if type_name is not None:
        body["type"] = type_name
    click.echo(json.dumps(_post(session, f"{base}/_sandbox/emails", body), sort_keys=True))
