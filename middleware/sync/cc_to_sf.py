"""CC → SF rules: which Constant Contact contacts become, link to, or opt out Salesforce records.

Pure, like the rest of :mod:`middleware.sync`: the poll job reads Constant Contact and Salesforce in
bulk, hands plain data to :func:`plan_cc_to_sf`, and carries out the :class:`CcToSfPlan` it gets
back. The rules, one per behaviour of the seed guide ("How Should Your Data Flow from Constant
Contact to Salesforce?", "More Options", the NPSP options) and DESIGN §5a:

1. A contact without an email (SMS only) is ignored; one Constant Contact holds as deleted too.
2. Unsubscribed in CC ⇒ ``HasOptedOutOfEmail`` (Person Account: ``PersonHasOptedOutOfEmail``) on
   *every* Lead, Contact and Person Account of the org whose email is the address (not only this
   setup's object type, and whatever ``match_same_type_only`` says), unless
   ``sync_unsubscribes_to_sf`` is false. Records already opted out are not written again. An
   unsubscribed contact with no Salesforce record is never created. With
   ``npsp_alternate_emails`` only the preferred address counts: NPSP keeps the preferred address
   in the standard ``Email``, so a match on a personal/work/alternate field sets no opt-out.
   A re-subscribe in CC never clears anything (this module has no action that could).
3. Opt-outs flow even with ``sync_to_sf`` false. The seed words that option as "Do Not Sync
   Contacts from Constant Contact to Salesforce ... prevent creating contacts in Salesforce" and
   keeps its separate "Do Not Sync Unsubscribed Emails Status" option for opt-outs, so
   ``sync_to_sf: false`` stops creating and linking records, and only
   ``sync_unsubscribes_to_sf: false`` stops opt-outs (an unsubscribe is also the legally
   sensitive direction).
4. A contact this setup has ever linked (active or retired link) is never a new subscriber.
5. Before creating, the address is searched in Leads *and* Contacts (and Person Accounts; with
   ``npsp_alternate_emails`` also ``npe01__HomeEmail__c``/``WorkEmail``/``AlternateEmail``);
   ``match_same_type_only`` narrows the search to ``new_record_object_type``. A match is never
   duplicated: a match of the setup's own object type on its standard email field, not opted out,
   is linked (the oldest by CreatedDate, Id); any other match is reported and left alone.
6. No match ⇒ a new ``new_record_object_type`` record. Lead ``Company`` = CC's company name or
   "Individual". Blank last name fails ("LastName required") unless ``allow_blank_last_name``
   (the email's local part); blank first name fails unless ``allow_blank_first_name`` (left
   blank). Mapped values: names, ``Title`` ← job title, ``Phone`` ← work, ``MobilePhone`` ← mobile,
   ``HomePhone`` ← home (Contacts only: Leads have no HomePhone), the address, then ``field_map``
   entries with direction ``cc_to_sf``/``both`` (they override a pre-mapped field they name).
   These fill a record only when it is created: Salesforce wins for linked records.
7. A new Contact's Account is found by company name (Salesforce compares names without regard
   to case, as SOQL does; several: the oldest), created when missing unless
   ``create_missing_accounts`` is false (then no AccountId, reported): that option only stops
   the *creation*, an existing Account is still found and linked. With ``npsp_affiliations``
   the company becomes an Organization Affiliation (``npe5__Affiliation__c``) instead, and NPSP
   gives the Contact its Household Account.
8. States: CC holds state and country *names*. Default: ``MailingState`` gets the ISO 3166-2 code
   (``CA``); ``state_names`` keeps the name. Orgs with State & Country picklists get ISO codes in
   ``*StateCode``/``*CountryCode`` (which Salesforce always accepts, and turns into its names); a
   value with no code is left out and reported, so one bad state never loses the subscriber.

Every new record carries the fingerprint of what the SF→CC direction will map from it, so the
link made for it tells that direction there is nothing to write back (DESIGN §2.4, "Echo").
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pycountry

from middleware.sync.emails import normalise_email
from middleware.sync.fields import CC_INT_FIELDS, CC_SCALAR_FIELDS, CUSTOM_PREFIX
from middleware.sync.mapping import apply_namespace, fingerprint, map_record
from middleware.sync.options import SetupOptions

SfObject = Literal["Lead", "Contact", "Account"]

UNSUBSCRIBED = "unsubscribed"
INDIVIDUAL = "Individual"

# NPSP's personal/work/alternate email fields on Contact (salesforce-api-notes §7.3).
NPSP_EMAIL_FIELDS = ("npe01__HomeEmail__c", "npe01__WorkEmail__c", "npe01__AlternateEmail__c")
AFFILIATION_OBJECT = "npe5__Affiliation__c"

# Skip reasons (run report keys).
REASON_NO_EMAIL = "no email"
REASON_DELETED = "deleted in Constant Contact"
REASON_LINKED = "already linked"
REASON_SYNC_TO_SF_OFF = "sync_to_sf is off"
REASON_UNSUBSCRIBES_OFF = "unsubscribe not synced (sync_unsubscribes_to_sf is off)"
REASON_UNSUBSCRIBED_NOT_IN_SF = "unsubscribed, not in Salesforce"
REASON_ALREADY_OPTED_OUT = "already opted out in Salesforce"
REASON_EXISTS = "exists in Salesforce"
REASON_EXISTS_OPTED_OUT = "exists in Salesforce, opted out"
REASON_ACCOUNT_NOT_FOUND = "account not found"
REASON_STATE_DROPPED = "state or country not accepted"

# Record error codes (stored sync errors, direction cc_to_sf).
LAST_NAME_REQUIRED = "LAST_NAME_REQUIRED"
FIRST_NAME_REQUIRED = "FIRST_NAME_REQUIRED"

# Salesforce field lengths; CC allows longer first names (50), so values are cut to fit.
_SF_LENGTHS = {
    "FirstName": 40,
    "LastName": 80,
    "Title": 128,
    "Company": 255,
    "Phone": 40,
    "MobilePhone": 40,
    "HomePhone": 40,
    "Email": 80,
    "City": 40,
    "MailingCity": 40,
    "PostalCode": 20,
    "MailingPostalCode": 20,
    "State": 80,
    "MailingState": 80,
    "Country": 80,
    "MailingCountry": 80,
    "Name": 255,
}

_ADDRESS_PREFIX = {"Lead": "", "Contact": "Mailing", "Account": "PersonMailing"}
_PHONES = {
    "Lead": {"work": "Phone", "mobile": "MobilePhone"},
    "Contact": {"work": "Phone", "mobile": "MobilePhone", "home": "HomePhone"},
}
_OPT_OUT_FIELD = {
    "Lead": "HasOptedOutOfEmail",
    "Contact": "HasOptedOutOfEmail",
    "Account": "PersonHasOptedOutOfEmail",
}
EMAIL_FIELD = {"Lead": "Email", "Contact": "Email", "Account": "PersonEmail"}


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class CcSubscriber:
    """A Constant Contact contact as these rules see it (see :func:`subscriber_from_cc`).

    ``values`` are CC's values under the flat import names the setup's ``field_map`` uses
    (``first_name``, ``job_title``, ``work_phone``, ``street``, ``state``, ``cf:<name>``...).
    """

    contact_id: str
    email: str
    permission_to_send: str = "implicit"
    deleted: bool = False
    list_memberships: tuple[str, ...] = ()
    values: Mapping[str, str] = field(default_factory=dict)
    updated_at: str | None = None
    opt_out_date: str | None = None

    @property
    def unsubscribed(self) -> bool:
        return self.permission_to_send == UNSUBSCRIBED


@dataclass(frozen=True, slots=True)
class SfMatch:
    """A Salesforce record whose email (``matched_on``) equals a CC address.

    ``sf_object`` ``Account`` is a Person Account. ``matched_on`` is the field that matched:
    ``Email``/``PersonEmail``, or an NPSP alternate field.
    """

    sf_object: SfObject
    sf_id: str
    email: str
    matched_on: str
    opted_out: bool = False
    created: str = ""

    @property
    def on_standard_email(self) -> bool:
        return self.matched_on == EMAIL_FIELD[self.sf_object]


@dataclass(frozen=True, slots=True)
class SfAccount:
    """A business Account that may carry a new Contact (matched by name)."""

    sf_id: str
    name: str
    created: str = ""


@dataclass(frozen=True, slots=True)
class OrgInfo:
    """What the org's describe says about it (the poll caches it)."""

    state_country_picklists: bool = False
    person_accounts: bool = False
    npsp: bool = False


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True, slots=True)
class OptOut:
    """Set the opt-out checkbox of one Salesforce record (``field`` per object type)."""

    sf_object: SfObject
    sf_id: str
    field: str
    contact_id: str
    email: str


