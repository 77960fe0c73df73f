"""The setup filter (seed Step 4), one row per operator and the all/any switch."""

from __future__ import annotations

import pytest

from middleware.sync.segments import filter_fields, matches_filter, unmatched
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
        pytest.param(f("in", ["emea", "apac"], "Region__c"), True, id="in"),
        pytest.param(f("not_in", ["EMEA"], "Region__c"), False, id="not_in"),
        pytest.param(f("greater_than", 100, "NumberOfEmployees"), True, id="greater_than number"),
        pytest.param(f("less_than", 100, "NumberOfEmployees"), False, id="less_than number"),
        pytest.param(f("greater_than", "2026-01-01", "CreatedDate"), True, id="dates as ISO"),
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
