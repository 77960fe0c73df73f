"""Outbound Messages in: `POST /webhooks/salesforce/<setup_id>/outbound`, SOAP 1.1 from Salesforce.

A Flow's (or workflow rule's) Outbound Message action posts `notifications` here (see
`middleware.salesforce.outbound`). Salesforce can neither sign the body nor add a header, so the
setup's webhook secret travels in the endpoint URL the admin enters: `?secret=<secret>`. It is
compared in constant time; an unknown setup costs the same comparison against a stand-in secret
and gets the same answer as a wrong secret, so the answer never tells which setup ids exist.
Only setups whose `salesforce_changes` name `outbound` take these messages.

After authentication, the body (within `webhook_max_bytes`) is parsed with defusedxml, DTDs and
entity declarations refused; its `OrganizationId` must be the org of the setup's Salesforce
connection (anyone can make another org send us messages). Each notification becomes a change
hint deduplicated on its notification id, recorded by `services.changes.record` like every door.

Answers: the exact `Ack` (200, text/xml) once the ids are durable in Redis and their flush is
scheduled; otherwise a SOAP 1.1 Fault with HTTP 500 (what SOAP 1.1 over HTTP uses for faults):
`soapenv:Client` for what the request itself gets wrong (credentials, door not opened, not an
Outbound Message, DTD, too large, another org), `soapenv:Server` when we cannot record it now
(store or Redis down, the flush not scheduled, the connection's org id unknown). Salesforce
retries every non-Ack for 24 hours, and shows the faultstring in its delivery-failure queue.

This route is served by Flask (the JSON webhook's fast path matches `/webhooks/salesforce/<id>`
only), with Flask's request hooks.
"""

from __future__ import annotations

import logging
from xml.sax.saxutils import escape

from flask import Blueprint, Response, request

from middleware import metrics
from middleware.salesforce import outbound as om
from middleware.services import changes
from middleware.web import get_redis, get_settings, webhooks
from middleware.web.webhook_input import BodyTooLarge, read_body
from middleware.web.webhooks import SetupView, load_setup

log = logging.getLogger(__name__)

bp = Blueprint("outbound_messages", __name__, url_prefix="/webhooks")

DOOR = "outbound"
SOURCE = "salesforce_outbound"  # the metrics label of this door
CONTENT_TYPE = "text/xml; charset=utf-8"


def _soap(body: bytes, status: int) -> Response:
    return Response(body, status=status, content_type=CONTENT_TYPE)


def fault(code: str, reason: str) -> Response:
    """A SOAP 1.1 Fault (HTTP 500): ``code`` is ``Client`` or ``Server``."""
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>soapenv:{code}</faultcode><faultstring>{escape(reason)}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return _soap(body.encode(), 500)


def _refused(reason: str, code: str, message: str) -> Response:
    metrics.webhook_event(SOURCE, "rejected", reason)
    return fault(code, message)


def _authenticated(view: SetupView | None, given: str) -> bool:
    """Whether `given` is the setup's secret; an unknown setup costs the same and fails."""
    return webhooks.secret_matches(webhooks.secret_of(view), given) and view is not None


@bp.post("/salesforce/<int:setup_id>/outbound")
def outbound_message(setup_id: int) -> Response:
    """Take one Outbound Message for one setup: Ack once recorded, a SOAP Fault otherwise."""
    settings = get_settings()
    try:
        body = read_body(settings.webhook_max_bytes, request.environ)
    except BodyTooLarge:
        return _refused(
            "too_large", "Client", f"bodies are limited to {settings.webhook_max_bytes} bytes"
        )
    try:
        view = load_setup(setup_id)
    except Exception:
        log.exception("could not load setup %s for an outbound message", setup_id)
        return _refused("store_down", "Server", "the store is unavailable; retry")

    given = request.args.get("secret", "")
    if not _authenticated(view, given):
        # One label and one answer for both: neither /metrics nor the fault tells which ids exist.
        if view is not None:
            log.info("outbound message for setup %s refused: missing or wrong secret", setup_id)
        why = "no secret was sent (add ?secret=<the setup's webhook secret> to the endpoint URL)"
        if given:
            why = "unknown setup, or wrong secret"
        return _refused(
            "unauthorized", "Client", f"no setup {setup_id} accepts this request: {why}"
        )
    assert view is not None  # an unknown setup never authenticates

    if DOOR not in view.doors:
        return _refused(
            "door_closed",
            "Client",
            f'setup {setup_id} does not take Outbound Messages: add "outbound" to its '
            "salesforce_changes",
        )
    try:
        message = om.parse(body)
    except om.InvalidMessage as exc:
        return _refused("forbidden_xml" if exc.forbidden else "invalid", "Client", str(exc))
    if not view.org_id:
        log.error("setup %s: its Salesforce connection has no org id to check against", setup_id)
        return _refused(
            "org_unknown",
            "Server",
            f"setup {setup_id} cannot check the sending org: its Salesforce connection has no "
            "org id (reconnect it)",
        )
    if not om.same_org(message.organization_id, view.org_id):
        log.warning(
            "outbound message for setup %s from org %s refused: the setup's org is %s",
            setup_id,
            message.organization_id,
            view.org_id,
        )
        return _refused(
            "other_org",
            "Client",
            f"OrganizationId {message.organization_id} is not the org of setup {setup_id}",
        )

    try:
        recorded = changes.record(
            get_redis(), view.scope, message.hints(), flush_delay=settings.flush_delay_seconds
        )
    except changes.NotRecorded as exc:
        log.error("outbound message for setup %s not recorded: %s", setup_id, exc, exc_info=exc)
        return _refused(exc.reason, "Server", str(exc))
    metrics.webhook_event(SOURCE, "accepted", "duplicate" if not recorded.accepted else "")
    return _soap(om.ACK, 200)
