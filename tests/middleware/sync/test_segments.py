"""The setup filter (seed Step 4): each operator, groups, and the check against a describe."""

from __future__ import annotations

import pytest

from middleware.sync.segments import check_filter, filter_fields, matches_filter, unmatched
from tests.middleware.sync.conftest import opts

REC = {
    "Id": "003A",
    "LeadSource": "Web",
    "Region__c": "EMEA",
    "NumberOfEmployees": 120,
    "Newsletter__c": True,
    "Description": None,
    "Account": {"Name": "Acme Corp"},
    "CreatedDate": "2026-01-15T10:00:00.000+0000",
    "Birthdate": "1990-05-01",
    "AnnualRevenue": 5000000.0,
    "Zip__c": "01234",
}


def f(op, value=None, field="LeadSource", match="all"):
    return opts(filter={"match": match, "conditions": [{"field": field, "op": op, "value": value}]})


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        pytest.param(opts(), True, id="no filter: everything syncs"),
        pytest.param(f("equals", "web"), True, id="equals ignores case like SOQL"),
        pytest.param(f("equals", "Phone"), False, id="equals"),
        pytest.param(f("not_equals", "Phone"), True, id="not_equals"),
        pytest.param(f("contains", "acme", "Account.Name"), True, id="contains through a parent"),
        pytest.param(f("not_contains", "acme", "Account.Name"), False, id="not_contains"),
        pytest.param(f("starts_with", "ac", "Account.Name"), True, id="starts_with"),
        pytest.param(f("not_starts_with", "ac", "Account.Name"), False, id="not_starts_with"),
        pytest.param(f("not_starts_with", "corp", "Account.Name"), True, id="not_starts_with no"),
        pytest.param(
            f("not_starts_with", "x", "Description"), True, id="blank starts with nothing"
        ),
        pytest.param(f("not_contains", "x", "Description"), True, id="blank contains nothing"),
        pytest.param(f("contains", "", "Account.Name"), True, id="contains empty text"),
        pytest.param(f("in", ["emea", "apac"], "Region__c"), True, id="in"),
        pytest.param(f("not_in", ["EMEA"], "Region__c"), False, id="not_in"),
        pytest.param(f("greater_than", 100, "NumberOfEmployees"), True, id="greater_than number"),
        pytest.param(f("less_than", 100, "NumberOfEmployees"), False, id="less_than number"),
        pytest.param(f("greater_or_equal", 120, "NumberOfEmployees"), True, id="greater_or_equal"),
        pytest.param(f("greater_or_equal", 121, "NumberOfEmployees"), False, id="ge above"),
        pytest.param(f("less_or_equal", 120, "NumberOfEmployees"), True, id="less_or_equal"),
        pytest.param(f("less_or_equal", 119, "NumberOfEmployees"), False, id="le below"),
        pytest.param(f("less_than", "1000", "NumberOfEmployees"), True, id="numeric text"),
        pytest.param(f("greater_than", 1, "Missing__c"), False, id="blank orders nowhere"),
        pytest.param(f("less_than", 1, "Missing__c"), False, id="blank is not less either"),
        pytest.param(f("equals", 5000000, "AnnualRevenue"), True, id="numbers equal as numbers"),
        pytest.param(f("in", [120, 7], "NumberOfEmployees"), True, id="in numbers"),
        pytest.param(f("equals", "1234", "Zip__c"), False, id="text stays text"),
        pytest.param(f("equals", "01234", "Zip__c"), True, id="text equals text"),
        pytest.param(f("greater_than", "2026-01-01", "CreatedDate"), True, id="dates as ISO"),
        pytest.param(f("equals", "2026-01-15", "CreatedDate"), True, id="datetime's date part"),
        pytest.param(f("greater_than", "2026-01-15", "CreatedDate"), False, id="gt same day"),
        pytest.param(f("greater_or_equal", "2026-01-15", "CreatedDate"), True, id="ge same day"),
        pytest.param(f("less_than", "2026-01-16", "CreatedDate"), True, id="lt next day"),
        pytest.param(f("in", ["2026-01-15"], "CreatedDate"), True, id="in dates"),
        pytest.param(f("equals", "2026-01-15T11:00:00+01:00", "CreatedDate"), True, id="instants"),
        pytest.param(
            f("greater_than", "2026-01-15T10:00:00Z", "CreatedDate"), False, id="same instant"
        ),
        pytest.param(f("less_than", "2026-01-15T10:30:00", "CreatedDate"), True, id="naive UTC"),
        pytest.param(f("less_than", "2000-01-01", "Birthdate"), True, id="date field"),
        pytest.param(f("equals", "1990-05-01", "Birthdate"), True, id="date equals"),
        pytest.param(f("equals", True, "Newsletter__c"), True, id="checkbox equals true"),
        pytest.param(f("not_equals", "true", "Newsletter__c"), False, id="checkbox as text"),
        pytest.param(f("is_blank", None, "Description"), True, id="null is blank"),
        pytest.param(f("is_not_blank", None, "Region__c"), True, id="is_not_blank"),
        pytest.param(f("is_true", None, "Newsletter__c"), True, id="checkbox is_true"),
        pytest.param(f("is_false", None, "Newsletter__c"), False, id="checkbox is_false"),
        pytest.param(f("is_blank", None, "Missing__c"), True, id="missing field is blank"),
    ],
)
def test_conditions(setup, expected) -> None:
    assert matches_filter(setup, REC) is expected