@dataclass(frozen=True, slots=True)
class LinkExisting:
    """Link an existing record of the setup's object type to the CC contact (no SF write).

    ``fingerprint`` stays unknown, so the SF→CC direction writes Salesforce's values (it wins).
    """

    sf_object: SfObject
    sf_id: str
    contact_id: str
    email: str
    on_main_list: bool


@dataclass(frozen=True, slots=True)
class NewRecord:
    """Create one Salesforce record for a new subscriber.

    ``fields`` lack ``AccountId``: the job sets it from ``account_id`` (an existing Account) or
    from the Account it creates for ``account_name``. ``affiliation_account`` names the
    organization of an NPSP affiliation to create once the Contact exists. ``link_active`` is
    false when the record is not of the setup's own object type: the job then keeps the link
    retired, only so the address is never taken for a new subscriber again (an active link of
    another type would look like a second owner of the address to the SF→CC direction).
    """

    contact_id: str
    email: str
    sf_object: Literal["Lead", "Contact"]
    fields: Mapping[str, Any]
    fingerprint: str
    account_id: str | None = None
    account_name: str | None = None
    affiliation_account: str | None = None
    affiliation_account_id: str | None = None
    link_active: bool = True
    on_main_list: bool = False


@dataclass(frozen=True, slots=True)
class CcSkip:
    """A deliberate non-action for a contact, and why (never an error)."""

    contact_id: str
    email: str
    reason: str


