"""Campaign lists (seed: "Use a Campaign or List View to Sync ... Members"): the pure rules."""

from __future__ import annotations

import pytest

from middleware.sync.campaigns import (
    REASON_EXCLUDED,
    REASON_INACTIVE,
    REASON_NO_MEMBERS,
    REASON_NOT_SELECTED,
    REASON_RECORD_TYPE,
    Campaign,
    campaign_from_row,
    choose_campaigns,
    in_campaign_scope,
    member_key,
    segment_lists,
    stopped_message,
)
from middleware.sync.options import CampaignLists
from tests.middleware.sync.conftest import opts


def spec(selected=(), record_types=(), excluded=()):
    return CampaignLists("campaigns", tuple(selected), tuple(record_types), tuple(excluded))


SPRING = Campaign("701A", "Spring Gala", True, "Event", 12)
WEBINAR = Campaign("701B", "Webinar", True, "Webinar", 3)
OLD = Campaign("701C", "Old Drive", False, "Event", 40)
EMPTY = Campaign("701D", "Empty", True, None, 0)
ALL = (SPRING, WEBINAR, OLD, EMPTY)


@pytest.mark.parametrize(
    ("given", "kept", "skipped"),
    [
        pytest.param(
            spec(),
            {"701A", "701B"},
            {"701C": REASON_INACTIVE, "701D": REASON_NO_MEMBERS},
            id="nothing selected: every active Campaign with members",
        ),
        pytest.param(
            spec(selected=["spring gala"]),
            {"701A"},
            {"701B": REASON_NOT_SELECTED},
            id="selected limits, by name ignoring case",
        ),
        pytest.param(
            spec(selected=["Old Drive"]),
            set(),
            {"701C": REASON_INACTIVE},
            id="a selected inactive Campaign is still not synced",
        ),
        pytest.param(
            spec(record_types=["Webinar"]),
            {"701B"},
            {"701A": REASON_RECORD_TYPE, "701D": REASON_RECORD_TYPE},
            id="record type labels keep only those types",
        ),
        pytest.param(
            spec(selected=["Spring Gala", "Webinar"], excluded=["Webinar"]),
            {"701A"},
            {"701B": REASON_EXCLUDED},
            id="excluded always wins",
        ),
        pytest.param(
            spec(excluded=["Old  drive"]),
            {"701A", "701B"},
            {"701C": REASON_EXCLUDED},
            id="names compare with blanks folded",
        ),
    ],
)
def test_which_campaigns_a_setup_maintains(given, kept, skipped):
    choice = choose_campaigns(given, ALL)
    assert {c.id for c in choice.maintained} == kept
    for campaign_id, reason in skipped.items():
        assert choice.skipped[campaign_id] == reason


def test_a_selected_name_salesforce_lacks_is_a_warning_not_an_error():
    choice = choose_campaigns(spec(selected=["Spring Gala", "Summer Fair"]), ALL)
    assert [c.id for c in choice.maintained] == ["701A"]
    assert choice.warnings == ("campaign_lists: no Campaign named 'Summer Fair' in Salesforce",)


@pytest.mark.parametrize(
    ("object_type", "row", "expected"),
    [
        pytest.param(
            "Contact",
            {
                "Id": "701A",
                "Name": "Spring",
                "IsActive": True,
                "RecordType": {"Name": "Event"},
                "NumberOfContacts": 3,
            },
            Campaign("701A", "Spring", True, "Event", 3),
            id="REST row",
        ),
        pytest.param(
            "Lead",
            {
                "Id": "701A",
                "Name": "Spring",
                "IsActive": "false",
                "RecordType": None,
                "NumberOfLeads": "7",
            },
            Campaign("701A", "Spring", False, None, 7),
            id="Lead setups count Leads; text values",
        ),
    ],
)
def test_campaign_rows(object_type, row, expected):
    assert campaign_from_row(row, object_type) == expected


CAMPAIGN_LISTS = {"701A": "list-spring", "701B": "list-webinar"}
CHECKBOXES = {"Newsletter": "list-news"}


@pytest.mark.parametrize(
    ("memberships", "record", "expected"),
    [
        pytest.param({"701A"}, {"Id": "003X"}, ("list-spring",), id="one Campaign"),
        pytest.param(
            {"701B", "701A"}, {"Id": "003X"}, ("list-spring", "list-webinar"), id="two, in order"
        ),
        pytest.param({"701Z"}, {"Id": "003X"}, (), id="a Campaign not maintained adds nothing"),
        pytest.param(
            {"701A"},
            {"Id": "003X", "Newsletter__c": True},
            ("list-spring", "list-news"),
            id="with a checkbox list",
        ),
        pytest.param(
            set(), {"Id": "003X", "Newsletter__c": False}, (), id="an unchecked checkbox: none"
        ),
    ],
)
def test_segment_lists(memberships, record, expected):
    setup = opts(
        campaign_lists={"source": "campaigns"},
        checkbox_lists=[{"field": "Newsletter__c", "list": "Newsletter"}],
    )
    got = segment_lists(
        setup,
        record,
        memberships=memberships,
        campaign_list_ids=CAMPAIGN_LISTS,
        checkbox_list_ids=CHECKBOXES,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("campaign_lists", "memberships", "expected"),
    [
        pytest.param(None, set(), True, id="off: every record is in scope"),
        pytest.param({"source": "campaigns"}, {"701A"}, True, id="a member of a maintained one"),
        pytest.param({"source": "campaigns"}, {"701Z"}, False, id="only of others: outside"),
        pytest.param({"source": "campaigns"}, set(), False, id="of none: outside"),
    ],
)
def test_scope(campaign_lists, memberships, expected):
    setup = opts(campaign_lists=campaign_lists)
    assert in_campaign_scope(setup, memberships, CAMPAIGN_LISTS) is expected


@pytest.mark.parametrize(
    ("object_type", "record", "expected"),
    [
        ("Contact", {"Id": "003A"}, "003A"),
        ("Lead", {"Id": "00QA"}, "00QA"),
        ("Account", {"Id": "001A", "PersonContactId": "003P"}, "003P"),
        ("Account", {"Id": "001A", "PersonContactId": None}, None),
    ],
)
def test_member_key(object_type, record, expected):
    assert member_key(opts(object_type=object_type), record) == expected


def test_stopped_message_names_the_campaign_and_keeps_the_list():
    message = stopped_message("Spring Gala", REASON_INACTIVE)
    assert message == (
        "Campaign 'Spring Gala' is no longer active: its Constant Contact list is kept but no "
        "longer maintained"
    )