def test_all_needs_every_condition_and_any_needs_one() -> None:
    conditions = [
        {"field": "LeadSource", "op": "equals", "value": "Web"},
        {"field": "Region__c", "op": "equals", "value": "APAC"},
    ]
    assert not matches_filter(opts(filter={"match": "all", "conditions": conditions}), REC)
    assert matches_filter(opts(filter={"match": "any", "conditions": conditions}), REC)


def test_namespace_prefix_applies_to_custom_filter_fields() -> None:
    setup = opts(
        namespace_prefix="acme",
        filter={"conditions": [{"field": "Region__c", "op": "equals", "value": "EMEA"}]},
    )
    assert filter_fields(setup) == ["acme__Region__c"]
    assert matches_filter(setup, {"acme__Region__c": "emea"})


def test_unmatched_lists_live_records_outside_the_filter() -> None:
    setup = f("equals", "Web")
    records = [
        {"Id": "1", "LeadSource": "Web"},
        {"Id": "2", "LeadSource": "Phone"},
        {"Id": "3", "LeadSource": "Phone", "IsDeleted": True},
    ]
    assert unmatched(setup, records) == ["2"]


# (A AND B) OR C, and a group inside a group.
A = {"field": "LeadSource", "op": "equals", "value": "Phone"}  # false on REC
B = {"field": "Region__c", "op": "equals", "value": "EMEA"}  # true
C = {"field": "NumberOfEmployees", "op": "greater_than", "value": 100}  # true
NOT_C = {"field": "NumberOfEmployees", "op": "less_than", "value": 100}  # false


def group(match, *conditions):
    return {"match": match, "conditions": list(conditions)}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(group("any", group("all", A, B), C), True, id="(A and B) or C"),
        pytest.param(group("any", group("all", A, B), NOT_C), False, id="(A and B) or not C"),
        pytest.param(group("all", group("any", A, B), C), True, id="(A or B) and C"),
        pytest.param(group("all", group("any", A, NOT_C), C), False, id="(A or notC) and C"),
        pytest.param(group("all", B, group("any", A, group("all", C, B))), True, id="3 levels"),
        pytest.param(group("all", B, group("any", A, group("all", C, A))), False, id="3 deep no"),
    ],
)
def test_groups(spec, expected) -> None:
    assert matches_filter(opts(filter=spec), REC) is expected


def test_filter_fields_walk_groups() -> None:
    setup = opts(namespace_prefix="acme", filter=group("any", group("all", A, B), C, B))
    assert filter_fields(setup) == ["LeadSource", "acme__Region__c", "NumberOfEmployees"]
    assert [c.field for c in setup.filter_conditions] == [
        "LeadSource",
        "Region__c",
        "NumberOfEmployees",
        "Region__c",
    ]


# --- check_filter against a describe ------------------------------------------------------------


def field(name, ftype, **extra):
    return {"name": name, "type": ftype, **extra}


DESCRIBES = {
    "Lead": {
        "fields": [
            field("LeadSource", "picklist"),
            field("Email", "email"),
            field("Description", "textarea"),
            field("NumberOfEmployees", "int"),
            field("AnnualRevenue", "currency"),
            field("HasOptedOutOfEmail", "boolean"),
            field("ConvertedDate", "date"),
            field("CreatedDate", "datetime"),
            field("Address", "address"),
            field("acme__Region__c", "string"),
            field("OwnerId", "reference", relationshipName="Owner", referenceTo=["Group", "User"]),
            field(
                "ConvertedAccountId",
                "reference",
                relationshipName="ConvertedAccount",
                referenceTo=["Account"],
            ),
        ]
    },
    "Account": {"fields": [field("Name", "string"), field("AnnualRevenue", "currency")]},
    "Group": {"fields": [field("Name", "string")]},
    "User": {"fields": [field("Name", "string"), field("IsActive", "boolean")]},
}


def check(op, value=None, fld="LeadSource", ns=None):
    setup = opts(
        object_type="Lead",
        namespace_prefix=ns,
        filter={"conditions": [B, {"field": fld, "op": op, "value": value}]},
    )
    found = check_filter(setup, DESCRIBES.get)
    found.pop("filter.conditions[0].field", None)  # B without the namespace: not the point here
    return found