@dataclass(frozen=True, slots=True)
class CcRecordError:
    """A contact that cannot become a Salesforce record as it is; shown as a sync error."""

    contact_id: str
    email: str
    code: str
    message: str


@dataclass(slots=True)
class CcToSfPlan:
    """What to do for one batch of CC contacts; ``accounts_to_create`` come first.

    ``skips`` are contacts deliberately left alone; ``reports`` are things worth telling about
    records that were still created (an Account not found, a state left out).
    ``account_names`` are the company names of new Contacts whose Account the job must look up
    (and plan again with the ``accounts`` found) — whether or not a missing one may be created.
    """

    opt_outs: list[OptOut] = field(default_factory=list)
    links: list[LinkExisting] = field(default_factory=list)
    accounts_to_create: list[str] = field(default_factory=list)
    account_names: list[str] = field(default_factory=list)
    creates: list[NewRecord] = field(default_factory=list)
    skips: list[CcSkip] = field(default_factory=list)
    reports: list[CcSkip] = field(default_factory=list)
    errors: list[CcRecordError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading CC's contact resource


_ADDRESS_KEYS = {
    "street": "street",
    "city": "city",
    "state": "state",
    "postal_code": "zip",
    "country": "country",
}


def subscriber_from_cc(
    resource: Mapping[str, Any], custom_field_names: Mapping[str, str] | None = None
) -> CcSubscriber:
    """A ``GET /contacts`` resource (with ``include=custom_fields,phone_numbers,
    street_addresses,list_memberships``) as a :class:`CcSubscriber`.

    ``custom_field_names`` maps custom field ids to names (``cf:<name>`` keys). The street address
    of kind ``home`` is preferred (what the SF→CC direction writes), then the first one.
    """
    email = resource.get("email_address") or {}
    values: dict[str, str] = {}
    for key in (k for k in CC_SCALAR_FIELDS if k not in CC_INT_FIELDS):
        text = str(resource.get(key) or "").strip()
        if text:
            values[key] = text
    for key in CC_INT_FIELDS:
        if resource.get(key) is not None:
            values[key] = str(resource[key])
    for phone in resource.get("phone_numbers") or ():
        kind = str(phone.get("kind") or "other")
        number = str(phone.get("phone_number") or "").strip()
        if number:
            values.setdefault(f"{kind}_phone", number)
    addresses = list(resource.get("street_addresses") or ())
    addresses.sort(key=lambda a: 0 if a.get("kind") == "home" else 1)
    if addresses:
        for prop, key in _ADDRESS_KEYS.items():
            text = str(addresses[0].get(prop) or "").strip()
            if text:
                values[key] = text
    names = custom_field_names or {}
    for custom in resource.get("custom_fields") or ():
        name = names.get(str(custom.get("custom_field_id")))
        if name and custom.get("value") not in (None, ""):
            values[CUSTOM_PREFIX + name] = str(custom["value"])
    return CcSubscriber(
        contact_id=str(resource.get("contact_id") or ""),
        email=normalise_email(email.get("address")),
        permission_to_send=str(email.get("permission_to_send") or "implicit"),
        deleted=bool(resource.get("deleted_at")),
        list_memberships=tuple(resource.get("list_memberships") or ()),
        values=values,
        updated_at=resource.get("updated_at"),
        opt_out_date=email.get("opt_out_date"),
    )


# ---------------------------------------------------------------------------------------------
# Which records to look for


def new_record_type(setup: SetupOptions) -> Literal["Lead", "Contact"]:
    """The object type created for a new subscriber (the schema resolves its default)."""
    return setup.new_record_object_type


def match_objects(setup: SetupOptions, org: OrgInfo) -> list[SfObject]:
    """The object types searched before creating (rule 5)."""
    if setup.match_same_type_only:
        return [new_record_type(setup)]
    found: list[SfObject] = ["Lead", "Contact"]
    if org.person_accounts:
        found.append("Account")
    return found


def opt_out_objects(org: OrgInfo) -> list[SfObject]:
    """Every object type an unsubscribe reaches (rule 2)."""
    return ["Lead", "Contact", "Account"] if org.person_accounts else ["Lead", "Contact"]


def opt_out_field(sf_object: SfObject) -> str:
    """The opt-out checkbox of an object type (a Person Account's is on the Account)."""
    return _OPT_OUT_FIELD[sf_object]


def email_fields(setup: SetupOptions, org: OrgInfo, sf_object: SfObject) -> list[str]:
    """The fields of ``sf_object`` an address is looked up in."""
    fields = [EMAIL_FIELD[sf_object]]
    if sf_object == "Contact" and setup.npsp_alternate_emails and org.npsp:
        fields += NPSP_EMAIL_FIELDS
    return fields


# ---------------------------------------------------------------------------------------------
# States and countries


@functools.cache
def _subdivisions_by_name() -> dict[str, list[tuple[str, str, str]]]:
    """Lower-cased subdivision name → [(country code, state code, name)], built on first use."""
    index: dict[str, list[tuple[str, str, str]]] = {}
    for sub in pycountry.subdivisions:
        country, _, code = sub.code.partition("-")
        index.setdefault(sub.name.lower(), []).append((country, code, sub.name))
    return index


def country_code(name: str) -> str | None:
    """ISO 3166-1 alpha-2 for a country name (or code) as CC holds it; None when unknown."""
    text = name.strip()
    if not text:
        return None
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        return None


def country_name(code: str) -> str:
    found = pycountry.countries.get(alpha_2=code)
    return str(found.name) if found is not None else code


def state_code(state: str, country: str | None) -> tuple[str, str, str] | None:
    """``(country code, state code, state name)`` for a state name (or code) in ``country``.

    Without a country the state must name exactly one subdivision in the world.
    """
    text = state.strip()
    if not text:
        return None
    candidates = _subdivisions_by_name().get(text.lower(), [])
    if country:
        candidates = [c for c in candidates if c[0] == country]
        if not candidates:
            sub = pycountry.subdivisions.get(code=f"{country}-{text.upper()}")
            if sub is not None:
                return country, text.upper(), str(sub.name)
    return candidates[0] if len(candidates) == 1 else None


def address_fields(
    setup: SetupOptions, org: OrgInfo, sf_object: SfObject, values: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str], str | None]:
    """Salesforce address fields for CC's address (rule 8).

    Returns ``(fields to write, the text Salesforce will then hold, a problem or None)``; the
    second is what the SF→CC mapping reads back, for the echo fingerprint.
    """
    prefix = _ADDRESS_PREFIX[sf_object]
    write: dict[str, str] = {}
    for key, suffix in (("street", "Street"), ("city", "City"), ("zip", "PostalCode")):
        if values.get(key):
            write[prefix + suffix] = _cut(prefix + suffix, values[key])
    held = dict(write)
    state, country = values.get("state", ""), values.get("country", "")
    problem = None
    if org.state_country_picklists:
        ccode = country_code(country) if country else None
        found = state_code(state, ccode) if state else None
        if found is not None and ccode is None:
            ccode = found[0]
        if country and ccode is None:
            problem = f"country {country!r} is not in Salesforce's country picklist"
        if ccode:
            write[prefix + "CountryCode"] = ccode
            held[prefix + "Country"] = country_name(ccode)
        if state:
            if found is not None and found[0] == ccode:
                write[prefix + "StateCode"] = found[1]
                held[prefix + "State"] = found[2]
            else:
                problem = problem or f"state {state!r} is not in Salesforce's state picklist"
        return write, held, problem
    if state:
        found = state_code(state, country_code(country) if country else None)
        text = state if setup.state_names or found is None else found[1]
        write[prefix + "State"] = held[prefix + "State"] = _cut(prefix + "State", text)
    if country:
        write[prefix + "Country"] = held[prefix + "Country"] = _cut(prefix + "Country", country)
    return write, held, problem


