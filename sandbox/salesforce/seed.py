"""Seeding a sandbox org with large, realistic, deterministic data (1,000,000 contacts in seconds).

`seed_org` generates people, companies and campaigns from a seeded random generator and writes
them straight through `store.insert_many` in chunks, so the same arguments always give the same
org. The data looks like a real org's: varied names, titles and phones, US addresses with valid
states, unique emails (`first.last.123@example.org`), a few role addresses (`sales@...`), some
people without an email or opted out, and Leads that duplicate Contacts by email.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.salesforce.org import current_sandbox
from sandbox.salesforce.store import SalesforceError

log = logging.getLogger(__name__)

bp = Blueprint("sf_seed", __name__, url_prefix="/_sandbox")

CHUNK = 20000
MAX_SEED = 5_000_000  # per object type and request; bigger orgs come from the CLI
Progress = Callable[[int, int], None]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily Paul "
    "Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy "
    "Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Amy Jacob Kathleen "
    "Gary Angela Nicholas Shirley Eric Brenda Jonathan Emma Stephen Anna Larry Pamela Justin "
    "Nicole Scott Samantha Brandon Katherine Benjamin Christine Samuel Helen Gregory Debra "
    "Alexander Rachel Patrick Carolyn Frank Janet Raymond Maria Jack Catherine Dennis Heather "
    "Jerry Diane Tyler Olivia Aaron Julie Jose Joyce Adam Victoria Nathan Ruth Henry Virginia "
    "Zachary Lauren Douglas Kelly Peter Christina Kyle Joan Noah Evelyn Ethan Judith Jeremy "
    "Andrea Christian Hannah Walter Megan Keith Cheryl Austin Jacqueline Roger Martha Terry "
    "Madison Sean Teresa Gerald Gloria Carl Sara Dylan Janice Harold Ann Jordan Kathryn Jesse "
    "Abigail Bryan Sophia Lawrence Frances Arthur Jean Gabriel Alice Bruce Judy Logan Isabella "
    "Billy Julia Joe Grace Alan Amber Juan Denise Elijah Danielle Willie Marilyn Albert Beverly "
    "Wayne Charlotte Randy Natalie Mason Theresa Vincent Diana Liam Brittany Roy Doris Bobby "
    "Kayla Caleb Alexis Bradley Lori Russell Marie Lucas Priya Wei Mohammed Aisha Hiroshi Yuki "
    "Carlos Sofia Mateo Valentina Ahmed Fatima Chen Mei Raj Ananya Olga Dmitri Ngozi Kwame"
)
LAST_NAMES = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips "
    "Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook "
    "Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward "
    "Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez "
    "Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan "
    "Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson "
    "Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera "
    "Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison "
    "Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker "
    "Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason "
    "Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox "
    "Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan "
    "Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce Hansen Peters Santos Hart "
    "Bradley Knight Elliott Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews "
    "Ray Berry Perkins Hoffman Johnston Matthews Pena Richards Willis Carpenter Lawrence Sandoval "
    "O'Brien O'Connor McAllister Nakamura Kowalski Novak Okafor Mensah Singh Kumar Yamamoto"
)
SALUTATIONS = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", None, None, None, None, None)
TITLES = (
    "CEO",
    "CFO",
    "CTO",
    "COO",
    "VP of Sales",
    "VP of Marketing",
    "Director of Operations",
    "Marketing Manager",
    "Sales Manager",
    "Account Executive",
    "Sales Representative",
    "Software Engineer",
    "Senior Software Engineer",
    "Product Manager",
    "Office Manager",
    "Executive Director",
    "Development Director",
    "Program Coordinator",
    "Volunteer Coordinator",
    "Grants Manager",
    "HR Generalist",
    "Controller",
    "Procurement Specialist",
    "Customer Success Manager",
    "Owner",
    "Consultant",
    "Board Member",
    "Administrative Assistant",
    None,
    None,
)
COMPANY_WORDS = _words(
    "Acme Apex Summit Pioneer Blue Ridge Harbor Cedar Granite Silver Lake Northwind Evergreen "
    "Redwood Beacon Atlas Keystone Liberty Meridian Horizon Prairie Canyon Maple Coastal Union "
    "Frontier Sterling Oak Riverbend Lakeside Highland Golden Gate Bright Falcon Orchard Quantum "
    "Vertex Crescent Cobalt Ironwood Juniper Magnolia Willow Aspen Sequoia Lighthouse"
)
COMPANY_KINDS = _words(
    "Systems Foundation Partners Logistics Health Labs Consulting Media Foods Energy Capital "
    "Manufacturing Software Analytics Outfitters Builders Dental Legal Charities Trust Academy "
    "Robotics Solar Networks Insurance Realty Studios Brewing Pharmacy Clinic Society"
)
COMPANY_SUFFIXES = ("Inc.", "LLC", "Co.", "Corp.", "Group", "Ltd.", "", "", "")
INDUSTRIES = (
    "Technology",
    "Healthcare",
    "Finance",
    "Manufacturing",
    "Retail",
    "Education",
    "Nonprofit",
    "Energy",
    "Media",
    "Consulting",
    "Hospitality",
)
STREET_NAMES = _words(
    "Main Oak Pine Maple Cedar Elm Washington Lake Hill Park Sunset Ridge Church Willow Walnut "
    "Mill River Spring Highland Meadow Forest Chestnut Jackson Lincoln Madison Franklin Jefferson "
    "Market Broad Center Union Water Liberty Valley Bay Harbor College Mission Grand"
)
STREET_KINDS = ("St", "Ave", "Blvd", "Rd", "Ln", "Dr", "Ct", "Way", "Pl", "Pkwy")
UNITS = ("", "", "", "", "", "Suite 100", "Apt 4B", "Unit 12", "Floor 3", "Suite 250")
# (city, state code, ZIP prefix, phone area code)
CITIES = (
    ("New York", "NY", "100", "212"),
    ("Brooklyn", "NY", "112", "718"),
    ("Buffalo", "NY", "142", "716"),
    ("Los Angeles", "CA", "900", "213"),
    ("San Francisco", "CA", "941", "415"),
    ("San Diego", "CA", "921", "619"),
    ("Sacramento", "CA", "958", "916"),
    ("Chicago", "IL", "606", "312"),
    ("Springfield", "IL", "627", "217"),
    ("Houston", "TX", "770", "713"),
    ("Austin", "TX", "787", "512"),
    ("Dallas", "TX", "752", "214"),
    ("Phoenix", "AZ", "850", "602"),
    ("Tucson", "AZ", "857", "520"),
    ("Philadelphia", "PA", "191", "215"),
    ("Pittsburgh", "PA", "152", "412"),
    ("Seattle", "WA", "981", "206"),
    ("Spokane", "WA", "992", "509"),
    ("Portland", "OR", "972", "503"),
    ("Denver", "CO", "802", "303"),
    ("Boston", "MA", "021", "617"),
    ("Cambridge", "MA", "021", "617"),
    ("Miami", "FL", "331", "305"),
    ("Orlando", "FL", "328", "407"),
    ("Tampa", "FL", "336", "813"),
    ("Atlanta", "GA", "303", "404"),
    ("Savannah", "GA", "314", "912"),
    ("Charlotte", "NC", "282", "704"),
    ("Raleigh", "NC", "276", "919"),
    ("Nashville", "TN", "372", "615"),
    ("Memphis", "TN", "381", "901"),
    ("Detroit", "MI", "482", "313"),
    ("Ann Arbor", "MI", "481", "734"),
    ("Minneapolis", "MN", "554", "612"),
    ("Columbus", "OH", "432", "614"),
    ("Cleveland", "OH", "441", "216"),
    ("Indianapolis", "IN", "462", "317"),
    ("Milwaukee", "WI", "532", "414"),
    ("Kansas City", "MO", "641", "816"),
    ("St. Louis", "MO", "631", "314"),
    ("Baltimore", "MD", "212", "410"),
    ("Richmond", "VA", "232", "804"),
    ("Salt Lake City", "UT", "841", "801"),
    ("Las Vegas", "NV", "891", "702"),
    ("Albuquerque", "NM", "871", "505"),
    ("New Orleans", "LA", "701", "504"),
    ("Louisville", "KY", "402", "502"),
    ("Omaha", "NE", "681", "402"),
    ("Boise", "ID", "837", "208"),
    ("Anchorage", "AK", "995", "907"),
    ("Honolulu", "HI", "968", "808"),
    ("Burlington", "VT", "054", "802"),
    ("Portland", "ME", "041", "207"),
    ("Providence", "RI", "029", "401"),
    ("Hartford", "CT", "061", "860"),
    ("Newark", "NJ", "071", "973"),
    ("Wilmington", "DE", "198", "302"),
    ("Charleston", "SC", "294", "843"),
    ("Birmingham", "AL", "352", "205"),
    ("Little Rock", "AR", "722", "501"),
    ("Des Moines", "IA", "503", "515"),
    ("Oklahoma City", "OK", "731", "405"),
    ("Fargo", "ND", "581", "701"),
    ("Sioux Falls", "SD", "571", "605"),
    ("Billings", "MT", "591", "406"),
    ("Cheyenne", "WY", "820", "307"),
    ("Jackson", "MS", "392", "601"),
    ("Charleston", "WV", "253", "304"),
    ("Manchester", "NH", "031", "603"),
    ("Washington", "DC", "200", "202"),
)
STATE_NAMES = {
    "AK": "Alaska",
    "AL": "Alabama",
    "AR": "Arkansas",
    "AZ": "Arizona",
    "CA": "California",
    "CO": "Colorado",
    "CT": "Connecticut",
    "DC": "District of Columbia",
    "DE": "Delaware",
    "FL": "Florida",
    "GA": "Georgia",
    "HI": "Hawaii",
    "IA": "Iowa",
    "ID": "Idaho",
    "IL": "Illinois",
    "IN": "Indiana",
    "KY": "Kentucky",
    "LA": "Louisiana",
    "MA": "Massachusetts",
    "MD": "Maryland",
    "ME": "Maine",
    "MI": "Michigan",
    "MN": "Minnesota",
    "MO": "Missouri",
    "MS": "Mississippi",
    "MT": "Montana",
    "NC": "North Carolina",
    "ND": "North Dakota",
    "NE": "Nebraska",
    "NH": "New Hampshire",
    "NJ": "New Jersey",
    "NM": "New Mexico",
    "NV": "Nevada",
    "NY": "New York",
    "OH": "Ohio",
    "OK": "Oklahoma",
    "OR": "Oregon",
    "PA": "Pennsylvania",
    "RI": "Rhode Island",
    "SC": "South Carolina",
    "SD": "South Dakota",
    "TN": "Tennessee",
    "TX": "Texas",
    "UT": "Utah",
    "VA": "Virginia",
    "VT": "Vermont",
    "WA": "Washington",
    "WI": "Wisconsin",
    "WV": "West Virginia",
    "WY": "Wyoming",
}
EMAIL_DOMAINS = (
    "example.org",
    "example.com",
    "example.net",
    "mail.example.org",
    "post.example.com",
    "inbox.example.net",
)
# Constant Contact's role addresses (DESIGN §5a) plus `info@`, which is not one.
ROLE_LOCAL_PARTS = ("sales", "info", "admin", "marketing", "webmaster", "support", "jobs")
ROLE_RATIO = 0.005
LEAD_DUPLICATE_RATIO = 0.03
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Not Converted")
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Trade Show", None)
CAMPAIGN_TYPES = ("Email", "Webinar", "Conference", "Direct Mail", "Advertisement", "Other")
CAMPAIGN_STATUSES = ("Planned", "In Progress", "Completed", "Aborted")
CAMPAIGN_THEMES = (
    "Spring Newsletter",
    "Product Launch",
    "Annual Gala",
    "Customer Webinar",
    "Year-End Appeal",
    "Partner Summit",
    "Holiday Promotion",
    "Volunteer Drive",
    "Onboarding Series",
    "Trade Show Follow-up",
    "Summer Open House",
    "Member Renewal Drive",
    "Back to School Appeal",
    "Giving Tuesday",
    "Customer Advisory Board",
    "Fall Fundraiser",
    "Product Roadshow",
    "Win-Back Offer",
    "Loyalty Rewards Launch",
    "Community Breakfast",
)
CAMPAIGN_REGIONS = (
    "West",
    "East",
    "Central",
    "Bay Area",
    "Pacific Northwest",
    "Southeast",
    "Midwest",
    "Mountain",
)
ACTIVE_CAMPAIGN_STATUSES = ("In Progress", "In Progress", "In Progress", "Planned")
MEMBERS_PER_CAMPAIGN = 25
LEAD_MEMBER_RATIO = 0.25  # of a campaign's members, when the org has unconverted leads
RESPONDED_RATIO = 0.2


def campaign_name(i: int) -> str:
    """The i-th seeded campaign's name: unique for any i, realistic for the first few hundred."""
    themes, years = len(CAMPAIGN_THEMES), 3
    theme = CAMPAIGN_THEMES[i % themes]
    year = 2024 + (i // themes) % years
    name = f"{theme} {year}"
    block = i // (themes * years)
    if block == 0:
        return name
    if block <= len(CAMPAIGN_REGIONS):
        return f"{name} - {CAMPAIGN_REGIONS[block - 1]}"
    return f"{name} #{block - len(CAMPAIGN_REGIONS) + 1}"


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


# Pre-formatted pieces, so drawing a person is picking strings rather than formatting numbers.
_HOUSE = [str(i) for i in range(1, 9999)]
_LINE = [f"{i:04d}" for i in range(10000)]
_EXCHANGE = [str(i) for i in range(201, 999)]
_ZIP2 = [f"{i:02d}" for i in range(100)]
_STREETS = [f"{name} {kind}" for name in STREET_NAMES for kind in STREET_KINDS]
_UNIT_SUFFIX = ["" if not u else f"\n{u}" for u in UNITS]
_SLUG_CACHE: dict[str, str] = {}


def _name_slug(name: str) -> str:
    slug = _SLUG_CACHE.get(name)
    if slug is None:
        slug = _SLUG_CACHE[name] = _slug(name)
    return slug


class _People:
    """Draws people in chunks: the random calls are batched so a million rows stay cheap.

    `chunk` yields finished rows for one object shape: `prefix` names the address fields
    (`Mailing`, `""` for a Lead, `PersonMailing`, `Billing`) and `person_prefix` the person
    fields (`PersonEmail` on a person account).
    """

    def __init__(
        self,
        rng: random.Random,
        opted_out_ratio: float,
        no_email_ratio: float,
        state_country: bool,
    ) -> None:
        self.rng = rng
        self.opted_out_ratio = opted_out_ratio
        self.no_email_ratio = no_email_ratio
        self.state_country = state_country

    def chunk(
        self, start: int, n: int, prefix: str = "Mailing", person_prefix: str = ""
    ) -> Iterator[dict[str, Any]]:
        rng = self.rng
        sc = self.state_country
        firsts = rng.choices(FIRST_NAMES, k=n)
        lasts = rng.choices(LAST_NAMES, k=n)
        sals = rng.choices(SALUTATIONS, k=n)
        titles = rng.choices(TITLES, k=n)
        cities = rng.choices(CITIES, k=n)
        streets = rng.choices(_STREETS, k=n)
        houses = rng.choices(_HOUSE, k=n)
        units = rng.choices(_UNIT_SUFFIX, k=n)
        domains = rng.choices(EMAIL_DOMAINS, k=n)
        lines = rng.choices(_LINE, k=n)
        mobile_lines = rng.choices(_LINE, k=n)
        exchanges = rng.choices(_EXCHANGE, k=n)
        zips = rng.choices(_ZIP2, k=n)
        rolls = [rng.random() for _ in range(n)]
        opt_cut = self.opted_out_ratio
        none_cut = opt_cut + self.no_email_ratio
        role_cut = none_cut + ROLE_RATIO
        k_street, k_city, k_state, k_zip, k_country = (
            f"{prefix}{part}" for part in ("Street", "City", "State", "PostalCode", "Country")
        )
        k_state_code, k_country_code = f"{prefix}StateCode", f"{prefix}CountryCode"
        k_email = f"{person_prefix}Email"
        k_opt = f"{person_prefix}HasOptedOutOfEmail"
        k_title = f"{person_prefix}Title"
        k_mobile = f"{person_prefix}MobilePhone"
        country = "United States" if sc else "USA"
        for j in range(n):
            i = start + j
            first, last = firsts[j], lasts[j]
            city, state, zip3, area = cities[j]
            roll = rolls[j]
            opted_out = False
            if roll < opt_cut or roll >= role_cut:
                email: str | None = f"{_name_slug(first)}.{_name_slug(last)}.{i}@{domains[j]}"
                opted_out = roll < opt_cut
            elif roll < none_cut:
                email = None
            else:
                role = ROLE_LOCAL_PARTS[i % len(ROLE_LOCAL_PARTS)]
                email = f"{role}@{_name_slug(last)}-{i}.example.com"
            # About 40% have a mobile: reuse the roll's digits rather than drawing again.
            mobile = (roll * 1000) % 1 < 0.4
            row = {
                "Salutation": sals[j],
                "FirstName": first,
                "LastName": last,
                k_title: titles[j],
                k_email: email,
                k_opt: opted_out,
                "Phone": f"({area}) {exchanges[j]}-{lines[j]}",
                k_mobile: f"({area}) {exchanges[j]}-{mobile_lines[j]}" if mobile else None,
                k_street: f"{houses[j]} {streets[j]}{units[j]}",
                k_city: city,
                k_state: STATE_NAMES[state] if sc else state,
                k_zip: zip3 + zips[j],
                k_country: country,
            }
            if sc:
                row[k_state_code] = state
                row[k_country_code] = "US"
            yield row


def _company(rng: random.Random, i: int) -> str:
    word = COMPANY_WORDS[rng.randrange(len(COMPANY_WORDS))]
    kind = COMPANY_KINDS[rng.randrange(len(COMPANY_KINDS))]
    suffix = COMPANY_SUFFIXES[rng.randrange(len(COMPANY_SUFFIXES))]
    name = f"{word} {kind}"
    # A number keeps names mostly unique while a few collide, as they do in real orgs.
    if i >= len(COMPANY_WORDS) * len(COMPANY_KINDS) // 4:
        name += f" {i % 997}"
    return f"{name} {suffix}".strip()


_ACCOUNT_DROP = ("Salutation", "FirstName", "LastName", "Title", "Email", "HasOptedOutOfEmail")


def seed_org(
    sandbox: Any,
    *,
    contacts: int = 0,
    leads: int = 0,
    accounts: int = 0,
    person_accounts: int = 0,
    campaigns: int = 0,
    members_per_campaign: int = MEMBERS_PER_CAMPAIGN,
    lead_member_ratio: float | None = None,
    opted_out_ratio: float = 0.02,
    no_email_ratio: float = 0.01,
    seed: int = 42,
    emit_events: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fill the sandbox org; returns the counts written and the seconds it took.

    Deterministic for the same arguments on an empty org. `progress(done, total)` is called after
    every chunk with the rows written so far across all object types.

    Campaigns are active (IsActive true, Planned or In Progress) with unique names, spread over
    the org's Campaign record types when it has some, and each gets `members_per_campaign`
    members (fewer when the org has fewer people), drawn without repeats from the org's Contacts
    and unconverted Leads: `lead_member_ratio` of them Leads (default 0.25 when there are leads).
    A fifth of the members have Responded, the rest are Sent.
    """
    for name, value in (
        ("contacts", contacts),
        ("leads", leads),
        ("accounts", accounts),
        ("person_accounts", person_accounts),
        ("campaigns", campaigns),
        ("members_per_campaign", members_per_campaign),
    ):
        if value < 0:
            raise ValueError(f"{name} must not be negative")
    if not (0 <= opted_out_ratio <= 1 and 0 <= no_email_ratio <= 1):
        raise ValueError("ratios must be between 0 and 1")
    if lead_member_ratio is not None and not 0 <= lead_member_ratio <= 1:
        raise ValueError("lead_member_ratio must be between 0 and 1")
    if opted_out_ratio + no_email_ratio + ROLE_RATIO > 1:
        raise ValueError("opted_out_ratio + no_email_ratio leave no room for ordinary people")
    store = sandbox.store
    schema = getattr(store, "schema", None)
    state_country = bool(getattr(schema, "state_country", False))
    if person_accounts and schema is not None and not getattr(schema, "person_accounts", True):
        raise ValueError("person_accounts needs an org with ORG_PROFILE person_accounts")
    total = accounts + contacts + leads + person_accounts + campaigns
    rng = random.Random(seed)
    people = _People(rng, opted_out_ratio, no_email_ratio, state_country)
    done = 0
    started = time.perf_counter()
    counts = dict.fromkeys(
        ("accounts", "contacts", "leads", "person_accounts", "campaigns", "campaign_members"), 0
    )

    def write(sobject: str, rows: list[dict[str, Any]]) -> int:
        nonlocal done
        try:
            written = int(store.insert_many(sobject, rows, events=emit_events))
        except SalesforceError as exc:
            # A store whose fast path refuses a field (e.g. a business Account's Name) still
            # takes the rows one by one, validated like any API write.
            if exc.error_code != "INVALID_FIELD_FOR_INSERT_UPDATE":
                raise
            log.warning("insert_many refused %s rows (%s); creating them one by one", sobject, exc)
            with store.transaction():
                for row in rows:
                    store.create(sobject, {k: v for k, v in row.items() if v is not None})
            written = len(rows)
        done += written
        if progress is not None:
            progress(done, total)
        return written

    companies = [_company(rng, i) for i in range(max(accounts, 1))]
    for start in range(0, accounts, CHUNK):
        n = min(CHUNK, accounts - start)
        rows = []
        for j, p in enumerate(people.chunk(3_000_000_000 + start, n, prefix="Billing")):
            for key in _ACCOUNT_DROP:
                p.pop(key, None)
            p.pop("MobilePhone", None)
            name = companies[start + j]
            p["Name"] = name
            p["Industry"] = INDUSTRIES[(start + j) * 7 % len(INDUSTRIES)]
            p["Website"] = f"https://www.{_slug(name)}.example.com"
            rows.append(p)
        counts["accounts"] += write("Account", rows)
    account_ids: list[str] = []
    if accounts and contacts:
        account_ids = [r["Id"] for r in store.query("SELECT Id FROM Account").rows]

    # Leads that duplicate a contact's email: pick which contacts now, remember them as we go.
    n_dupes = min(int(leads * LEAD_DUPLICATE_RATIO), contacts)
    dupe_slots = set(rng.sample(range(contacts), n_dupes)) if n_dupes else set()
    duplicated: list[dict[str, Any]] = []

    for start in range(0, contacts, CHUNK):
        n = min(CHUNK, contacts - start)
        rows = list(people.chunk(start, n))
        if account_ids:
            for row, acc in zip(rows, rng.choices(account_ids, k=n), strict=True):
                row["AccountId"] = acc
        for slot in dupe_slots.intersection(range(start, start + n)):
            if rows[slot - start]["Email"]:
                duplicated.append(rows[slot - start])
        counts["contacts"] += write("Contact", rows)

    lead_offset = contacts + 1_000_000_000  # other numbers than the contacts' in emails
    for start in range(0, leads, CHUNK):
        n = min(CHUNK, leads - start)
        rows = []
        for j, p in enumerate(people.chunk(lead_offset + start, n, prefix="")):
            k = start + j
            if k < len(duplicated):
                # The same person as a contact: name, email and phone carried over.
                twin = duplicated[k]
                for key in ("Salutation", "FirstName", "LastName", "Email", "Phone"):
                    p[key] = twin[key]
                p["HasOptedOutOfEmail"] = twin["HasOptedOutOfEmail"]
            p["Company"] = companies[k % len(companies)]
            p["Status"] = LEAD_STATUSES[k % len(LEAD_STATUSES)]
            p["LeadSource"] = LEAD_SOURCES[k * 5 % len(LEAD_SOURCES)]
            rows.append(p)
        counts["leads"] += write("Lead", rows)

    pa_offset = contacts + 2_000_000_000
    for start in range(0, person_accounts, CHUNK):
        n = min(CHUNK, person_accounts - start)
        # A person account is an Account with a LastName (IsPersonAccount is read-only).
        rows = list(people.chunk(pa_offset + start, n, "PersonMailing", "Person"))
        counts["person_accounts"] += write("Account", rows)

    if campaigns:
        before = {r["Id"] for r in store.query("SELECT Id FROM Campaign").rows}
        record_types = [
            r["Id"]
            for r in store.query(
                "SELECT Id FROM RecordType WHERE SobjectType = 'Campaign' AND IsActive = true"
                " ORDER BY Id"
            ).rows
        ]
        offset = store.count("Campaign", include_deleted=True)
        rows = []
        for i in range(campaigns):
            status = ACTIVE_CAMPAIGN_STATUSES[rng.randrange(len(ACTIVE_CAMPAIGN_STATUSES))]
            name = campaign_name(offset + i)
            year = int(name.split(" - ")[0].split(" #")[0][-4:])
            campaign: dict[str, Any] = {
                "Name": name,
                "Type": CAMPAIGN_TYPES[rng.randrange(len(CAMPAIGN_TYPES))],
                "Status": status,
                "IsActive": True,
                "StartDate": f"{year}-{1 + i % 12:02d}-01",
            }
            if record_types:
                campaign["RecordTypeId"] = record_types[i % len(record_types)]
            rows.append(campaign)
        counts["campaigns"] += write("Campaign", rows)
        new_campaigns = [
            r["Id"]
            for r in store.query("SELECT Id FROM Campaign ORDER BY Id").rows
            if r["Id"] not in before
        ]
        if members_per_campaign and new_campaigns:
            members = _member_rows(
                store, rng, new_campaigns, members_per_campaign, lead_member_ratio
            )
            total += len(members)
            for start in range(0, len(members), CHUNK):
                counts["campaign_members"] += write(
                    "CampaignMember", members[start : start + CHUNK]
                )

    seconds = round(time.perf_counter() - started, 3)
    log.info("seeded the Salesforce sandbox: %s in %.1fs", counts, seconds)
    return {**counts, "seconds": seconds}


def _member_rows(
    store: Any,
    rng: random.Random,
    campaign_ids: list[str],
    per_campaign: int,
    lead_ratio: float | None,
) -> list[dict[str, Any]]:
    """`per_campaign` distinct people per campaign, Contacts and Leads mixed, bulk-loaded."""
    contact_ids = [r["Id"] for r in store.query("SELECT Id FROM Contact ORDER BY Id").rows]
    lead_ids = [
        r["Id"]
        for r in store.query("SELECT Id FROM Lead WHERE IsConverted = false ORDER BY Id").rows
    ]
    ratio = (LEAD_MEMBER_RATIO if lead_ids else 0.0) if lead_ratio is None else lead_ratio
    size = min(per_campaign, len(contact_ids) + len(lead_ids))
    n_leads = min(round(size * ratio), len(lead_ids))
    n_contacts = min(size - n_leads, len(contact_ids))
    n_leads = min(size - n_contacts, len(lead_ids))  # top up from leads when contacts run out
    rows: list[dict[str, Any]] = []
    for campaign_id in campaign_ids:
        people = [
            ("ContactId", contact_ids[k]) for k in rng.sample(range(len(contact_ids)), n_contacts)
        ]
        people += [("LeadId", lead_ids[k]) for k in rng.sample(range(len(lead_ids)), n_leads)]
        responded = [rng.random() < RESPONDED_RATIO for _ in people]
        for (ref, person), did in zip(people, responded, strict=True):
            rows.append(
                {
                    "CampaignId": campaign_id,
                    "ContactId": person if ref == "ContactId" else None,
                    "LeadId": person if ref == "LeadId" else None,
                    "Status": "Responded" if did else "Sent",
                }
            )
    return rows


@bp.post("/seed")
def seed_route() -> Response | tuple[Response, int]:
    body = request.get_json(silent=True) or {}
    kwargs: dict[str, Any] = {}
    for name in (
        "contacts",
        "leads",
        "accounts",
        "person_accounts",
        "campaigns",
        "members_per_campaign",
        "seed",
    ):
        if name in body:
            value = body[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return jsonify(error=f"'{name}' must be a non-negative integer"), 400
            if name != "seed" and value > MAX_SEED:
                return jsonify(error=f"'{name}' is capped at {MAX_SEED} per request"), 400
            kwargs[name] = value
    for name in ("opted_out_ratio", "no_email_ratio", "lead_member_ratio"):
        if name in body:
            value = body[name]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return jsonify(error=f"'{name}' must be a number between 0 and 1"), 400
            kwargs[name] = float(value)
    if "emit_events" in body:
        kwargs["emit_events"] = bool(body["emit_events"])
    try:
        result = seed_org(current_sandbox(), **kwargs)
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(result)