@pytest.mark.parametrize(
    ("op", "value", "fld", "ns", "path", "fragment"),
    [
        pytest.param("equals", "Web", "LeadSource", None, None, None, id="picklist equals"),
        pytest.param("contains", "@acme", "Email", None, None, None, id="email contains"),
        pytest.param("is_blank", None, "Description", None, None, None, id="textarea blank"),
        pytest.param("greater_or_equal", 10, "NumberOfEmployees", None, None, None, id="int ge"),
        pytest.param("less_than", "5e6", "AnnualRevenue", None, None, None, id="numeric text"),
        pytest.param("is_true", None, "HasOptedOutOfEmail", None, None, None, id="checkbox"),
        pytest.param("equals", False, "HasOptedOutOfEmail", None, None, None, id="bool equals"),
        pytest.param("less_than", "2026-01-31", "ConvertedDate", None, None, None, id="date"),
        pytest.param("in", ["2026-01-31"], "ConvertedDate", None, None, None, id="date list"),
        pytest.param("greater_than", "2026-01-31", "CreatedDate", None, None, None, id="dt day"),
        pytest.param(
            "less_than", "2026-01-31T09:00:00Z", "CreatedDate", None, None, None, id="dt instant"
        ),
        pytest.param("greater_than", "M", "LeadSource", None, None, None, id="text orders"),
        pytest.param("equals", "EMEA", "Region__c", "acme", None, None, id="namespace applied"),
        pytest.param("starts_with", "A", "ConvertedAccount.Name", None, None, None, id="parent"),
        pytest.param("equals", "x", "Owner.Name", None, None, None, id="polymorphic"),
        pytest.param("is_true", None, "Owner.IsActive", None, None, None, id="polymorphic 2nd"),
        pytest.param(
            "equals", "x", "Nope__c", None, ".field", "Lead has no field `Nope__c`", id="missing"
        ),
        pytest.param(
            "equals", "x", "Region__c", None, ".field", "no field `Region__c`", id="no namespace"
        ),
        pytest.param(
            "equals", "x", "Zone__c", "acme", ".field", "namespace_prefix applied", id="ns said"
        ),
        pytest.param("equals", "x", "leadsource", None, ".field", "spelt `LeadSource`", id="case"),
        pytest.param(
            "equals", "x", "Account.Name", None, ".field", "no relationship `Account`", id="rel"
        ),
        pytest.param(
            "equals",
            "x",
            "ConvertedAccount.Nope",
            None,
            ".field",
            "Account has no field",
            id="parent field",
        ),
        pytest.param(
            "equals", "x", "Owner.Nope", None, ".field", "Group / User has no field", id="poly no"
        ),
        pytest.param(
            "is_true", None, "LeadSource", None, ".op", "for checkbox fields", id="is_true text"
        ),
        pytest.param(
            "is_blank",
            None,
            "HasOptedOutOfEmail",
            None,
            ".op",
            "checkbox field takes",
            id="checkbox never blank",
        ),
        pytest.param(
            "contains", "1", "NumberOfEmployees", None, ".op", "for text fields", id="contains int"
        ),
        pytest.param(
            "starts_with", "2026", "CreatedDate", None, ".op", "for text fields", id="sw date"
        ),
        pytest.param(
            "greater_than", "a", "Description", None, ".op", "does not order", id="gt textarea"
        ),
        pytest.param("equals", "x", "Address", None, ".op", "use one of its parts", id="compound"),
        pytest.param(
            "greater_than",
            "lots",
            "NumberOfEmployees",
            None,
            ".value",
            "needs a number",
            id="number value",
        ),
        pytest.param(
            "equals", "NaN", "NumberOfEmployees", None, ".value", "needs a number", id="nan"
        ),
        pytest.param(
            "in", [1, "x"], "AnnualRevenue", None, ".value", "'x' needs a number", id="number list"
        ),
        pytest.param(
            "less_than",
            "31/01/2026",
            "ConvertedDate",
            None,
            ".value",
            "YYYY-MM-DD",
            id="date format",
        ),
        pytest.param(
            "less_than", "2026-02-30", "ConvertedDate", None, ".value", "YYYY-MM-DD", id="no day"
        ),
        pytest.param(
            "equals",
            "2026-01-31T09:00:00Z",
            "ConvertedDate",
            None,
            ".value",
            "YYYY-MM-DD",
            id="datetime on a date",
        ),
        pytest.param(
            "greater_than",
            "yesterday",
            "CreatedDate",
            None,
            ".value",
            "ISO datetime",
            id="datetime format",
        ),
        pytest.param(
            "equals", "yes", "HasOptedOutOfEmail", None, ".value", "true or false", id="bool"
        ),
    ],
)
def test_check_filter(op, value, fld, ns, path, fragment) -> None:
    found = check(op, value, fld, ns)
    if path is None:
        assert found == {}
        return
    key = "filter.conditions[1]" + path
    assert list(found) == [key], found
    [message] = found[key]
    assert fragment in message
    assert message.startswith(f"`{fld} {op}")  # names the criterion


def test_check_filter_paths_walk_groups_and_unknown_types_pass() -> None:
    setup = opts(
        object_type="Lead",
        filter=group("any", group("all", A, {"field": "Nope", "op": "is_blank"}), C),
    )
    assert list(check_filter(setup, DESCRIBES.get)) == ["filter.conditions[0].conditions[1].field"]
    future = {"Lead": {"fields": [field("LeadSource", "somethingNew")]}}
    assert check_filter(opts(object_type="Lead", filter=group("all", A)), future.get) == {}
    assert check_filter(opts(object_type="Lead"), DESCRIBES.get) == {}