def _cut(sf_field: str, value: str) -> str:
    limit = _SF_LENGTHS.get(sf_field)
    return value[:limit] if limit else value


# ---------------------------------------------------------------------------------------------
# The planner


def _oldest(matches: Iterable[SfMatch]) -> SfMatch | None:
    ordered = sorted(matches, key=lambda m: (m.created or "", m.sf_id))
    return ordered[0] if ordered else None


def pick_account(accounts: Sequence[SfAccount], company: str) -> SfAccount | None:
    """The Account for a company name: same name ignoring case (as SOQL compares), the oldest."""
    wanted = company.strip().lower()
    same = [a for a in accounts if a.name.strip().lower() == wanted]
    return min(same, key=lambda a: (a.created or "", a.sf_id)) if same else None


def new_record_fields(
    setup: SetupOptions, org: OrgInfo, contact: CcSubscriber
) -> tuple[dict[str, Any] | None, dict[str, str], CcRecordError | None, str | None]:
    """The fields of a new record for ``contact`` (rule 6 and 8).

    Returns ``(fields, address text Salesforce will hold, error, address problem)``; ``fields``
    is None when the record cannot be created.
    """
    kind = new_record_type(setup)
    values = contact.values
    first = values.get("first_name", "").strip()
    last = values.get("last_name", "").strip()
    if not last:
        if not setup.allow_blank_last_name:
            return (
                None,
                {},
                CcRecordError(
                    contact.contact_id,
                    contact.email,
                    LAST_NAME_REQUIRED,
                    "LastName required: the Constant Contact contact has no last name "
                    "(allow_blank_last_name uses the email's local part)",
                ),
                None,
            )
        last = contact.email.partition("@")[0]
    if not first and not setup.allow_blank_first_name:
        return (
            None,
            {},
            CcRecordError(
                contact.contact_id,
                contact.email,
                FIRST_NAME_REQUIRED,
                "FirstName required: the Constant Contact contact has no first name "
                "(allow_blank_first_name creates it without one)",
            ),
            None,
        )
    fields: dict[str, Any] = {"LastName": _cut("LastName", last), "Email": contact.email}
    if first:
        fields["FirstName"] = _cut("FirstName", first)
    if values.get("job_title"):
        fields["Title"] = _cut("Title", values["job_title"])
    if kind == "Lead":
        fields["Company"] = _cut("Company", values.get("company_name") or INDIVIDUAL)
    for cc_kind, sf_field in _PHONES[kind].items():
        if values.get(f"{cc_kind}_phone"):
            fields[sf_field] = _cut(sf_field, values[f"{cc_kind}_phone"])
    write, held, problem = address_fields(setup, org, kind, values)
    fields.update(write)
    for entry in setup.fields_to_sf:
        value = values.get(entry.cc_field)
        if value not in (None, ""):
            fields[_namespaced(setup, entry.sf_field)] = value
    return fields, held, None, problem


