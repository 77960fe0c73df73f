"""The org's schema: which sObjects and fields exist for an org profile, and their describe shapes.

`build_schema(profiles, custom_fields)` assembles the objects for a comma-separated ORG_PROFILE
(`standard`, `person_accounts`, `state_country`, `npsp`) plus the config's CUSTOM_FIELDS
(`{"Contact": [{"name": "Favorite_Color__c", "type": "string", "length": 80}, ...]}`; keys
`name`, `type`, optional `length`, `label`, `values` (picklist), `restricted`, `referenceTo`,
`relationshipName`, `externalId`, `unique`, `required`, `defaultValue`).

Field lookups are case-insensitive (`SObject.field("email")`), answers use canonical names.
`SObject.describe()` / `OrgSchema.describe_global()` return Salesforce's DescribeSObjectResult and
DescribeGlobal shapes (plain dicts; the REST layer adds `urls` prefixes only if it wants others).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.salesforce import _geo

PROFILES = ("standard", "person_accounts", "state_country", "npsp")

# Storage kinds: how a value sits in SQLite.
TEXT_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox"}
)
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})

ADDRESS_PARTS = (
    ("Street", "street", "textarea", 255),
    ("City", "city", "string", 40),
    ("State", "state", "string", 80),
    ("PostalCode", "postalCode", "string", 20),
    ("Country", "country", "string", 80),
    ("Latitude", "latitude", "double", 0),
    ("Longitude", "longitude", "double", 0),
    ("GeocodeAccuracy", "geocodeAccuracy", "picklist", 40),
)
CODE_PARTS = (("StateCode", "stateCode"), ("CountryCode", "countryCode"))

GEOCODE_VALUES = (
    "Address",
    "NearAddress",
    "Block",
    "Street",
    "ExtendedZip",
    "Zip",
    "Neighborhood",
    "City",
    "County",
    "State",
    "Unknown",
)
SALUTATIONS = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", "Mx.")
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)
INDUSTRIES = (
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Other",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
)
RATINGS = ("Hot", "Warm", "Cold")
ACCOUNT_TYPES = (
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
)
CAMPAIGN_TYPES = (
    "Advertisement",
    "Banner Ads",
    "Conference",
    "Direct Mail",
    "Email",
    "Other",
    "Partners",
    "Public Relations",
    "Referral Program",
    "Telemarketing",
    "Trade Show",
    "Webinar",
)
CAMPAIGN_STATUSES = ("Planned", "In Progress", "Completed", "Aborted")
# The two CampaignMemberStatus rows Salesforce gives every new campaign: (Label, IsDefault,
# HasResponded, SortOrder). A campaign's members may only take its own statuses' labels.
DEFAULT_MEMBER_STATUSES = (("Sent", True, False, 1), ("Responded", False, True, 2))
MEMBER_STATUSES = tuple(label for label, *_ in DEFAULT_MEMBER_STATUSES)

_LABELS = {
    "Id": "{label} ID",
    "HasOptedOutOfEmail": "Email Opt Out",
    "HasOptedOutOfFax": "Fax Opt Out",
    "DoNotCall": "Do Not Call",
    "IsDeleted": "Deleted",
    "OwnerId": "Owner ID",
    "CreatedById": "Created By ID",
    "LastModifiedById": "Last Modified By ID",
    "SystemModstamp": "System Modstamp",
    "MobilePhone": "Mobile Phone",
    "Email": "Email",
    "IsEmailBounced": "Is Email Bounced",
    "NumberOfEmployees": "Employees",
    "IsPersonAccount": "Is Person Account",
}


def _auto_label(name: str) -> str:
    base = re.sub(r"__(c|pc)$", "", name)
    base = re.sub(r"^[a-z0-9]+__", "", base)  # managed-package namespace
    base = base.replace("_", " ")
    base = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", base)
    if base.endswith(" Id") and name.endswith("Id"):
        base = base[:-3] + " ID"
    return base.strip()


@dataclass
class FieldDef:
    """One field of an sObject, with the properties describe reports and validation needs."""

    name: str
    type: str
    length: int = 0
    label: str = ""
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    required: bool = (
        False  # REQUIRED_FIELD_MISSING on create when absent (and on update when nulled)
    )
    custom: bool = False
    external_id: bool = False
    id_lookup: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default: Any = None
    calculated: bool = False
    filterable: bool = True
    sortable: bool = True
    compound: str | None = None  # the compound field this one belongs to (MailingAddress)
    components: tuple[str, ...] = ()  # for a compound field: its parts, in order
    component_keys: tuple[str, ...] = ()  # their keys inside the nested value (street, city...)
    expr: str | None = None  # SQL computed at read time ({t} = the table alias); not stored
    precision: int = 0
    scale: int = 0

    @property
    def stored(self) -> bool:
        return self.type != "address" and self.expr is None

    @property
    def is_text(self) -> bool:
        return self.type in TEXT_TYPES

    def describe(self) -> dict[str, Any]:
        picklist = [
            {
                "active": True,
                "defaultValue": value == self.default,
                "label": value,
                "validFor": None,
                "value": value,
            }
            for value in self.picklist
        ]
        soap = {
            "id": "tns:ID",
            "reference": "tns:ID",
            "boolean": "xsd:boolean",
            "date": "xsd:date",
            "datetime": "xsd:dateTime",
            "double": "xsd:double",
            "currency": "xsd:double",
            "percent": "xsd:double",
            "int": "xsd:int",
            "address": "urn:address",
            "base64": "xsd:base64Binary",
        }.get(self.type, "xsd:string")
        return {
            "aggregatable": self.type not in ("textarea", "address", "base64")
            or self.length <= 255,
            "autoNumber": False,
            "byteLength": self.length * 3 if self.length else 0,
            "calculated": self.calculated,
            "calculatedFormula": None,
            "caseSensitive": self.type in ID_TYPES,
            "compoundFieldName": self.compound,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default,
            "defaultedOnCreate": self.default is not None or self.type == "boolean",
            "digits": 9 if self.type == "int" else 0,
            "externalId": self.external_id,
            "filterable": self.filterable,
            "groupable": self.filterable and self.type not in NUMBER_TYPES | {"datetime"},
            "idLookup": self.id_lookup,
            "label": self.label,
            "length": self.length,
            "name": self.name,
            "nameField": self.name == "Name",
            "nillable": self.nillable,
            "picklistValues": picklist,
            "precision": self.precision,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted,
            "scale": self.scale,
            "soapType": soap,
            "sortable": self.sortable,
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


@dataclass
class ChildRelationship:
    child_sobject: str
    field: str
    relationship_name: str | None
    cascade_delete: bool = False


@dataclass
class SObject:
    """One sObject type: its fields in describe order and how to find them by any case."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    custom: bool = False
    # What the API lets a client do with the object as a whole (Files objects are restricted).
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    undeletable: bool = True
    fields: dict[str, FieldDef] = field(default_factory=dict)
    children: list[ChildRelationship] = field(default_factory=list)
    _by_lower: dict[str, FieldDef] = field(default_factory=dict)
    _rel_by_lower: dict[str, FieldDef] = field(default_factory=dict)

    def add(self, fd: FieldDef) -> FieldDef:
        if not fd.label:
            fd.label = _LABELS.get(fd.name, _auto_label(fd.name)).format(label=self.label)
        self.fields[fd.name] = fd
        self._by_lower[fd.name.lower()] = fd
        if fd.relationship_name:
            self._rel_by_lower[fd.relationship_name.lower()] = fd
        return fd

    def field(self, name: str) -> FieldDef | None:
        """A field by API name, ignoring case."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field behind a parent relationship name (`Account` → AccountId)."""
        return self._rel_by_lower.get(name.lower())

    def stored_fields(self) -> list[FieldDef]:
        return [f for f in self.fields.values() if f.stored]

    def describe(self, record_types: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """DescribeSObjectResult; `record_types` are this object's RecordType rows, if any."""
        base = f"/services/data/vXX.X/sobjects/{self.name}"
        infos = [
            {
                "active": bool(rt["IsActive"]),
                "available": bool(rt["IsActive"]),
                "defaultRecordTypeMapping": i == 0,
                "developerName": rt["DeveloperName"],
                "master": False,
                "name": rt["Name"],
                "recordTypeId": rt["Id"],
                "urls": {"layout": f"{base}/describe/layouts/{rt['Id']}"},
            }
            for i, rt in enumerate(record_types or [])
        ]
        master = {
            "active": True,
            "available": True,
            "defaultRecordTypeMapping": not infos,
            "developerName": "Master",
            "master": True,
            "name": "Master",
            "recordTypeId": "012000000000000AAA",
            "urls": {"layout": f"{base}/describe/layouts/012000000000000AAA"},
        }
        return {
            "actionOverrides": [],
            "activateable": False,
            "childRelationships": [
                {
                    "cascadeDelete": c.cascade_delete,
                    "childSObject": c.child_sobject,
                    "deprecatedAndHidden": False,
                    "field": c.field,
                    "relationshipName": c.relationship_name,
                    "restrictedDelete": False,
                }
                for c in self.children
            ],
            "compactLayoutable": True,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deletable": self.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "fields": [f.describe() for f in self.fields.values()],
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": self.name in ("Contact", "Lead", "Account"),
            "name": self.name,
            "queryable": True,
            "recordTypeInfos": [*infos, master],
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": self.undeletable,
            "updateable": self.updateable,
            "urls": {
                "compactLayouts": f"{base}/describe/compactLayouts",
                "rowTemplate": f"{base}/{{ID}}",
                "describe": f"{base}/describe",
                "sobject": base,
                "layouts": f"{base}/describe/layouts",
            },
        }

    def global_entry(self) -> dict[str, Any]:
        base = f"/services/data/vXX.X/sobjects/{self.name}"
        return {
            "activateable": False,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deletable": self.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": self.name in ("Contact", "Lead", "Account"),
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": self.undeletable,
            "updateable": self.updateable,
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }


@dataclass
class OrgSchema:
    """Every sObject of one org, with the profile flags that shaped it."""

    objects: dict[str, SObject]
    profiles: frozenset[str]
    _by_lower: dict[str, SObject] = field(default_factory=dict)
    _by_prefix: dict[str, SObject] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_lower = {o.name.lower(): o for o in self.objects.values()}
        self._by_prefix = {o.key_prefix: o for o in self.objects.values()}

    @property
    def person_accounts(self) -> bool:
        return "person_accounts" in self.profiles

    @property
    def state_country(self) -> bool:
        return "state_country" in self.profiles

    def sobject(self, name: str) -> SObject | None:
        return self._by_lower.get(name.lower())

    def by_prefix(self, prefix: str) -> SObject | None:
        return self._by_prefix.get(prefix)

    def describe_global(self) -> dict[str, Any]:
        return {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [o.global_entry() for o in self.objects.values()],
        }


# --------------------------------------------------------------------------- building


def _id(obj: SObject) -> None:
    obj.add(
        FieldDef(
            "Id",
            "id",
            18,
            nillable=False,
            createable=False,
            updateable=False,
            id_lookup=True,
            unique=False,
        )
    )
    obj.add(FieldDef("IsDeleted", "boolean", nillable=False, createable=False, updateable=False))


def _system(obj: SObject, owner: bool = True) -> None:
    if owner:
        obj.add(
            FieldDef(
                "OwnerId",
                "reference",
                18,
                nillable=False,
                reference_to=("User",),
                relationship_name="Owner",
            )
        )
    for name in ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById"):
        kind = "datetime" if name.endswith("Date") else "reference"
        obj.add(
            FieldDef(
                name,
                kind,
                18 if kind == "reference" else 0,
                nillable=False,
                createable=False,
                updateable=False,
                reference_to=("User",) if kind == "reference" else (),
                relationship_name=name[:-2] if kind == "reference" else None,
            )
        )
    obj.add(
        FieldDef("SystemModstamp", "datetime", nillable=False, createable=False, updateable=False)
    )


def _s(name: str, length: int, **kw: Any) -> FieldDef:
    return FieldDef(name, "string", length, **kw)


def _ref(name: str, to: str, rel: str | None = None, **kw: Any) -> FieldDef:
    if rel is None:
        rel = name[:-2] if name.endswith("Id") else name.replace("__c", "__r")
    return FieldDef(name, "reference", 18, reference_to=(to,), relationship_name=rel, **kw)


def _pick(name: str, values: Iterable[str], **kw: Any) -> FieldDef:
    kw.setdefault("length", 255)
    return FieldDef(name, "picklist", picklist=tuple(values), **kw)


def _bool(name: str, **kw: Any) -> FieldDef:
    kw.setdefault("default", False)
    return FieldDef(name, "boolean", nillable=False, **kw)


def _ro(fd: FieldDef) -> FieldDef:
    fd.createable = False
    fd.updateable = False
    return fd


def _address(obj: SObject, compound: str, prefix: str, state_country: bool) -> None:
    parts = []
    keys = []
    for suffix, key, kind, length in ADDRESS_PARTS:
        name = prefix + suffix
        if kind == "picklist":
            fd = _pick(name, GEOCODE_VALUES, restricted=True)
            fd.length = length
        elif kind == "double":
            fd = FieldDef(name, "double", precision=18, scale=15)
        else:
            fd = FieldDef(name, kind, length)
        fd.compound = compound
        obj.add(fd)
        parts.append(name)
        keys.append(key)
        if suffix == "Country" and state_country:
            for csuffix, ckey in CODE_PARTS:
                cname = prefix + csuffix
                values = _geo.countries() if csuffix == "CountryCode" else _all_state_codes()
                cf = _pick(cname, values, restricted=True)
                cf.compound = compound
                obj.add(cf)
                parts.append(cname)
                keys.append(ckey)
    obj.add(
        FieldDef(
            compound,
            "address",
            createable=False,
            updateable=False,
            filterable=False,
            sortable=False,
            components=tuple(parts),
            component_keys=tuple(keys),
        )
    )


def _all_state_codes() -> list[str]:
    seen: dict[str, None] = {}
    for states in _geo.STATES.values():
        for code in states:
            seen[code] = None
    return list(seen)


def _name_fields(obj: SObject, last_required: bool = True) -> None:
    obj.add(_s("LastName", 80, required=last_required, nillable=not last_required))
    obj.add(_s("FirstName", 40))
    obj.add(_pick("Salutation", SALUTATIONS, length=40))
    obj.add(_ro(_s("Name", 121, nillable=False)))


def _bounce(obj: SObject) -> None:
    obj.add(_s("EmailBouncedReason", 255))
    obj.add(FieldDef("EmailBouncedDate", "datetime"))


def _contact(sc: bool, person: bool) -> SObject:
    o = SObject("Contact", "Contact", "Contacts", "003")
    _id(o)
    o.add(_ro(_ref("MasterRecordId", "Contact", "MasterRecord")))
    o.add(_ref("AccountId", "Account", "Account"))
    if person:
        o.add(_ro(_bool("IsPersonAccount")))
    _name_fields(o)
    _address(o, "OtherAddress", "Other", sc)
    _address(o, "MailingAddress", "Mailing", sc)
    for phone in ("Phone", "Fax", "MobilePhone", "HomePhone", "OtherPhone", "AssistantPhone"):
        o.add(FieldDef(phone, "phone", 40))
    o.add(_ref("ReportsToId", "Contact", "ReportsTo"))
    o.add(FieldDef("Email", "email", 80, id_lookup=True))
    o.add(_s("Title", 128))
    o.add(_s("Department", 80))
    o.add(_s("AssistantName", 40))
    o.add(_pick("LeadSource", LEAD_SOURCES, length=40))
    o.add(FieldDef("Birthdate", "date"))
    o.add(FieldDef("Description", "textarea", 32000, filterable=False, sortable=False))
    _system(o)
    o.add(_bool("HasOptedOutOfEmail"))
    o.add(_bool("HasOptedOutOfFax"))
    o.add(_bool("DoNotCall"))
    o.add(_ro(FieldDef("LastActivityDate", "date")))
    _bounce(o)
    o.add(_ro(_bool("IsEmailBounced")))
    o.add(_ref("IndividualId", "Individual", "Individual"))
    return o


def _lead(sc: bool, person: bool) -> SObject:
    o = SObject("Lead", "Lead", "Leads", "00Q")
    _id(o)
    o.add(_ro(_ref("MasterRecordId", "Lead", "MasterRecord")))
    _name_fields(o)
    o.add(_s("Title", 128))
    # A person-account org converts company-less leads into person accounts.
    o.add(_s("Company", 255, required=not person, nillable=person))
    _address(o, "Address", "", sc)
    o.add(FieldDef("Phone", "phone", 40))
    o.add(FieldDef("MobilePhone", "phone", 40))
    o.add(FieldDef("Fax", "phone", 40))
    o.add(FieldDef("Email", "email", 80, id_lookup=True))
    o.add(FieldDef("Website", "url", 255))
    o.add(FieldDef("Description", "textarea", 32000, filterable=False, sortable=False))
    o.add(_pick("LeadSource", LEAD_SOURCES, length=40))
    o.add(
        _pick(
            "Status",
            LEAD_STATUSES,
            length=40,
            restricted=True,
            nillable=False,
            default="Open - Not Contacted",
        )
    )
    o.add(_pick("Industry", INDUSTRIES, length=40))
    o.add(_pick("Rating", RATINGS, length=40))
    o.add(FieldDef("AnnualRevenue", "currency", precision=18, scale=0))
    o.add(FieldDef("NumberOfEmployees", "int", precision=8))
    _system(o)
    o.add(_bool("HasOptedOutOfEmail"))
    o.add(_ro(_bool("IsConverted")))
    o.add(_ro(FieldDef("ConvertedDate", "date")))
    o.add(_ro(_ref("ConvertedAccountId", "Account", "ConvertedAccount")))
    o.add(_ro(_ref("ConvertedContactId", "Contact", "ConvertedContact")))
    o.add(_ro(_ref("ConvertedOpportunityId", "Opportunity", "ConvertedOpportunity")))
    o.add(_bool("IsUnreadByOwner"))
    o.add(_ro(FieldDef("LastActivityDate", "date")))
    o.add(_bool("DoNotCall"))
    o.add(_bool("HasOptedOutOfFax"))
    _bounce(o)
    o.add(_ref("IndividualId", "Individual", "Individual"))
    return o


PERSON_FIELD_MAP: dict[str, str] = {
    # Account field -> the person Contact field it mirrors
    "FirstName": "FirstName",
    "LastName": "LastName",
    "Salutation": "Salutation",
    "PersonEmail": "Email",
    "PersonHasOptedOutOfEmail": "HasOptedOutOfEmail",
    "PersonMailingStreet": "MailingStreet",
    "PersonMailingCity": "MailingCity",
    "PersonMailingState": "MailingState",
    "PersonMailingPostalCode": "MailingPostalCode",
    "PersonMailingCountry": "MailingCountry",
    "PersonMailingStateCode": "MailingStateCode",
    "PersonMailingCountryCode": "MailingCountryCode",
    "PersonMailingLatitude": "MailingLatitude",
    "PersonMailingLongitude": "MailingLongitude",
    "PersonMailingGeocodeAccuracy": "MailingGeocodeAccuracy",
    "PersonMobilePhone": "MobilePhone",
    "PersonHomePhone": "HomePhone",
    "PersonOtherPhone": "OtherPhone",
    "PersonTitle": "Title",
    "PersonDepartment": "Department",
    "PersonBirthdate": "Birthdate",
    "PersonDoNotCall": "DoNotCall",
    "PersonHasOptedOutOfFax": "HasOptedOutOfFax",
    "PersonLeadSource": "LeadSource",
    "PersonEmailBouncedReason": "EmailBouncedReason",
    "PersonEmailBouncedDate": "EmailBouncedDate",
    "PersonIndividualId": "IndividualId",
}


def _account(sc: bool, person: bool) -> SObject:
    o = SObject("Account", "Account", "Accounts", "001")
    _id(o)
    o.add(_ro(_ref("MasterRecordId", "Account", "MasterRecord")))
    # Business accounts need a Name; person accounts compute it from FirstName/LastName.
    o.add(_s("Name", 255, required=True, nillable=False))
    if person:
        o.add(_s("LastName", 80))
        o.add(_s("FirstName", 40))
        o.add(_pick("Salutation", SALUTATIONS, length=40))
    o.add(_pick("Type", ACCOUNT_TYPES, length=40))
    o.add(_ref("ParentId", "Account", "Parent"))
    _address(o, "BillingAddress", "Billing", sc)
    _address(o, "ShippingAddress", "Shipping", sc)
    o.add(FieldDef("Phone", "phone", 40))
    o.add(FieldDef("Fax", "phone", 40))
    o.add(_s("AccountNumber", 40))
    o.add(FieldDef("Website", "url", 255))
    o.add(_s("Sic", 20))
    o.add(_pick("Industry", INDUSTRIES, length=40))
    o.add(FieldDef("AnnualRevenue", "currency", precision=18, scale=0))
    o.add(FieldDef("NumberOfEmployees", "int", precision=8))
    o.add(_pick("Ownership", ("Public", "Private", "Subsidiary", "Other"), length=40))
    o.add(_s("TickerSymbol", 20))
    o.add(FieldDef("Description", "textarea", 32000, filterable=False, sortable=False))
    o.add(_pick("Rating", RATINGS, length=40))
    o.add(_s("Site", 80))
    _system(o)
    o.add(_ro(FieldDef("LastActivityDate", "date")))
    o.add(_pick("AccountSource", LEAD_SOURCES, length=40))
    if person:
        o.add(_ro(_ref("PersonContactId", "Contact", "PersonContact")))
        o.add(_ro(_bool("IsPersonAccount")))
        _address(o, "PersonMailingAddress", "PersonMailing", sc)
        for name in (
            "PersonMobilePhone",
            "PersonHomePhone",
            "PersonOtherPhone",
        ):
            o.add(FieldDef(name, "phone", 40))
        o.add(FieldDef("PersonEmail", "email", 80))
        o.add(_s("PersonTitle", 80))
        o.add(_s("PersonDepartment", 80))
        o.add(FieldDef("PersonBirthdate", "date"))
        o.add(_pick("PersonLeadSource", LEAD_SOURCES, length=40))
        o.add(_bool("PersonHasOptedOutOfEmail"))
        o.add(_bool("PersonHasOptedOutOfFax"))
        o.add(_bool("PersonDoNotCall"))
        o.add(_s("PersonEmailBouncedReason", 255))
        o.add(FieldDef("PersonEmailBouncedDate", "datetime"))
        o.add(_ref("PersonIndividualId", "Individual", "PersonIndividual"))
    return o


def _campaign() -> SObject:
    o = SObject("Campaign", "Campaign", "Campaigns", "701")
    _id(o)
    o.add(_s("Name", 80, required=True, nillable=False))
    o.add(_ref("ParentId", "Campaign", "Parent"))
    o.add(_pick("Type", CAMPAIGN_TYPES, length=40))
    o.add(_pick("Status", CAMPAIGN_STATUSES, length=40, default="Planned"))
    o.add(FieldDef("StartDate", "date"))
    o.add(FieldDef("EndDate", "date"))
    o.add(FieldDef("ExpectedRevenue", "currency", precision=18))
    o.add(FieldDef("BudgetedCost", "currency", precision=18))
    o.add(FieldDef("ActualCost", "currency", precision=18))
    o.add(FieldDef("ExpectedResponse", "percent", precision=10, scale=2))
    o.add(FieldDef("NumberSent", "double", precision=18))
    o.add(_bool("IsActive"))
    o.add(FieldDef("Description", "textarea", 32000, filterable=False, sortable=False))

    def members(where: str) -> str:
        return (
            'COALESCE((SELECT COUNT(*) FROM "CampaignMember" m WHERE m."CampaignId" = {t}."Id"'
            f' AND m."IsDeleted" = 0 AND {where}), 0)'
        )

    for name, where in (
        ("NumberOfLeads", 'm."LeadId" IS NOT NULL'),
        ("NumberOfContacts", 'm."ContactId" IS NOT NULL'),
        ("NumberOfResponses", 'm."HasResponded" = 1'),
        (
            "NumberOfConvertedLeads",
            'm."LeadId" IN (SELECT "Id" FROM "Lead" WHERE "IsConverted" = 1)',
        ),
    ):
        o.add(_ro(FieldDef(name, "int", precision=9, expr=members(where), calculated=True)))
    _system(o)
    o.add(_ro(FieldDef("LastActivityDate", "date")))
    o.add(_ref("CampaignMemberRecordTypeId", "RecordType", "CampaignMemberRecordType"))
    return o


def _campaign_member() -> SObject:
    o = SObject("CampaignMember", "Campaign Member", "Campaign Members", "00v")
    _id(o)
    o.add(
        _ref("CampaignId", "Campaign", "Campaign", required=True, nillable=False, updateable=False)
    )
    o.add(_ref("LeadId", "Lead", "Lead", updateable=False))
    o.add(_ref("ContactId", "Contact", "Contact", updateable=False))
    o.add(FieldDef("Status", "picklist", 40, picklist=MEMBER_STATUSES, default="Sent"))
    o.add(_ro(_bool("HasResponded")))
    o.add(_ro(FieldDef("FirstRespondedDate", "date")))
    # Read-only copies of the member's Contact or Lead, as Salesforce shows them: computed on read
    # so they are never stale after the person changes.
    person = (
        'COALESCE((SELECT c."{f}" FROM "Contact" c WHERE c."Id" = {{t}}."ContactId"),'
        ' (SELECT l."{g}" FROM "Lead" l WHERE l."Id" = {{t}}."LeadId"))'
    )
    copies = (
        ("Salutation", "picklist", "Salutation", "Salutation", 40),
        ("Name", "string", "Name", "Name", 121),
        ("FirstName", "string", "FirstName", "FirstName", 40),
        ("LastName", "string", "LastName", "LastName", 80),
        ("Title", "string", "Title", "Title", 128),
        ("Street", "textarea", "MailingStreet", "Street", 255),
        ("City", "string", "MailingCity", "City", 40),
        ("State", "string", "MailingState", "State", 80),
        ("PostalCode", "string", "MailingPostalCode", "PostalCode", 20),
        ("Country", "string", "MailingCountry", "Country", 80),
        ("Email", "email", "Email", "Email", 80),
        ("Phone", "phone", "Phone", "Phone", 40),
        ("MobilePhone", "phone", "MobilePhone", "MobilePhone", 40),
        ("HasOptedOutOfEmail", "boolean", "HasOptedOutOfEmail", "HasOptedOutOfEmail", 0),
        ("DoNotCall", "boolean", "DoNotCall", "DoNotCall", 0),
        ("LeadSource", "picklist", "LeadSource", "LeadSource", 40),
    )
    for name, kind, cfield, lfield, length in copies:
        o.add(
            _ro(
                FieldDef(
                    name,
                    kind,
                    length,
                    expr=person.format(f=cfield, g=lfield),
                    nillable=kind != "boolean",
                )
            )
        )
    o.add(
        _ro(
            FieldDef(
                "CompanyOrAccount",
                "string",
                255,
                expr=(
                    'COALESCE((SELECT a."Name" FROM "Contact" c JOIN "Account" a'
                    ' ON a."Id" = c."AccountId" WHERE c."Id" = {t}."ContactId"),'
                    ' (SELECT l."Company" FROM "Lead" l WHERE l."Id" = {t}."LeadId"))'
                ),
            )
        )
    )
    o.add(
        _ro(
            FieldDef(
                "Type",
                "string",
                40,
                expr="CASE WHEN {t}.\"ContactId\" IS NOT NULL THEN 'Contact' ELSE 'Lead' END",
            )
        )
    )
    o.add(
        _ro(
            FieldDef(
                "LeadOrContactId",
                "reference",
                18,
                expr='COALESCE({t}."ContactId", {t}."LeadId")',
                reference_to=("Contact", "Lead"),
            )
        )
    )
    _system(o, owner=False)
    return o


def _campaign_member_status() -> SObject:
    o = SObject("CampaignMemberStatus", "Campaign Member Status", "Campaign Member Statuses", "01Y")
    _id(o)
    fd = _ref("CampaignId", "Campaign", "Campaign", required=True, nillable=False, updateable=False)
    fd.label = "Campaign ID"
    o.add(fd)
    o.add(_s("Label", 765, required=True, nillable=False, label="Member Status"))
    o.add(FieldDef("SortOrder", "int", precision=9))
    o.add(_bool("IsDefault", label="Is Default"))
    o.add(_bool("HasResponded", label="Responded"))
    _system(o, owner=False)
    return o


# Task picklists as a new org ships them. Status and Priority are backed by the TaskStatus and
# TaskPriority setup tables in Salesforce (IsClosed / IsHighPriority per value), so only their
# values are accepted, as Lead.Status here.
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
TASK_PRIORITIES = ("High", "Normal", "Low")
TASK_SUBJECTS = ("Call", "Send Letter", "Send Quote", "Other")
TASK_TYPES = ("Call", "Email", "Meeting", "Other")
TASK_SUBTYPES = ("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")
# Objects a Task's WhatId (and a file's link) may name: the non-person objects the sandbox holds,
# plus Opportunity, which it does not hold but whose ids it accepts (see store.FOREIGN_PREFIXES).
ACTIVITY_PARENTS = ("Account", "Campaign", "Opportunity")
# What a file can be shared with: records with a feed, and users.
LINKABLE = ("Account", "Campaign", "Contact", "Lead", "Opportunity", "Task", "User")


def _task() -> SObject:
    o = SObject("Task", "Task", "Tasks", "00T")
    _id(o)
    who = FieldDef(
        "WhoId",
        "reference",
        18,
        label="Name ID",
        reference_to=("Contact", "Lead"),
        relationship_name="Who",
    )
    o.add(who)
    o.add(
        FieldDef(
            "WhatId",
            "reference",
            18,
            label="Related To ID",
            reference_to=ACTIVITY_PARENTS,
            relationship_name="What",
        )
    )
    o.add(FieldDef("Subject", "combobox", 255, picklist=TASK_SUBJECTS))
    o.add(FieldDef("ActivityDate", "date", label="Due Date Only"))
    o.add(
        _pick(
            "Status",
            TASK_STATUSES,
            length=40,
            restricted=True,
            required=True,
            nillable=False,
            default="Not Started",
        )
    )
    o.add(
        _pick(
            "Priority",
            TASK_PRIORITIES,
            length=40,
            restricted=True,
            required=True,
            nillable=False,
            default="Normal",
        )
    )
    # Derived from the picklist values, as Salesforce derives them from TaskStatus/TaskPriority:
    # computed on read so no write path (bulk load, snapshot) can leave them stale.
    o.add(
        _ro(
            FieldDef(
                "IsHighPriority",
                "boolean",
                label="High Priority",
                nillable=False,
                expr="CASE WHEN {t}.\"Priority\" = 'High' THEN 1 ELSE 0 END",
            )
        )
    )
    o.add(
        _ro(
            FieldDef(
                "IsClosed",
                "boolean",
                label="Closed",
                nillable=False,
                expr="CASE WHEN {t}.\"Status\" = 'Completed' THEN 1 ELSE 0 END",
            )
        )
    )
    o.add(FieldDef("Description", "textarea", 32000, filterable=False, sortable=False))
    o.add(_pick("Type", TASK_TYPES, length=40))
    o.add(_pick("TaskSubtype", TASK_SUBTYPES, length=40, restricted=True, updateable=False))
    o.add(_ro(FieldDef("CompletedDateTime", "datetime", label="Completed Date")))
    # The account Salesforce files the task under: the WhatId when that is an account, else the
    # account of the WhoId contact.
    o.add(
        _ro(
            FieldDef(
                "AccountId",
                "reference",
                18,
                reference_to=("Account",),
                relationship_name="Account",
                expr=(
                    "COALESCE(CASE WHEN substr({t}.\"WhatId\", 1, 3) = '001'"
                    ' THEN {t}."WhatId" END, (SELECT c."AccountId" FROM "Contact" c'
                    ' WHERE c."Id" = {t}."WhoId"))'
                ),
            )
        )
    )
    _system(o)
    o.fields["OwnerId"].label = "Assigned To ID"
    return o


def _content_version() -> SObject:
    # Versions are never deleted on their own: deleting the ContentDocument removes them all.
    o = SObject(
        "ContentVersion",
        "Content Version",
        "Content Versions",
        "068",
        deletable=False,
        undeletable=False,
    )
    _id(o)
    o.add(
        _ref(
            "ContentDocumentId",
            "ContentDocument",
            "ContentDocument",
            updateable=False,
            label="ContentDocument ID",
        )
    )
    o.add(_ro(_bool("IsLatest")))
    o.add(_ro(_s("VersionNumber", 20)))
    o.add(_s("Title", 255, nillable=False))
    o.add(FieldDef("Description", "textarea", 1000, filterable=False, sortable=False))
    o.add(_s("ReasonForChange", 1000))
    o.add(_s("PathOnClient", 500, updateable=False))
    o.add(
        FieldDef(
            "VersionData",
            "base64",
            updateable=False,
            filterable=False,
            sortable=False,
        )
    )
    o.add(_ro(FieldDef("ContentSize", "int", label="Size", precision=9)))
    o.add(_ro(_s("FileType", 20)))
    o.add(_ro(_s("FileExtension", 40)))
    o.add(_ro(_s("Checksum", 50)))
    o.add(
        _pick(
            "ContentLocation",
            ("S", "E", "L"),
            length=40,
            restricted=True,
            default="S",
            updateable=False,
        )
    )
    o.add(_pick("Origin", ("C", "H"), length=40, restricted=True, default="C", updateable=False))
    o.add(
        FieldDef(
            "FirstPublishLocationId",
            "reference",
            18,
            label="First Publish Location ID",
            reference_to=LINKABLE,
            relationship_name="FirstPublishLocation",
            updateable=False,
        )
    )
    _system(o)
    o.add(_ro(FieldDef("ContentModifiedDate", "datetime")))
    return o


def _content_document() -> SObject:
    # Made by inserting a ContentVersion, never directly.
    o = SObject("ContentDocument", "Content Document", "Content Documents", "069", createable=False)
    _id(o)
    _system(o)
    o.add(_ro(_s("Title", 255, nillable=False)))
    o.add(_ro(FieldDef("Description", "textarea", 1000, filterable=False, sortable=False)))
    o.add(_ro(_pick("PublishStatus", ("U", "P", "R"), length=40, restricted=True)))
    o.add(
        _ro(
            _ref(
                "LatestPublishedVersionId",
                "ContentVersion",
                "LatestPublishedVersion",
                label="Latest Published Version ID",
            )
        )
    )
    o.add(_ro(FieldDef("ContentSize", "int", label="Size", precision=9)))
    o.add(_ro(_s("FileType", 20)))
    o.add(_ro(_s("FileExtension", 40)))
    o.add(_ro(FieldDef("ContentModifiedDate", "datetime")))
    o.add(_ro(_bool("IsArchived")))
    return o


def _content_document_link() -> SObject:
    # Salesforce gives this object neither an owner nor created/modified audit fields.
    o = SObject(
        "ContentDocumentLink",
        "Content Document Link",
        "Content Document Links",
        "06A",
        undeletable=False,
    )
    _id(o)
    o.add(
        FieldDef(
            "LinkedEntityId",
            "reference",
            18,
            label="Linked Entity ID",
            reference_to=LINKABLE,
            relationship_name="LinkedEntity",
            required=True,
            nillable=False,
            updateable=False,
        )
    )
    o.add(
        _ref(
            "ContentDocumentId",
            "ContentDocument",
            "ContentDocument",
            label="Content Document ID",
            required=True,
            nillable=False,
            updateable=False,
        )
    )
    o.add(_pick("ShareType", ("V", "C", "I"), length=40, restricted=True, required=True))
    o.add(
        _pick(
            "Visibility",
            ("AllUsers", "InternalUsers", "SharedUsers"),
            length=40,
            restricted=True,
            default="AllUsers",
        )
    )
    o.add(
        FieldDef("SystemModstamp", "datetime", nillable=False, createable=False, updateable=False)
    )
    return o


def _affiliation() -> SObject:
    o = SObject("npe5__Affiliation__c", "Affiliation", "Affiliations", "a01", custom=True)
    _id(o)
    o.add(_ro(_s("Name", 80, nillable=False)))  # auto-number AFF-000001
    _system(o)
    o.add(_ref("npe5__Contact__c", "Contact", "npe5__Contact__r", custom=True))
    o.add(_ref("npe5__Organization__c", "Account", "npe5__Organization__r", custom=True))
    o.add(_pick("npe5__Status__c", ("Current", "Former"), default="Current", custom=True))
    o.add(_s("npe5__Role__c", 255, custom=True))
    o.add(_bool("npe5__Primary__c", custom=True))
    o.add(FieldDef("npe5__StartDate__c", "date", custom=True))
    o.add(FieldDef("npe5__EndDate__c", "date", custom=True))
    o.add(FieldDef("npe5__Description__c", "textarea", 32000, custom=True, filterable=False))
    return o


def _npsp_contact_fields(o: SObject) -> None:
    for name in ("npe01__HomeEmail__c", "npe01__WorkEmail__c", "npe01__AlternateEmail__c"):
        o.add(FieldDef(name, "email", 80, custom=True))
    o.add(
        _pick(
            "npe01__Preferred_Email__c",
            ("Personal", "Work", "Alternate"),
            custom=True,
        )
    )
    o.add(FieldDef("npe01__WorkPhone__c", "phone", 40, custom=True))
    o.add(
        _pick(
            "npe01__PreferredPhone__c",
            ("Home", "Work", "Mobile", "Other"),
            custom=True,
        )
    )
    o.add(
        _ref("npsp__Primary_Affiliation__c", "Account", "npsp__Primary_Affiliation__r", custom=True)
    )


CUSTOM_TYPES = {
    "string": "string",
    "text": "string",
    "textarea": "textarea",
    "longtextarea": "textarea",
    "email": "email",
    "phone": "phone",
    "url": "url",
    "picklist": "picklist",
    "multipicklist": "multipicklist",
    "boolean": "boolean",
    "checkbox": "boolean",
    "date": "date",
    "datetime": "datetime",
    "int": "int",
    "double": "double",
    "number": "double",
    "currency": "currency",
    "percent": "percent",
    "reference": "reference",
    "lookup": "reference",
}
_CUSTOM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")


def custom_field(spec: dict[str, Any]) -> FieldDef:
    """A FieldDef from one CUSTOM_FIELDS entry; ValueError when the entry is not a valid field."""
    name = str(spec.get("name", ""))
    if not _CUSTOM_NAME.match(name) or "___" in name:
        raise ValueError(f"custom field name {name!r} must look like Name__c")
    kind = CUSTOM_TYPES.get(str(spec.get("type", "string")).lower())
    if kind is None:
        raise ValueError(f"custom field {name}: unknown type {spec.get('type')!r}")
    default_len = {"string": 255, "textarea": 32768 if spec.get("type") == "longtextarea" else 255}
    length = int(spec.get("length", default_len.get(kind, 80 if kind == "email" else 0)))
    if kind in ("email",):
        length = 80
    if kind == "phone":
        length = 40
    if kind in ("picklist", "multipicklist"):
        length = 255 if kind == "picklist" else 4099
    fd = FieldDef(
        name,
        kind,
        length if kind in TEXT_TYPES or kind == "reference" else 0,
        label=str(spec.get("label", "")),
        custom=True,
        external_id=bool(spec.get("externalId", False)),
        unique=bool(spec.get("unique", False)),
        required=bool(spec.get("required", False)),
        picklist=tuple(spec.get("values", ())),
        restricted=bool(spec.get("restricted", False)),
        default=spec.get("defaultValue", False if kind == "boolean" else None),
    )
    if fd.external_id:
        fd.id_lookup = True
    if kind == "boolean":
        fd.nillable = False
    if kind == "reference":
        fd.length = 18
        fd.reference_to = (str(spec.get("referenceTo", "Account")),)
        fd.relationship_name = str(spec.get("relationshipName", name[:-3] + "__r"))
    if kind == "textarea" and fd.length > 255:
        fd.filterable = fd.sortable = False
    return fd


def parse_profiles(value: str | Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset({"standard"})
    items = value.split(",") if isinstance(value, str) else list(value)
    names = {item.strip().lower() for item in items if item.strip()}
    unknown = names - set(PROFILES)
    if unknown:
        raise ValueError(f"unknown ORG_PROFILE {sorted(unknown)}; use {', '.join(PROFILES)}")
    return frozenset(names | {"standard"})


def _record_type() -> SObject:
    o = SObject("RecordType", "Record Type", "Record Types", "012")
    _id(o)
    o.add(_s("Name", 80, required=True, nillable=False))
    o.add(_s("DeveloperName", 80, required=True, nillable=False))
    o.add(_s("NamespacePrefix", 15))
    o.add(_s("Description", 255))
    o.add(_pick("SobjectType", (), length=40, required=True, nillable=False))
    o.add(_bool("IsActive", default=True))
    _system(o, owner=False)
    return o


def build_schema(
    profiles: str | Iterable[str] | None = "standard",
    custom_fields: dict[str, list[dict[str, Any]]] | None = None,
    record_types: dict[str, list[str]] | None = None,
) -> OrgSchema:
    """The org's objects for the given profiles, custom fields and record types.

    `record_types` (config RECORD_TYPES, e.g. `{"Campaign": ["Webinar", "Event"]}`) names the
    objects that have record types: only those get a `RecordTypeId` field, as in a real org.
    """
    prof = parse_profiles(profiles)
    sc = "state_country" in prof
    person = "person_accounts" in prof
    objects = [
        _contact(sc, person),
        _lead(sc, person),
        _account(sc, person),
        _campaign(),
        _campaign_member(),
        _campaign_member_status(),
        _record_type(),
        _task(),
        _content_version(),
        _content_document(),
        _content_document_link(),
    ]
    if "npsp" in prof:
        _npsp_contact_fields(objects[0])
        objects.append(_affiliation())
    by_name = {o.name: o for o in objects}
    for sobject in record_types or {}:
        target = by_name.get(sobject)
        if target is None or sobject == "RecordType":
            raise ValueError(f"RECORD_TYPES names unknown sObject {sobject!r}")
        fd = _ref("RecordTypeId", "RecordType", "RecordType")
        fd.label = "Record Type ID"
        target.add(fd)
    by_name["RecordType"].fields["SobjectType"].picklist = tuple(
        o.name for o in objects if o.name != "RecordType"
    )
    for sobject, specs in (custom_fields or {}).items():
        target = by_name.get(sobject)
        if target is None:
            raise ValueError(f"CUSTOM_FIELDS names unknown sObject {sobject!r}")
        for spec in specs:
            fd = custom_field(spec)
            if target.field(fd.name):
                raise ValueError(f"CUSTOM_FIELDS: {sobject}.{fd.name} already exists")
            target.add(fd)
            if sobject == "Contact" and person:
                # Person accounts show the Contact's custom fields on the Account as Name__pc.
                mirror = custom_field({**spec, "name": fd.name})
                mirror.name = fd.name[:-3] + "__pc"
                mirror.external_id = mirror.unique = mirror.id_lookup = False
                if mirror.relationship_name:
                    mirror.relationship_name = fd.name[:-3] + "__pr"
                by_name["Account"].add(mirror)
    # Child relationships, as describe lists them on the parent.
    for obj in objects:
        for fd in obj.fields.values():
            if fd.type != "reference" or fd.expr:
                continue
            for target_name in fd.reference_to:
                parent = by_name.get(target_name)
                if parent is None:
                    continue
                rel = _child_name(obj, fd)
                parent.children.append(
                    ChildRelationship(
                        obj.name,
                        fd.name,
                        rel,
                        cascade_delete=(obj.name, fd.name) in CASCADE_FIELDS,
                    )
                )
    return OrgSchema(by_name, prof)


# Child references whose parent's delete takes the child along (store.py does the deleting).
CASCADE_FIELDS = frozenset(
    {
        ("CampaignMember", "CampaignId"),
        ("CampaignMember", "ContactId"),
        ("CampaignMember", "LeadId"),
        ("CampaignMemberStatus", "CampaignId"),
        ("Task", "WhoId"),
        ("Task", "WhatId"),
        ("ContentVersion", "ContentDocumentId"),
        ("ContentDocumentLink", "ContentDocumentId"),
        ("ContentDocumentLink", "LinkedEntityId"),
    }
)

_CHILD_NAMES = {
    ("Contact", "AccountId"): "Contacts",
    ("Contact", "ReportsToId"): None,
    ("CampaignMember", "ContactId"): "CampaignMembers",
    ("CampaignMember", "LeadId"): "CampaignMembers",
    ("CampaignMember", "CampaignId"): "CampaignMembers",
    ("CampaignMemberStatus", "CampaignId"): None,
    ("Account", "ParentId"): "ChildAccounts",
    ("Campaign", "ParentId"): "ChildCampaigns",
    ("Task", "WhoId"): "Tasks",
    ("Task", "WhatId"): "Tasks",
    ("ContentVersion", "ContentDocumentId"): "ContentVersions",
    ("ContentDocumentLink", "ContentDocumentId"): "ContentDocumentLinks",
    ("ContentDocumentLink", "LinkedEntityId"): "ContentDocumentLinks",
    ("npe5__Affiliation__c", "npe5__Contact__c"): "npe5__Affiliations__r",
    ("npe5__Affiliation__c", "npe5__Organization__c"): "npe5__Affiliations__r",
}


def _child_name(obj: SObject, fd: FieldDef) -> str | None:
    return _CHILD_NAMES.get((obj.name, fd.name))
