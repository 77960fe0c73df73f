"""Salesforce Outbound Messages in: the SOAP 1.1 `notifications` message, read into `ChangeHint`s.

An Outbound Message (a Flow's or workflow rule's outbound action) is a SOAP 1.1 envelope whose
body is `notifications` in the namespace `http://soap.sforce.com/2005/09/outbound`: the sending
org's `OrganizationId`, the `ActionId`, a `SessionId` (nil unless the admin asked for one), the
`EnterpriseUrl` and `PartnerUrl`, then 1 to 100 `Notification`s, each with its own `Id` and an
`sObject` (`xsi:type="sf:Contact"`) holding `sf:Id` and the fields the admin selected.

The receiver answers the exact `ACK` once the notifications are durable; anything else is a
failure Salesforce retries (for 24 hours, out of order, sometimes twice), so each notification
becomes a hint deduplicated on its notification id, never on the record: two changes of one
record are two notifications and both count. The fields sent are not read: the flush re-reads
the record, which is also fresher than a message that waited in Salesforce's retry queue.

XML is parsed by defusedxml only, with DTDs refused (a SOAP message must not carry one, and an
entity declaration is the way into billion-laughs and external-entity attacks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from middleware.salesforce import ids
from middleware.salesforce.events import ChangeHint

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

# Salesforce's delivery limit per message (the WSDL's maxOccurs).
MAX_NOTIFICATIONS = 100

# The acknowledgement Salesforce requires, byte for byte as it documents it: anything else is
# a failed delivery.
ACK = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)

SOURCE = "outbound"
EVENT_KEY_PREFIX = "om:"

_ORG_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_OBJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_NOTIFICATION_ID = re.compile(r"[A-Za-z0-9]{1,40}")


class InvalidMessage(ValueError):
    """Not an Outbound Message we can read; ``forbidden`` when defusedxml refused the XML."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


@dataclass(frozen=True)
class Notification:
    """One notification: its own id (the dedupe key) and the record it names."""

    notification_id: str
    entity: str
    record_id: str  # 18-character form

    def hint(self) -> ChangeHint:
        """The change hint: the record's current state is re-read by the flush."""
        return ChangeHint(
            entity=self.entity,
            record_ids=(self.record_id,),
            # A notification carries the record as it is now, not what happened to it.
            change_type="UPDATE",
            # An Outbound Message says nothing about who made the change.
            is_own_echo=False,
            event_key=EVENT_KEY_PREFIX + self.notification_id,
            transaction_key=None,
            commit_timestamp=None,
            changed_fields=None,
            source=SOURCE,
        )


@dataclass(frozen=True)
class OutboundMessage:
    """One `notifications` message."""

    organization_id: str
    action_id: str | None
    notifications: tuple[Notification, ...]

    def hints(self) -> list[ChangeHint]:
        return [n.hint() for n in self.notifications]


def same_org(given: str | None, ours: str | None) -> bool:
    """Whether two org ids name one org: a 15-character id and its 18-character form are equal.

    The first 15 characters are the id itself, compared case-sensitively; the last three of the
    18-character form only encode their case, so they are not compared.
    """
    if not given or not ours:
        return False
    if not (_ORG_ID.fullmatch(given) and _ORG_ID.fullmatch(ours)):
        return False
    return given[:15] == ours[:15]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(parent: Element, ns: str, name: str) -> Element | None:
    return parent.find(f"{{{ns}}}{name}")


def _text(element: Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def parse(body: bytes) -> OutboundMessage:
    """Read an Outbound Message; raise `InvalidMessage` saying what is wrong with it.

    Nothing is returned for a message with any bad notification: Salesforce retries the whole
    message, so taking part of it would only hide the problem.
    """
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InvalidMessage(
            f"refused: the XML declares a DTD or entities ({type(exc).__name__})", forbidden=True
        ) from None
    except ParseError as exc:
        raise InvalidMessage(f"not well-formed XML: {exc}") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise InvalidMessage("not a SOAP 1.1 envelope")
    soap_body = _child(root, SOAP_ENV, "Body")
    notifications = None
    if soap_body is not None:
        notifications = _child(soap_body, OUTBOUND_NS, "notifications")
    if notifications is None:
        raise InvalidMessage(
            f"not an Outbound Message: the SOAP body has no notifications element in {OUTBOUND_NS}"
        )
    org_id = _text(_child(notifications, OUTBOUND_NS, "OrganizationId"))
    if not _ORG_ID.fullmatch(org_id):
        raise InvalidMessage("OrganizationId is missing or not a Salesforce org id")
    items = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    if not items:
        raise InvalidMessage("the message has no Notification")
    if len(items) > MAX_NOTIFICATIONS:
        raise InvalidMessage(
            f"the message has {len(items)} notifications; Salesforce sends at most "
            f"{MAX_NOTIFICATIONS}"
        )
    parsed = tuple(_notification(item, index) for index, item in enumerate(items))
    action = _text(_child(notifications, OUTBOUND_NS, "ActionId")) or None
    return OutboundMessage(organization_id=org_id, action_id=action, notifications=parsed)


def _notification(item: Element, index: int) -> Notification:
    where = f"Notification[{index}]"
    notification_id = _text(_child(item, OUTBOUND_NS, "Id"))
    if not _NOTIFICATION_ID.fullmatch(notification_id):
        raise InvalidMessage(f"{where}: Id is missing or not an id")
    sobject = _child(item, OUTBOUND_NS, "sObject")
    if sobject is None:
        raise InvalidMessage(f"{where}: no sObject")
    # `xsi:type` is a QName such as `sf:Contact`; the local part names the object.
    entity = (sobject.get(f"{{{XSI_NS}}}type") or "").rpartition(":")[2]
    if not _OBJECT_NAME.fullmatch(entity):
        raise InvalidMessage(f"{where}: sObject has no xsi:type naming its object")
    # The record's fields are in the sObject namespace (urn:sobject.enterprise.soap.sforce.com).
    record_id = next((_text(f) for f in sobject if _local(str(f.tag)) == "Id"), "")
    try:
        record_id = ids.to_18(record_id)
    except ids.InvalidId as exc:
        raise InvalidMessage(f"{where}: sObject Id: {exc}") from None
    return Notification(notification_id=notification_id, entity=entity, record_id=record_id)