def _namespaced(setup: SetupOptions, sf_field: str) -> str:
    return apply_namespace(sf_field, setup.namespace_prefix)


def echo_fingerprint(
    setup: SetupOptions,
    sf_object: SfObject,
    fields: Mapping[str, Any],
    held_address: Mapping[str, str],
    account_name: str | None,
) -> str:
    """The fingerprint the SF→CC direction will compute for the record once created.

    The record is rebuilt as a SOQL read would return it: the fields written, the address text
    Salesforce derives from codes, and ``Account.Name`` for a Contact's Account.
    """
    record: dict[str, Any] = {**fields, **held_address}
    for code_field in [k for k in record if k.endswith(("StateCode", "CountryCode"))]:
        record.pop(code_field)
    if sf_object == "Contact":
        record["Account"] = {"Name": account_name} if account_name else None
    view = replace(setup, object_type=sf_object)
    return fingerprint(map_record(view, record))


def plan_cc_to_sf(
    setup: SetupOptions,
    contacts: Sequence[CcSubscriber],
    *,
    matches: Mapping[str, Sequence[SfMatch]],
    accounts: Sequence[SfAccount] = (),
    linked_emails: Collection[str] = (),
    org: OrgInfo = OrgInfo(),
    main_list_id: str = "",
) -> CcToSfPlan:
    """Plan one batch (see the module docstring for the rules, in order).

    ``matches`` maps normalised emails to the Salesforce records found for them, over the
    object types and fields of :func:`opt_out_objects`/:func:`match_objects`/
    :func:`email_fields` (converted Leads excluded). ``accounts`` are the business Accounts
    found for the batch's company names. ``linked_emails`` are the addresses this setup has
    ever linked.
    """
    plan = CcToSfPlan()
    setup_type = setup.object_type
    kind = new_record_type(setup)
    scope = set(match_objects(setup, org))
    linked = {normalise_email(e) for e in linked_emails}
    new_accounts: dict[str, str] = {}
    wanted_accounts: dict[str, str] = {}
    seen: set[str] = set()
    for contact in sorted(contacts, key=lambda c: (c.email, c.contact_id)):
        email = contact.email
        if not email:
            plan.skips.append(CcSkip(contact.contact_id, "", REASON_NO_EMAIL))
            continue
        if email in seen:
            continue  # CC keys contacts by email; a second copy is the same person
        seen.add(email)
        if contact.deleted:
            plan.skips.append(CcSkip(contact.contact_id, email, REASON_DELETED))
            continue
        found = list(matches.get(email, ()))
        if contact.unsubscribed:
            _opt_out(setup, contact, found, plan)
            continue
        if email in linked:
            plan.skips.append(CcSkip(contact.contact_id, email, REASON_LINKED))
            continue
        if not setup.sync_to_sf:
            plan.skips.append(CcSkip(contact.contact_id, email, REASON_SYNC_TO_SF_OFF))
            continue
        on_main = bool(main_list_id) and main_list_id in contact.list_memberships
        in_scope = [m for m in found if m.sf_object in scope]
        if in_scope:
            owners = [
                m
                for m in in_scope
                if m.sf_object == setup_type and m.on_standard_email and not m.opted_out
            ]
            owner = _oldest(owners)
            if owner is not None:
                plan.links.append(
                    LinkExisting(owner.sf_object, owner.sf_id, contact.contact_id, email, on_main)
                )
            else:
                opted_out = any(m.opted_out for m in in_scope)
                reason = REASON_EXISTS_OPTED_OUT if opted_out else REASON_EXISTS
                plan.skips.append(CcSkip(contact.contact_id, email, reason))
            continue
        fields, held, error, problem = new_record_fields(setup, org, contact)
        if error is not None or fields is None:
            if error is not None:
                plan.errors.append(error)
            continue
        if problem:
            plan.reports.append(CcSkip(contact.contact_id, email, REASON_STATE_DROPPED))
            plan.warnings.append(f"{REASON_STATE_DROPPED}: {problem}")
        record = NewRecord(
            contact_id=contact.contact_id,
            email=email,
            sf_object=kind,
            fields=fields,
            fingerprint="",
            link_active=kind == setup_type,
            on_main_list=on_main,
        )
        shown_account: str | None = None
        company = contact.values.get("company_name", "").strip()
        if kind == "Contact" and company:
            wanted_accounts.setdefault(company.lower(), company)
            account = pick_account(accounts, company)
            create = account is None and setup.create_missing_accounts
            if create:
                company = new_accounts.setdefault(company.lower(), company)
            elif account is None:
                plan.reports.append(CcSkip(contact.contact_id, email, REASON_ACCOUNT_NOT_FOUND))
                plan.warnings.append(f"{REASON_ACCOUNT_NOT_FOUND}: {company!r}")
            org_name = account.name if account is not None else (company if create else None)
            org_id = account.sf_id if account is not None else None
            if setup.npsp_affiliations and org.npsp:
                # NPSP gives the Contact its Household Account; the company is an affiliation.
                if org_name is not None:
                    record = replace(
                        record, affiliation_account=org_name, affiliation_account_id=org_id
                    )
            else:
                record = replace(
                    record, account_id=org_id, account_name=company if create else None
                )
                shown_account = org_name
        record = replace(
            record, fingerprint=echo_fingerprint(setup, kind, fields, held, shown_account)
        )
        plan.creates.append(record)
    plan.accounts_to_create = sorted(new_accounts.values(), key=str.lower)
    plan.account_names = sorted(wanted_accounts.values(), key=str.lower)
    plan.warnings = list(dict.fromkeys(plan.warnings))
    return plan


def _opt_out(
    setup: SetupOptions, contact: CcSubscriber, found: list[SfMatch], plan: CcToSfPlan
) -> None:
    """Rule 2: every record of the org holding the address (its standard field) opts out."""
    if not setup.sync_unsubscribes_to_sf:
        plan.skips.append(CcSkip(contact.contact_id, contact.email, REASON_UNSUBSCRIBES_OFF))
        return
    holders = [m for m in found if m.on_standard_email]
    if not holders:
        plan.skips.append(CcSkip(contact.contact_id, contact.email, REASON_UNSUBSCRIBED_NOT_IN_SF))
        return
    pending = sorted((m for m in holders if not m.opted_out), key=lambda m: m.sf_id)
    if not pending:
        plan.skips.append(CcSkip(contact.contact_id, contact.email, REASON_ALREADY_OPTED_OUT))
    for match in pending:
        plan.opt_outs.append(
            OptOut(
                match.sf_object,
                match.sf_id,
                _OPT_OUT_FIELD[match.sf_object],
                contact.contact_id,
                contact.email,
            )
        )
