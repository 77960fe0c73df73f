"""Outbound Messages shaped as Salesforce sends them, for the parser's and the endpoint's tests."""

from __future__ import annotations

from middleware.salesforce.ids import to_18

ORG_ID = "00DSB00000000012AA"  # 18-character form of 00DSB0000000001
OTHER_ORG = "00DXX0000000009AAA"


def contact_id(n: int) -> str:
    return to_18(f"003SB{n:010d}")


def notification(n: int, record_id: str | None = None, sobject: str = "Contact") -> str:
    record_id = record_id or contact_id(n)
    return (
        f"<Notification><Id>04lSB{n:013d}</Id>"
        f'<sObject xsi:type="sf:{sobject}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{record_id}</sf:Id><sf:Email>n{n}@example.org</sf:Email>"
        "</sObject></Notification>"
    )


def message(*items: str, org_id: str = ORG_ID) -> bytes:
    """An Outbound Message shaped as Salesforce sends it."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org_id}</OrganizationId>"
        "<ActionId>04kSB0000000001AAA</ActionId>"
        '<SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://sf.test/services/Soap/c/66.0/00DSB0000000001</EnterpriseUrl>"
        "<PartnerUrl>https://sf.test/services/Soap/u/66.0/00DSB0000000001</PartnerUrl>"
        f"{''.join(items)}"
        "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()
