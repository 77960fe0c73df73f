"""SOQL over the sandbox org: parsing, every operator, null semantics, relationships, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.salesforce import soql
from sandbox.salesforce.store import OrgStore, SalesforceError

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday


class FixedClock:
    def __init__(self, when: datetime) -> None:
        self.when = when

    def now(self) -> datetime:
        return self.when


@pytest.fixture(scope="module")
def org() -> dict[str, Any]:
    """A small org: two accounts, six contacts made at different times, one campaign."""
    clock = FixedClock(NOW - timedelta(days=10))
    store = OrgStore("standard", clock=clock)
    acme = store.create("Account", {"Name": "Acme", "Industry": "Technology"})
    globex = store.create("Account", {"Name": "Globex"})
    people = [
        # LastName, FirstName, Email, AccountId, Title, Birthdate, opted out, city, days ago
        ("Smith", "Ann", "ann@acme.com", acme, "CEO", "1990-05-01", False, "Boston", 10),
        ("Jones", "Bob", "BOB@globex.com", globex, "CFO", "1985-01-01", True, "Springfield", 1),
        ("Lee", "Cat", None, None, "Engineer", None, False, "boston", 0),
        ("O'Neil", "Dan", "dan_o@x.org", acme, None, "2000-12-31", False, None, 0),
        ("Under_score", None, "u@x.org", None, None, None, False, None, 40),
        ("Per%cent", "Eve", "eve@x.org", None, "Engineer", None, False, None, 0),
    ]
    ids: dict[str, str] = {"acme": acme, "globex": globex}
    for last, first, email, account, title, birth, opted, city, ago in people:
        clock.when = NOW - timedelta(days=ago)
        values = {
            "LastName": last,
            "FirstName": first,
            "Email": email,
            "AccountId": account,
            "Title": title,
            "Birthdate": birth,
            "HasOptedOutOfEmail": opted,
            "MailingCity": city,
        }
        ids[last] = store.create("Contact", {k: v for k, v in values.items() if v is not None})
    clock.when = NOW
    campaign = store.create("Campaign", {"Name": "Fall Newsletter"})
    ids["campaign"] = campaign
    store.create("CampaignMember", {"CampaignId": campaign, "ContactId": ids["Smith"]})
    store.create("CampaignMember", {"CampaignId": campaign, "ContactId": ids["Lee"]})
    return {"store": store, "ids": ids}


def names(org: dict[str, Any], where: str) -> list[str]:
    text = f"SELECT LastName FROM Contact WHERE {where} ORDER BY LastName".format(**org["ids"])
    return [row["LastName"] for row in org["store"].query(text).rows]


ALL = ["Jones", "Lee", "O'Neil", "Per%cent", "Smith", "Under_score"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        # equality ignores case for text, not for ids
        ("Email = 'bob@GLOBEX.com'", ["Jones"]),
        ("email = 'ANN@acme.com'", ["Smith"]),
        ("Title = 'ceo'", ["Smith"]),
        # != and <> also match nulls, as in Salesforce
        ("Title != 'CEO'", ["Jones", "Lee", "O'Neil", "Per%cent", "Under_score"]),
        ("Title <> 'engineer'", ["Jones", "O'Neil", "Smith", "Under_score"]),
        ("Title = null", ["O'Neil", "Under_score"]),
        ("Title != null", ["Jones", "Lee", "Per%cent", "Smith"]),
        # ordering comparisons never match null
        ("Birthdate < 1990-01-01", ["Jones"]),
        ("Birthdate <= 1990-05-01", ["Jones", "Smith"]),
        ("Birthdate > 1990-05-01", ["O'Neil"]),
        ("Birthdate >= 1990-05-01", ["O'Neil", "Smith"]),
        ("LastName > 'p'", ["Per%cent", "Smith", "Under_score"]),
        # booleans
        ("HasOptedOutOfEmail = true", ["Jones"]),
        ("HasOptedOutOfEmail = false", ["Lee", "O'Neil", "Per%cent", "Smith", "Under_score"]),
        ("HasOptedOutOfEmail = null", ["Lee", "O'Neil", "Per%cent", "Smith", "Under_score"]),
        ("HasOptedOutOfEmail != null", ["Jones"]),
        ("Account.Name = null", ["Lee", "Per%cent", "Under_score"]),
        ("AccountId NOT IN (SELECT Id FROM Account WHERE Name = 'Acme')", ["Jones"]),
        # IN / NOT IN, with and without null
        ("Title IN ('ceo', 'CFO')", ["Jones", "Smith"]),
        ("Title IN ('CEO', null)", ["O'Neil", "Smith", "Under_score"]),
        # NOT IN leaves nulls out, unlike != and NOT (...)
        ("Title NOT IN ('CEO', 'CFO')", ["Lee", "Per%cent"]),
        ("Title NOT IN ('CEO', null)", ["Jones", "Lee", "Per%cent"]),
        # LIKE: case-insensitive, % and _ wildcards, \% and \_ literal
        ("LastName LIKE 's%'", ["Smith"]),
        ("LastName LIKE '_ee'", ["Lee"]),
        ("LastName LIKE '%\\_%'", ["Under_score"]),
        ("LastName LIKE '%\\%%'", ["Per%cent"]),
        ("Email LIKE '%@X.ORG'", ["O'Neil", "Per%cent", "Under_score"]),
        ("NOT LastName LIKE 's%'", ["Jones", "Lee", "O'Neil", "Per%cent", "Under_score"]),
        ("LastName NOT LIKE 's%'", ["Jones", "Lee", "O'Neil", "Per%cent", "Under_score"]),
        # string escapes
        ("LastName = 'O\\'Neil'", ["O'Neil"]),
        # NOT is two-valued: it keeps the records its operand does not match, nulls included
        ("NOT (Title = 'CEO')", ["Jones", "Lee", "O'Neil", "Per%cent", "Under_score"]),
        ("NOT (Birthdate < 1990-01-01)", ["Lee", "O'Neil", "Per%cent", "Smith", "Under_score"]),
        ("NOT (Title != 'CEO')", ["Smith"]),
        ("NOT (Title IN ('CEO'))", ["Jones", "Lee", "O'Neil", "Per%cent", "Under_score"]),
        ("NOT NOT (Title = 'CEO')", ["Smith"]),
        # AND / OR / parentheses
        ("Title = 'Engineer' AND MailingCity = 'BOSTON'", ["Lee"]),
        ("Title = 'CEO' OR Title = 'CFO' OR Email = null", ["Jones", "Lee", "Smith"]),
        ("(Title = 'CEO' OR Title = 'CFO') AND HasOptedOutOfEmail = false", ["Smith"]),
        ("Title = 'CEO' OR (Title = 'CFO' AND HasOptedOutOfEmail = false)", ["Smith"]),
        ("NOT (Title = 'CEO' OR Title = 'CFO')", ["Lee", "O'Neil", "Per%cent", "Under_score"]),
        # parent relationships in filters (no parent: the comparison is false)
        ("Account.Name = 'acme'", ["O'Neil", "Smith"]),
        ("Account.Name != 'Acme'", ["Jones", "Lee", "Per%cent", "Under_score"]),
        ("Account.Industry = 'Technology' AND Title = null", ["O'Neil"]),
        ("AccountId = null", ["Lee", "Per%cent", "Under_score"]),
        ("AccountId = '{acme}'", ["O'Neil", "Smith"]),
        # semi-join and anti-join
        (
            "Id IN (SELECT ContactId FROM CampaignMember WHERE CampaignId = '{campaign}')",
            ["Lee", "Smith"],
        ),
        (
            "Id NOT IN (SELECT ContactId FROM CampaignMember WHERE CampaignId = '{campaign}')",
            ["Jones", "O'Neil", "Per%cent", "Under_score"],
        ),
        ("AccountId IN (SELECT Id FROM Account WHERE Name LIKE 'G%')", ["Jones"]),
        # date constants (sandbox time zone UTC; "now" is 2026-11-26 12:00)
        ("CreatedDate = TODAY", ["Lee", "O'Neil", "Per%cent"]),
        ("CreatedDate = YESTERDAY", ["Jones"]),
        ("CreatedDate = LAST_N_DAYS:1", ["Jones", "Lee", "O'Neil", "Per%cent"]),
        ("CreatedDate < LAST_N_DAYS:1", ["Smith", "Under_score"]),
        ("CreatedDate >= LAST_N_DAYS:10", ["Jones", "Lee", "O'Neil", "Per%cent", "Smith"]),
        ("CreatedDate = THIS_MONTH", ["Jones", "Lee", "O'Neil", "Per%cent", "Smith"]),
        ("CreatedDate = LAST_MONTH", ["Under_score"]),
        ("CreatedDate != TODAY", ["Jones", "Smith", "Under_score"]),
        ("CreatedDate > TODAY", []),
        ("CreatedDate <= YESTERDAY", ["Jones", "Smith", "Under_score"]),
        ("CreatedDate = THIS_WEEK", ["Jones", "Lee", "O'Neil", "Per%cent"]),
        ("Birthdate = THIS_YEAR", []),
        ("Birthdate < LAST_N_YEARS:37", ["Jones"]),
        # datetime literals, with offsets
        ("CreatedDate > 2026-11-25T12:00:00Z", ["Lee", "O'Neil", "Per%cent"]),
        ("CreatedDate >= 2026-11-25T14:00:00+02:00", ["Jones", "Lee", "O'Neil", "Per%cent"]),
        ("CreatedDate < 2026-11-16T12:00:00.001Z", ["Smith", "Under_score"]),
        ("SystemModstamp > 2026-01-01T00:00:00Z AND IsDeleted = false", ALL),
        # field and object names ignore case; prefixing the object name is allowed
        ("contact.TITLE = 'CEO'", ["Smith"]),
    ],
)
def test_where(org: dict[str, Any], where: str, expected: list[str]) -> None:
    assert names(org, where) == expected


def test_relationship_values_nest_and_null_parent_is_none(org: dict[str, Any]) -> None:
    result = org["store"].query(
        "SELECT Id, account.name, Account.Industry, LastName FROM Contact"
        " WHERE LastName IN ('Smith', 'Lee') ORDER BY LastName DESC"
    )
    assert result.columns == ["Id", "Account.Name", "Account.Industry", "LastName"]
    rows = list(result.rows)
    assert rows == [
        {
            "Id": org["ids"]["Smith"],
            "Account": {"Name": "Acme", "Industry": "Technology"},
            "LastName": "Smith",
        },
        {"Id": org["ids"]["Lee"], "Account": None, "LastName": "Lee"},
    ]
    assert list(rows[0]) == ["Id", "Account", "LastName"]


def test_two_level_relationship(org: dict[str, Any]) -> None:
    store = org["store"]
    result = store.query(
        "SELECT Contact.Account.Name, Campaign.Name FROM CampaignMember ORDER BY Contact.LastName"
    )
    assert result.columns == ["Contact.Account.Name", "Campaign.Name"]
    assert list(result.rows) == [
        {"Contact": {"Account": None}, "Campaign": {"Name": "Fall Newsletter"}},
        {"Contact": {"Account": {"Name": "Acme"}}, "Campaign": {"Name": "Fall Newsletter"}},
    ]


def test_compound_address_in_select_is_nested(org: dict[str, Any]) -> None:
    rows = list(
        org["store"]
        .query(
            "SELECT MailingAddress FROM Contact WHERE LastName IN ('Lee', 'Under_score')"
            " ORDER BY LastName"
        )
        .rows
    )
    assert rows[0]["MailingAddress"]["city"] == "boston"
    assert set(rows[0]["MailingAddress"]) == {
        "street",
        "city",
        "state",
        "postalCode",
        "country",
        "latitude",
        "longitude",
        "geocodeAccuracy",
    }
    assert rows[1] == {"MailingAddress": None}


def test_booleans_and_numbers_come_back_typed(org: dict[str, Any]) -> None:
    row = next(
        org["store"]
        .query(
            "SELECT HasOptedOutOfEmail, Campaign.IsActive, Campaign.NumberOfContacts"
            " FROM CampaignMember LIMIT 1"
        )
        .rows
    )
    assert row["HasOptedOutOfEmail"] is False
    assert row["Campaign"] == {"IsActive": False, "NumberOfContacts": 2}


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("Title, LastName", ["O'Neil", "Under_score", "Smith", "Jones", "Lee", "Per%cent"]),
        (
            "Title NULLS LAST, LastName",
            ["Smith", "Jones", "Lee", "Per%cent", "O'Neil", "Under_score"],
        ),
        (
            "Title DESC, LastName DESC",
            ["Per%cent", "Lee", "Jones", "Smith", "Under_score", "O'Neil"],
        ),
        (
            "Title DESC NULLS FIRST, LastName",
            ["O'Neil", "Under_score", "Lee", "Per%cent", "Jones", "Smith"],
        ),
        (
            "Account.Name DESC, LastName ASC",
            ["Jones", "O'Neil", "Smith", "Lee", "Per%cent", "Under_score"],
        ),
        ("MailingCity, LastName", ["O'Neil", "Per%cent", "Under_score", "Lee", "Smith", "Jones"]),
    ],
)
def test_order_by(org: dict[str, Any], order: str, expected: list[str]) -> None:
    rows = org["store"].query(f"SELECT LastName FROM Contact ORDER BY {order}").rows
    assert [r["LastName"] for r in rows] == expected


@pytest.mark.parametrize(
    ("tail", "expected", "total"),
    [
        ("LIMIT 2", ["Jones", "Lee"], 2),
        ("LIMIT 2 OFFSET 3", ["Per%cent", "Smith"], 2),
        ("OFFSET 4", ["Smith", "Under_score"], 2),
        ("LIMIT 10 OFFSET 5", ["Under_score"], 1),
        ("LIMIT 0", [], 0),
        ("OFFSET 10", [], 0),
    ],
)
def test_limit_offset(org: dict[str, Any], tail: str, expected: list[str], total: int) -> None:
    result = org["store"].query(f"SELECT LastName FROM Contact ORDER BY LastName {tail}")
    assert [r["LastName"] for r in result.rows] == expected
    assert result.total_size == total


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT COUNT() FROM Contact", 6),
        ("select count() from contact where Title = null", 2),
        ("SELECT COUNT() FROM Contact WHERE Account.Name = 'Acme'", 2),
        ("SELECT COUNT() FROM Contact LIMIT 4", 4),
        ("SELECT COUNT() FROM Lead", 0),
    ],
)
def test_count(org: dict[str, Any], text: str, expected: int) -> None:
    result = org["store"].query(text)
    assert result.total_size == expected
    assert list(result.rows) == []


def test_query_all_sees_deleted_and_query_does_not() -> None:
    store = OrgStore("standard", clock=FixedClock(NOW))
    keep = store.create("Contact", {"LastName": "Keep"})
    gone = store.create("Contact", {"LastName": "Gone"})
    store.delete("Contact", gone)
    live = [r["Id"] for r in store.query("SELECT Id FROM Contact").rows]
    every = store.query("SELECT Id, IsDeleted FROM Contact ORDER BY LastName", include_deleted=True)
    assert live == [keep]
    assert list(every.rows) == [{"Id": gone, "IsDeleted": True}, {"Id": keep, "IsDeleted": False}]
    deleted_only = store.query("SELECT Id FROM Contact WHERE IsDeleted = true")
    assert deleted_only.total_size == 0


def test_fifteen_character_ids_match_in_filters(org: dict[str, Any]) -> None:
    smith = org["ids"]["Smith"]
    assert names(org, f"Id = '{smith[:15]}'") == ["Smith"]
    assert names(org, f"Id IN ('{smith[:15]}', '{org['ids']['Lee']}')") == ["Lee", "Smith"]


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [
        ("SELECT Id FORM Contact", "MALFORMED_QUERY", "unexpected token: 'FORM'"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
        ("SELECT FROM Contact", "MALFORMED_QUERY", "unexpected token: 'FROM'"),
        ("SELECT Id, FROM Contact", "MALFORMED_QUERY", "unexpected token: 'FROM'"),
        (
            "SELECT Id FROM Contact WHERE Title = 'x' AND Email = 'y' OR Phone = 'z'",
            "MALFORMED_QUERY",
            "unexpected token: 'OR'",
        ),
        ("SELECT Id FROM Contact WHERE Title = 'unterminated", "MALFORMED_QUERY", "string literal"),
        ("SELECT Id FROM Contact WHERE Title = 'bad \\q'", "MALFORMED_QUERY", "Illegal character"),
        ("SELECT Id FROM Contact LIMIT x", "MALFORMED_QUERY", "unexpected token: 'x'"),
        ("SELECT Id FROM Contact WHERE CreatedDate = SOMEDAY", "MALFORMED_QUERY", "SOMEDAY"),
        ("SELECT Id FROM Contact WHERE CreatedDate > LAST_N_DAYS", "MALFORMED_QUERY", "unexpected"),
        ("SELECT Id, Id FROM Contact", "MALFORMED_QUERY", "duplicate field selected: Id"),
        ("SELECT COUNT(Id) FROM Contact", "MALFORMED_QUERY", "COUNT()"),
        ("SELECT Foo FROM Contact", "INVALID_FIELD", "No such column 'Foo' on entity 'Contact'"),
        ("SELECT Id FROM Contact WHERE Foo__c = 1", "INVALID_FIELD", "append the '__c'"),
        (
            "SELECT Account.Foo FROM Contact",
            "INVALID_FIELD",
            "No such column 'Foo' on entity 'Account'",
        ),
        (
            "SELECT Acount.Name FROM Contact",
            "INVALID_FIELD",
            "Didn't understand relationship 'Acount'",
        ),
        (
            "SELECT Owner.Name FROM Contact",
            "INVALID_FIELD",
            "Didn't understand relationship 'Owner'",
        ),
        ("SELECT Id FROM Foo", "INVALID_TYPE", "sObject type 'Foo' is not supported"),
        (
            "SELECT Id FROM Contact WHERE MailingAddress = null",
            "INVALID_FIELD",
            "can not be filtered",
        ),
        ("SELECT Id FROM Contact WHERE Description = 'x'", "INVALID_FIELD", "can not be filtered"),
        ("SELECT Id FROM Contact ORDER BY MailingAddress", "INVALID_FIELD", "can not be sorted"),
        ("SELECT Id FROM Contact WHERE CreatedDate > 2026-01-01", "INVALID_FIELD", "type dateTime"),
        (
            "SELECT Id FROM Contact WHERE Birthdate = '2020-01-01'",
            "INVALID_FIELD",
            "must be of type date",
        ),
        (
            "SELECT Id FROM Contact WHERE HasOptedOutOfEmail = 'true'",
            "INVALID_FIELD",
            "type boolean",
        ),
        ("SELECT Id FROM Contact WHERE LastName = 5", "INVALID_FIELD", "type string"),
        ("SELECT Id FROM Contact WHERE Title = TODAY", "INVALID_FIELD", "Title"),
        (
            "SELECT Id FROM Contact WHERE Id = 'nope'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: nope",
        ),
        ("SELECT Id FROM Contact WHERE Title INCLUDES ('a')", "INVALID_FIELD", "multipicklist"),
        (
            "SELECT Id FROM Contact WHERE Email IN (SELECT Id FROM Account)",
            "INVALID_FIELD",
            "semi join",
        ),
        (
            "SELECT Id FROM Contact WHERE Id IN (SELECT Name FROM Account)",
            "INVALID_FIELD",
            "semi join",
        ),
        (
            "SELECT Id FROM Contact WHERE Id IN (SELECT Id, Name FROM Account)",
            "MALFORMED_QUERY",
            "semi join",
        ),
        ("SELECT Id FROM Contact OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "2000"),
    ],
)
def test_errors(org: dict[str, Any], text: str, code: str, fragment: str) -> None:
    with pytest.raises(SalesforceError) as caught:
        org["store"].query(text)
    assert caught.value.error_code == code
    assert caught.value.status == 400
    assert fragment in caught.value.message


def test_error_message_points_at_the_token() -> None:
    with pytest.raises(soql.SoqlError) as caught:
        soql.parse("SELECT Id\nFROM Contact\nWHERE Title = 'x' AND AND")
    assert caught.value.message == (
        "\nWHERE Title = 'x' AND AND\n                      ^\nERROR at Row:3:Column:23\n"
        "unexpected token: 'AND'"
    )


@pytest.mark.parametrize(
    ("constant", "n", "start", "end"),
    [
        ("TODAY", None, "2026-11-26", "2026-11-27"),
        ("YESTERDAY", None, "2026-11-25", "2026-11-26"),
        ("TOMORROW", None, "2026-11-27", "2026-11-28"),
        ("THIS_WEEK", None, "2026-11-22", "2026-11-29"),
        ("LAST_WEEK", None, "2026-11-15", "2026-11-22"),
        ("NEXT_WEEK", None, "2026-11-29", "2026-12-06"),
        ("THIS_MONTH", None, "2026-11-01", "2026-12-01"),
        ("LAST_MONTH", None, "2026-10-01", "2026-11-01"),
        ("NEXT_MONTH", None, "2026-12-01", "2027-01-01"),
        ("THIS_QUARTER", None, "2026-10-01", "2027-01-01"),
        ("LAST_QUARTER", None, "2026-07-01", "2026-10-01"),
        ("THIS_YEAR", None, "2026-01-01", "2027-01-01"),
        ("LAST_YEAR", None, "2025-01-01", "2026-01-01"),
        ("LAST_90_DAYS", None, "2026-08-28", "2026-11-27"),
        ("LAST_N_DAYS", 7, "2026-11-19", "2026-11-27"),
        ("NEXT_N_DAYS", 2, "2026-11-27", "2026-11-29"),
        ("N_DAYS_AGO", 3, "2026-11-23", "2026-11-24"),
        ("LAST_N_MONTHS", 2, "2026-09-01", "2026-11-01"),
        ("NEXT_N_YEARS", 1, "2027-01-01", "2028-01-01"),
    ],
)
def test_date_constant_ranges(constant: str, n: int | None, start: str, end: str) -> None:
    lo, hi = soql.date_range(constant, n, NOW)
    assert (lo.isoformat(), hi.isoformat()) == (start, end)


@pytest.mark.parametrize(
    ("id15", "suffix"),
    [
        ("001A0000006Vm9r", "IAC"),  # Salesforce's documented example
        ("003000000000000", "AAA"),
        ("00QABCDEabcdeAB", "2HY"),
    ],
)
def test_id_suffix(id15: str, suffix: str) -> None:
    assert soql.id_suffix(id15) == suffix
    assert soql.normalize_id(id15) == id15 + suffix
    assert soql.normalize_id(id15 + suffix) == id15 + suffix
    assert soql.normalize_id(id15 + suffix.lower()) == id15 + suffix


@pytest.mark.parametrize("bad", ["", "003", "003SB000000000!", "001A0000006Vm9rAAA", "0" * 17, 42])
def test_normalize_id_rejects(bad: Any) -> None:
    assert soql.normalize_id(bad) is None


def test_computed_text_fields_sort_and_compare_ignoring_case() -> None:
    store = OrgStore("standard", clock=FixedClock(NOW))
    campaign = store.create("Campaign", {"Name": "Fall"})
    for name in ("bob", "Alice", "carl"):
        contact = store.create("Contact", {"LastName": name, "Email": f"{name}@X.org"})
        store.create("CampaignMember", {"CampaignId": campaign, "ContactId": contact})
    ordered = store.query("SELECT LastName FROM CampaignMember ORDER BY LastName DESC").rows
    assert [r["LastName"] for r in ordered] == ["carl", "bob", "Alice"]
    hits = store.query("SELECT LastName FROM CampaignMember WHERE Email = 'ALICE@x.org'").rows
    assert [r["LastName"] for r in hits] == ["Alice"]
