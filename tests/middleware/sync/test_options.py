"""SetupOptions: built from the schema's load output only, with the field map's parts derived."""

from __future__ import annotations

import pytest

from middleware.sync.options import Condition, Filter, Group, SetupOptions
from schemas.setup import validate_setup
from tests.middleware.sync.conftest import opts


def test_defaults_come_from_the_schema() -> None:
    o = opts()
    assert (o.object_type, o.main_list) == ("Contact", "Main")
    assert o.sync_to_cc and o.sync_to_sf
    assert o.schedule.poll_minutes == 15 and o.schedule.catch_up_minutes == 10
    assert o.schedule.weekday is None
    assert o.webhook.auth == "shared_secret" and o.webhook.platform_event is None
    assert o.new_record_object_type == "Contact"
    assert opts(object_type="Account").new_record_object_type == "Lead"
    assert o.filter is None and o.filter_conditions == ()
    assert o.cc_source == "main_list" and o.source_lists is None


def test_a_dict_that_skipped_the_schema_is_refused() -> None:
    with pytest.raises(KeyError):
        SetupOptions.from_validated({"object_type": "Contact", "main_list": "Main"})


def test_the_field_maps_parts() -> None:
    o = opts(
        field_map=[
            {"sf_field": "Region__c", "cc_field": "cf:Region"},
            {"sf_field": "Tier__c", "cc_field": "cf:Tier", "direction": "both"},
            {"sf_field": "Source__c", "cc_field": "cf:Source", "direction": "cc_to_sf"},
            {"sf_field": "Department", "cc_field": "job_title", "direction": "cc_to_sf"},
        ],
        other_email_fields=[{"sf_field": "Work_Email__c", "cc_field": "cf:Work_Email"}],
    )
    assert [e.sf_field for e in o.fields_to_cc] == ["Region__c", "Tier__c"]
    assert [e.sf_field for e in o.fields_to_sf] == ["Tier__c", "Source__c", "Department"]
    assert o.custom_fields_to_cc == ("Region", "Tier", "Work_Email")
    assert o.custom_fields_from_cc == ("Source", "Tier")


@pytest.mark.parametrize(
    ("sync_to_sf", "unsubscribes", "polls"),
    [(True, True, True), (False, True, True), (True, False, True), (False, False, False)],
)
def test_polls(sync_to_sf, unsubscribes, polls) -> None:
    assert opts(sync_to_sf=sync_to_sf, sync_unsubscribes_to_sf=unsubscribes).polls is polls


def test_named_source_lists() -> None:
    assert opts(cc_source={"lists": ["A", "B"]}).source_lists == ("A", "B")


def test_the_stored_dict_is_left_as_the_admin_api_returns_it() -> None:
    stored, _ = validate_setup({"name": "n", "main_list": "Main"})
    before = dict(stored)
    SetupOptions.from_validated(stored)
    assert stored == before and "weekday" not in stored["schedule"]


def test_the_filter_keeps_its_groups() -> None:
    a = {"field": "LeadSource", "op": "equals", "value": "Web"}
    b = {"field": "Email", "op": "is_not_blank"}
    o = opts(filter={"match": "any", "conditions": [{"conditions": [a, b]}, a]})
    assert o.filter == Filter(
        "any",
        (
            Group(
                "all",
                (
                    Condition("LeadSource", "equals", "Web"),
                    Condition("Email", "is_not_blank", None),
                ),
            ),
            Condition("LeadSource", "equals", "Web"),
        ),
    )
    assert [c.field for c in o.filter_conditions] == ["LeadSource", "Email", "LeadSource"]
