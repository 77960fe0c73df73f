"""The setup contract: defaults, per-option errors, cross-field rules and warnings (DESIGN §5)."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from schemas.setup import (
    SetupSchema,
    apply_patch,
    flatten_messages,
    merge_patch,
    validate_setup,
)

MINIMAL = {
    "name": "Donors",
    "main_list": "Newsletter",
    "salesforce_connection": 1,
    "constant_contact_connection": 2,
}


C1 = {"field": "LeadSource", "op": "equals", "value": "Web"}


def load(**options):
    return validate_setup({**MINIMAL, **options})


def errors_of(**options) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        load(**options)
    return flatten_messages(info.value.messages)


DEFAULTS = [
    ("object_type", "Contact"),
    ("field_map", []),
    ("filter", None),
    (
        "schedule",
        {
            "full_sync": "daily",
            "at": "02:00",
            "timezone": "UTC",
            "poll_minutes": 15,
            "catch_up_minutes": 10,
        },
    ),
    ("sync_to_cc", True),
    ("sync_to_sf", True),
    ("campaign_lists", None),
    ("checkbox_lists", []),
    ("new_cc_contact_on_email_change", False),
    ("unsubscribe_on_sf_opt_out", False),
    ("remove_on_sf_delete", False),
    ("remove_converted_leads", False),
    ("delete_cc_on_blank_email", False),
    ("other_email_fields", []),
    ("namespace_prefix", None),
    ("sync_role_addresses", False),
    ("sync_address", True),
    ("sync_company", True),
    ("state_names", False),
    ("cc_source", "main_list"),
    ("new_record_object_type", "Contact"),
    ("match_same_type_only", False),
    ("create_missing_accounts", True),
    ("allow_blank_first_name", False),
    ("allow_blank_last_name", False),
    ("npsp_alternate_emails", False),
    ("npsp_affiliations", False),
    ("sync_unsubscribes_to_sf", True),
    ("sync_all_campaign_recipients", False),
    ("campaign_response_mode", "none"),
    ("campaign_selection", "all"),
    ("campaign_results", {"window_days": 90, "max_cc_calls": 1000, "every_hours": 24}),
    ("remove_unmatched_from_all_lists", False),
    ("webhook", {"auth": "shared_secret", "platform_event": None}),
    ("salesforce_changes", ["webhook"]),
]


@pytest.mark.parametrize(("option", "default"), DEFAULTS)
def test_default(option, default):
    setup, warnings = load()
    assert setup[option] == default
    assert warnings == []


def test_every_option_has_a_default_test_and_a_description():
    required = {"name", "main_list", "salesforce_connection", "constant_contact_connection"}
    assert set(SetupSchema().fields) - required == {option for option, _ in DEFAULTS}
    for name, field in SetupSchema().fields.items():
        assert field.metadata.get("description"), name


@pytest.mark.parametrize(
    ("object_type", "expected"),
    [
        pytest.param("Contact", "Contact", id="new-records-default-to-object-type-contact"),
        pytest.param("Lead", "Lead", id="new-records-default-to-object-type-lead"),
        pytest.param("Account", "Lead", id="person-account-setups-create-leads-by-default"),
    ],
)
def test_new_record_object_type_default(object_type, expected):
    assert load(object_type=object_type)[0]["new_record_object_type"] == expected


def test_new_record_object_type_explicit_wins():
    assert (
        load(object_type="Lead", new_record_object_type="Contact")[0]["new_record_object_type"]
        == "Contact"
    )


def test_normalised_values():
    setup, _ = load(
        schedule={"full_sync": "weekly", "weekday": "sunday", "at": "23:30"},
        cc_source={"lists": [" VIP ", "Events"]},
        field_map=[{"sf_field": "Region__c", "cc_field": "cf:Region"}],
        webhook={"auth": "hmac", "platform_event": {"name": "Contact_Sync__e"}},
        namespace_prefix="acme",
    )
    assert setup["schedule"] == {
        "full_sync": "weekly",
        "weekday": "sunday",
        "at": "23:30",
        "timezone": "UTC",
        "poll_minutes": 15,
        "catch_up_minutes": 10,
    }
    assert setup["cc_source"] == {"lists": ["VIP", "Events"]}
    assert setup["field_map"] == [
        {"sf_field": "Region__c", "cc_field": "cf:Region", "direction": "sf_to_cc"}
    ]
    assert setup["webhook"] == {
        "auth": "hmac",
        "platform_event": {"name": "Contact_Sync__e", "id_field": "Record_Id__c"},
    }


@pytest.mark.parametrize(
    ("options", "path", "fragment"),
    [
        pytest.param({"name": ""}, "name", "Length", id="name-required-non-empty"),
        pytest.param({"main_list": None}, "main_list", "null", id="main-list-required"),
        pytest.param(
            {"object_type": "Opportunity"},
            "object_type",
            "Must be one of",
            id="object-type-contact-lead-account",
        ),
        pytest.param(
            {"salesforce_connection": "1"},
            "salesforce_connection",
            "integer",
            id="connection-is-an-id",
        ),
        pytest.param(
            {"namespace_prefix": "npsp__"},
            "namespace_prefix",
            "trailing `__`",
            id="namespace-without-trailing-underscores",
        ),
        pytest.param(
            {"namespace_prefix": "a" * 16},
            "namespace_prefix",
            "1–15",
            id="namespace-at-most-15-chars",
        ),
        pytest.param(
            {"namespace_prefix": ""}, "namespace_prefix", "1–15", id="namespace-at-least-1-char"
        ),
        pytest.param(
            {"namespace_prefix": "9acme"},
            "namespace_prefix",
            "starting with a letter",
            id="namespace-starts-with-letter",
        ),
        pytest.param(
            {"field_map": [{"sf_field": "Region__c", "cc_field": "region"}]},
            "field_map[0].cc_field",
            "not a Constant Contact contact field",
            id="field-map-cc-field-known-or-cf",
        ),
        pytest.param(
            {"field_map": [{"sf_field": "Region__c", "cc_field": "cf:"}]},
            "field_map[0].cc_field",
            "cf:<custom field name>",
            id="field-map-cf-needs-a-name",
        ),
        pytest.param(
            {"field_map": [{"sf_field": "Region__c", "cc_field": "cf:Region", "direction": "up"}]},
            "field_map[0].direction",
            "Must be one of",
            id="field-map-direction",
        ),
        pytest.param(
            {"field_map": [{"sf_field": "bad field", "cc_field": "cf:X"}]},
            "field_map[0].sf_field",
            "Salesforce field name",
            id="field-map-sf-field-name",
        ),
        pytest.param(
            {"field_map": [{"cc_field": "cf:X"}]},
            "field_map[0].sf_field",
            "required",
            id="field-map-sf-field-required",
        ),
        pytest.param(
            {
                "field_map": [
                    {"sf_field": "A__c", "cc_field": "cf:X"},
                    {"sf_field": "B__c", "cc_field": "cf:X", "direction": "both"},
                ]
            },
            "field_map[1].cc_field",
            "already written from A__c",
            id="field-map-one-source-per-cc-field",
        ),
        pytest.param(
            {
                "field_map": [
                    {"sf_field": "A__c", "cc_field": "cf:X", "direction": "cc_to_sf"},
                    {"sf_field": "A__c", "cc_field": "cf:Y", "direction": "both"},
                ]
            },
            "field_map[1].sf_field",
            "already written from cf:X",
            id="field-map-one-source-per-sf-field",
        ),
        pytest.param(
            {"other_email_fields": [{"sf_field": "Work_Email__c", "cc_field": "job_title"}]},
            "other_email_fields[0].cc_field",
            "Must be a custom field",
            id="other-email-fields-only-custom-fields",
        ),
        pytest.param(
            {
                "other_email_fields": [{"sf_field": "W__c", "cc_field": "cf:W"}],
                "field_map": [{"sf_field": "T__c", "cc_field": "cf:W"}],
            },
            "other_email_fields[0].cc_field",
            "already written from T__c",
            id="other-email-field-not-also-mapped",
        ),
        pytest.param(
            {"schedule": {"full_sync": "hourly"}},
            "schedule.full_sync",
            "Must be one of",
            id="schedule-manual-daily-weekly",
        ),
        pytest.param({"schedule": {"at": "2:00"}}, "schedule.at", "HH:MM", id="schedule-at-hh-mm"),
        pytest.param(
            {"schedule": {"at": "24:00"}}, "schedule.at", "HH:MM", id="schedule-at-valid-hour"
        ),
        pytest.param(
            {"schedule": {"full_sync": "weekly"}},
            "schedule.weekday",
            "needs a weekday",
            id="weekly-needs-weekday",
        ),
        pytest.param(
            {"schedule": {"full_sync": "weekly", "weekday": "funday"}},
            "schedule.weekday",
            "Must be one of",
            id="weekday-name",
        ),
        pytest.param(
            {"schedule": {"poll_minutes": 0}},
            "schedule.poll_minutes",
            "greater than or equal to 1",
            id="poll-at-least-every-minute",
        ),
        pytest.param(
            {"schedule": {"catch_up_minutes": -1}},
            "schedule.catch_up_minutes",
            "greater than or equal to 0",
            id="catch-up-not-negative",
        ),
        pytest.param(
            {"schedule": {"catch_up_minutes": 1441}},
            "schedule.catch_up_minutes",
            "less than or equal to 1440",
            id="catch-up-at-least-daily",
        ),
        pytest.param(
            {"schedule": {"catch_up_minutes": "10"}},
            "schedule.catch_up_minutes",
            "Not a valid integer",
            id="catch-up-an-integer",
        ),
        pytest.param(
            {"schedule": {"timezone": "Mars/Olympus"}},
            "schedule.timezone",
            "Unknown time zone",
            id="schedule-timezone-iana",
        ),
        pytest.param(
            {"remove_unmatched_from_all_lists": True, "schedule": {"full_sync": "manual"}},
            "remove_unmatched_from_all_lists",
            "scheduled Full Sync",
            id="remove-from-all-lists-needs-scheduled-full-sync",
        ),
        pytest.param({"cc_source": "everyone"}, "cc_source", "main_list", id="cc-source-values"),
        pytest.param(
            {"cc_source": {"lists": []}},
            "cc_source",
            "at least one",
            id="cc-source-lists-non-empty",
        ),
        pytest.param(
            {"new_record_object_type": "Account"},
            "new_record_object_type",
            "Must be one of",
            id="new-records-lead-or-contact",
        ),
        pytest.param(
            {"campaign_response_mode": "all"},
            "campaign_response_mode",
            "Must be one of",
            id="campaign-response-modes",
        ),
        pytest.param(
            {"campaign_selection": []},
            "campaign_selection",
            "non-empty",
            id="campaign-selection-all-or-names",
        ),
        pytest.param(
            {"campaign_lists": {"source": "reports"}},
            "campaign_lists.source",
            "Must be one of",
            id="campaign-lists-campaigns-or-list-views",
        ),
        pytest.param(
            {"checkbox_lists": [{"field": "VIP__c"}]},
            "checkbox_lists[0].list",
            "required",
            id="checkbox-list-needs-a-list",
        ),
        pytest.param(
            {"checkbox_lists": [{"field": "VIP__c", "list": "Newsletter"}]},
            "checkbox_lists[0].list",
            "main list",
            id="checkbox-list-not-main-list",
        ),
        pytest.param(
            {
                "checkbox_lists": [
                    {"field": "A__c", "list": "VIP"},
                    {"field": "B__c", "list": "VIP"},
                ]
            },
            "checkbox_lists[1].list",
            "two checkbox fields",
            id="checkbox-list-one-field-per-list",
        ),
        pytest.param(
            {"filter": {"conditions": []}},
            "filter.conditions",
            "at least one",
            id="filter-needs-conditions",
        ),
        pytest.param(
            {"filter": {"conditions": [{"field": "Status", "op": "in", "value": "x"}]}},
            "filter.conditions[0].value",
            "non-empty list",
            id="filter-in-needs-list",
        ),
        pytest.param(
            {"filter": {"conditions": [{"field": "Email", "op": "is_blank", "value": "x"}]}},
            "filter.conditions[0].value",
            "takes no value",
            id="filter-is-blank-no-value",
        ),
        pytest.param(
            {"filter": {"conditions": [{"field": "Status", "op": "like"}]}},
            "filter.conditions[0].op",
            "Must be one of",
            id="filter-ops",
        ),
        pytest.param(
            {"filter": {"conditions": [{"field": "Status", "op": "not_starts_with"}]}},
            "filter.conditions[0].value",
            "needs a string",
            id="filter-not-starts-with-needs-value",
        ),
        pytest.param(
            {
                "filter": {
                    "conditions": [{"field": "Status", "op": "greater_or_equal", "value": []}]
                }
            },
            "filter.conditions[0].value",
            "needs a string, number or boolean",
            id="filter-greater-or-equal-scalar",
        ),
        pytest.param(
            {"filter": {"conditions": [{"conditions": [C1, {"field": "X", "op": "like"}]}]}},
            "filter.conditions[0].conditions[1].op",
            "Must be one of",
            id="filter-group-errors-name-the-path",
        ),
        pytest.param(
            {"filter": {"conditions": [{"match": "all", "conditions": []}]}},
            "filter.conditions[0].conditions",
            "at least one",
            id="filter-group-needs-conditions",
        ),
        pytest.param(
            {"filter": {"conditions": [{"match": "both", "conditions": [C1]}]}},
            "filter.conditions[0].match",
            "Must be one of",
            id="filter-group-match-all-or-any",
        ),
        pytest.param(
            {"filter": {"conditions": [{"conditions": [{"conditions": [{"conditions": [C1]}]}]}]}},
            "filter.conditions[0].conditions[0].conditions[0]",
            "at most 3 levels",
            id="filter-groups-nest-three-levels",
        ),
        pytest.param(
            {"filter": {"conditions": [{"conditions": [C1], "field": "X"}]}},
            "filter.conditions[0].field",
            "Unknown field",
            id="filter-group-is-not-a-condition",
        ),
        pytest.param(
            {"filter": {"conditions": ["Status = 'x'"]}},
            "filter.conditions[0]",
            "JSON object",
            id="filter-criteria-are-objects",
        ),
        pytest.param(
            {"webhook": {"auth": "none"}},
            "webhook.auth",
            "Must be one of",
            id="webhook-auth-shared-secret-or-hmac",
        ),
        pytest.param(
            {"webhook": {"platform_event": {"name": "Contact_Sync"}}},
            "webhook.platform_event.name",
            "ends in `__e`",
            id="webhook-platform-event-name",
        ),
        pytest.param(
            {"webhook": {"secret": "s3cret"}},
            "webhook.secret",
            "Unknown field",
            id="webhook-secret-is-generated-not-given",
        ),
        pytest.param(
            {"sync_to_cc": "yes please"}, "sync_to_cc", "boolean", id="flags-are-booleans"
        ),
        pytest.param(
            {"unsubscribe_on_sf_optout": True},
            "unsubscribe_on_sf_optout",
            "Unknown field",
            id="misspelt-option-refused",
        ),
    ],
)
def test_error_names_the_option(options, path, fragment):
    messages = errors_of(**options)
    assert path in messages, messages
    assert any(fragment in m for m in messages[path]), messages[path]


@pytest.mark.parametrize(
    "op", ["not_starts_with", "greater_or_equal", "less_or_equal", "starts_with", "less_than"]
)
def test_filter_operators_taking_a_value(op):
    condition = {"field": "Rating__c", "op": op, "value": "2026-01-31"}
    setup, _ = load(filter={"conditions": [condition]})
    assert setup["filter"] == {"match": "all", "conditions": [condition]}


def test_filter_groups_nest_and_a_flat_filter_still_loads():
    flat = {"match": "any", "conditions": [C1, {"field": "Email", "op": "is_not_blank"}]}
    assert load(filter=flat)[0]["filter"] == {
        "match": "any",
        "conditions": [C1, {"field": "Email", "op": "is_not_blank", "value": None}],
    }
    # (A AND (B OR C)) OR D: three levels, the filter counting as the first.
    nested = {
        "match": "any",
        "conditions": [{"conditions": [C1, {"match": "any", "conditions": [C1, C1]}]}, C1],
    }
    loaded = load(filter=nested)[0]["filter"]
    assert loaded["conditions"][0]["match"] == "all"  # a group's match defaults like the filter's
    assert loaded["conditions"][0]["conditions"][1] == {"match": "any", "conditions": [C1, C1]}


def test_all_errors_of_a_save_are_reported_together():
    messages = errors_of(
        namespace_prefix="x__",
        remove_unmatched_from_all_lists=True,
        schedule={"full_sync": "manual"},
        object_type="Case",
    )
    assert {"namespace_prefix", "remove_unmatched_from_all_lists", "object_type"} <= set(messages)


def test_not_an_object():
    with pytest.raises(ValidationError):
        validate_setup(["name"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        pytest.param(
            {"sync_to_cc": False, "unsubscribe_on_sf_opt_out": True},
            "unsubscribe_on_sf_opt_out has no effect while sync_to_cc is false",
            id="sf-to-cc-option-while-sync-to-cc-off",
        ),
        pytest.param(
            {"sync_to_cc": False, "checkbox_lists": [{"field": "V__c", "list": "V"}]},
            "checkbox_lists has no effect",
            id="lists-while-sync-to-cc-off",
        ),
        pytest.param(
            {"sync_to_sf": False, "allow_blank_last_name": True},
            "allow_blank_last_name has no effect while sync_to_sf is false",
            id="cc-to-sf-option-while-one-way",
        ),
        pytest.param(
            {"sync_to_sf": False, "cc_source": "all_active"},
            "cc_source has no effect",
            id="cc-source-while-one-way",
        ),
        pytest.param(
            {"sync_to_sf": False, "new_record_object_type": "Lead"},
            "new_record_object_type has no effect",
            id="new-record-type-while-one-way",
        ),
        pytest.param(
            {"sync_to_cc": False, "sync_to_sf": False}, "syncs no records", id="both-directions-off"
        ),
        pytest.param(
            {"remove_converted_leads": True},
            "only applies to Lead setups",
            id="converted-leads-on-contact-setup",
        ),
        pytest.param(
            {"schedule": {"full_sync": "daily", "weekday": "monday"}},
            "weekday is ignored",
            id="weekday-on-daily-schedule",
        ),
        pytest.param(
            {"salesforce_connection": None},
            "Not connected yet (salesforce_connection)",
            id="not-connected-yet",
        ),
    ],
)
def test_harmless_contradictions_are_accepted_with_a_warning(options, fragment):
    setup, warnings = load(**options)
    assert any(fragment in w for w in warnings), warnings
    for key, value in options.items():
        if not isinstance(value, dict):
            assert setup[key] == value


def test_consistent_setup_has_no_warnings():
    _, warnings = load(
        object_type="Lead",
        remove_converted_leads=True,
        unsubscribe_on_sf_opt_out=True,
        schedule={"full_sync": "weekly", "weekday": "friday"},
        remove_unmatched_from_all_lists=True,
    )
    assert warnings == []


def test_list_view_lists_need_views_named_and_take_no_record_types():
    errors = errors_of(campaign_lists={"source": "list_views"})
    assert list(errors) == ["campaign_lists.selected"]
    assert "Name the List Views to sync" in errors["campaign_lists.selected"][0], errors
    errors = errors_of(
        campaign_lists={
            "source": "list_views",
            "selected": ["Bay Area"],
            "record_type_labels": ["X"],
        }
    )
    assert "List Views have none" in errors["campaign_lists.record_type_labels"][0], errors
    setup, warnings = load(campaign_lists={"source": "list_views", "selected": ["Bay Area"]})
    assert setup["campaign_lists"]["selected"] == ["Bay Area"]
    assert warnings == []


def test_campaign_lists_from_campaigns_are_accepted_with_their_defaults():
    setup, warnings = load(campaign_lists={"source": "campaigns"})
    assert setup["campaign_lists"] == {
        "source": "campaigns",
        "selected": [],
        "record_type_labels": [],
        "excluded": [],
    }
    assert warnings == []


def test_campaign_options_off_values_stay_accepted():
    setup, warnings = load(
        campaign_lists=None,
        sync_all_campaign_recipients=False,
        campaign_response_mode="none",
        campaign_selection="all",
    )
    assert setup["campaign_lists"] is None
    assert not setup["sync_all_campaign_recipients"]
    assert (setup["campaign_response_mode"], setup["campaign_selection"]) == ("none", "all")
    assert warnings == []


def test_campaign_results_options_are_accepted():
    setup, warnings = load(
        campaign_response_mode="campaign_and_activity",
        campaign_selection=["March Appeal", "Gala"],
        sync_all_campaign_recipients=True,
        campaign_results={"window_days": 30, "max_cc_calls": 500},
    )
    assert setup["campaign_response_mode"] == "campaign_and_activity"
    assert setup["campaign_selection"] == ["March Appeal", "Gala"]
    assert setup["campaign_results"] == {"window_days": 30, "max_cc_calls": 500, "every_hours": 24}
    assert warnings == []


def test_patch_turns_campaign_results_on():
    current = load()[0]
    setup, _ = apply_patch(current, {"campaign_response_mode": "activity"})
    assert setup["campaign_response_mode"] == "activity"


@pytest.mark.parametrize(
    ("results", "field"),
    [
        ({"window_days": 0}, "window_days"),
        ({"max_cc_calls": 5}, "max_cc_calls"),
        ({"every_hours": 200}, "every_hours"),
        ({"window": 3}, "window"),
    ],
)
def test_campaign_results_bounds(results, field):
    with pytest.raises(ValidationError) as info:
        load(campaign_results=results)
    assert field in info.value.messages["campaign_results"]


def test_campaign_selection_without_a_mode_warns():
    _, warnings = load(campaign_selection=["Gala"])
    assert warnings == ["campaign_selection has no effect while campaign_response_mode is none."]


class TestPatch:
    def stored(self, **options):
        return load(**options)[0]

    def test_changes_one_option_keeps_the_rest(self):
        current = self.stored(unsubscribe_on_sf_opt_out=True)
        setup, _ = apply_patch(current, {"remove_on_sf_delete": True})
        assert setup["remove_on_sf_delete"] and setup["unsubscribe_on_sf_opt_out"]

    def test_nested_objects_merge(self):
        current = self.stored(schedule={"full_sync": "daily", "at": "03:00"})
        setup, _ = apply_patch(current, {"schedule": {"poll_minutes": 5}})
        assert setup["schedule"]["at"] == "03:00" and setup["schedule"]["poll_minutes"] == 5

    def test_null_resets_to_default(self):
        current = self.stored(
            sync_company=False, object_type="Lead", new_record_object_type="Contact"
        )
        setup, _ = apply_patch(current, {"sync_company": None, "new_record_object_type": None})
        assert setup["sync_company"] is True
        assert setup["new_record_object_type"] == "Lead"

    def test_cross_field_rules_see_the_merged_setup(self):
        current = self.stored(remove_unmatched_from_all_lists=True)
        with pytest.raises(ValidationError) as info:
            apply_patch(current, {"schedule": {"full_sync": "manual"}})
        assert "remove_unmatched_from_all_lists" in info.value.messages

    def test_object_type_cannot_change(self):
        with pytest.raises(ValidationError) as info:
            apply_patch(self.stored(), {"object_type": "Lead"})
        assert "object_type" in info.value.messages

    def test_lists_are_replaced_not_merged(self):
        current = self.stored(field_map=[{"sf_field": "A__c", "cc_field": "cf:A"}])
        setup, _ = apply_patch(current, {"field_map": [{"sf_field": "B__c", "cc_field": "cf:B"}]})
        assert [e["sf_field"] for e in setup["field_map"]] == ["B__c"]

    def test_warnings_come_back(self):
        _, warnings = apply_patch(
            self.stored(), {"sync_to_cc": False, "delete_cc_on_blank_email": True}
        )
        assert any("delete_cc_on_blank_email" in w for w in warnings)


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        (
            {"a": 1, "b": {"c": 2, "d": 3}},
            {"b": {"c": None, "e": 4}},
            {"a": 1, "b": {"d": 3, "e": 4}},
        ),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"a": None}, {}),
    ],
    ids=["objects-merge-null-removes", "arrays-replace", "null-removes-top-level"],
)
def test_merge_patch(target, patch, expected):
    assert merge_patch(target, patch) == expected


def test_schemas_render_as_openapi_with_descriptions():
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec("t", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.schema("Setup", schema=SetupSchema)
    doc = spec.to_dict()["components"]["schemas"]
    setup = doc["Setup"]["properties"]
    assert all(
        prop.get("description") or "$ref" in prop or "allOf" in prop for prop in setup.values()
    )
    assert setup["cc_source"]["oneOf"]
    assert setup["object_type"]["enum"] == ["Contact", "Lead", "Account"]
    assert "FieldMapEntry" in doc


@pytest.mark.parametrize(
    ("doors", "message"),
    [
        ([], "Shorter than minimum length 1."),
        (["webhook", "webhook"], "Name each door once."),
        (["mail"], "Must be one of: webhook, pubsub, outbound."),
    ],
)
def test_salesforce_changes_name_known_doors_once(doors, message):
    assert message in str(errors_of(salesforce_changes=doors))


@pytest.mark.parametrize(
    "doors", [["outbound"], ["webhook", "outbound"], ["pubsub"], ["webhook", "pubsub", "outbound"]]
)
def test_every_door_is_built(doors):
    setup, _warnings = load(salesforce_changes=doors)
    assert setup["salesforce_changes"] == doors
