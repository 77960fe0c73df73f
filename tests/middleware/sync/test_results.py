"""Campaign results, the pure rules: statuses, selection, folding events, plans, cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from middleware.sync import results as rules
from middleware.sync.cc_to_sf import SfMatch
from middleware.sync.results import Recipient, ReportCursor, Stored

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (None, "Sent", "Sent"),
        ("Sent", "Opened", "Opened"),
        ("Clicked", "Opened", "Clicked"),
        ("Opened", "Bounced", "Opened"),
        ("Bounced", "Sent", "Bounced"),
        ("Clicked", "Unsubscribed", "Unsubscribed"),
        ("Unsubscribed", "Clicked", "Unsubscribed"),
    ],
)
def test_a_status_never_goes_down(current, new, expected):
    assert rules.higher(current, new) == expected


def test_statuses_rank_as_the_guide_says():
    labels = [label for label, _ in rules.STATUSES]
    assert labels == ["Sent", "Bounced", "Opened", "Clicked", "Unsubscribed"]
    assert {label for label, responded in rules.STATUSES if responded} == {"Opened", "Clicked"}


@pytest.mark.parametrize(
    ("selection", "name", "expected"),
    [
        ("all", "Anything", True),
        (("March  Appeal",), "march appeal", True),
        (("Gala",), "March Appeal", False),
        ((), "March Appeal", False),
    ],
)
def test_selection(selection, name, expected):
    assert rules.is_selected(name, selection) is expected


def test_ab_tests_are_not_supported():
    assert rules.unsupported_reason({"type": "NEWSLETTER", "type_code": 10}) is None
    assert "A/B test" in str(rules.unsupported_reason({"type_code": 57}))
    assert "A/B test" in str(rules.unsupported_reason({"type": "AB_TEST"}))
    assert "automated" in str(rules.unsupported_reason({"type": "AUTOMATED_EMAIL", "type_code": 0}))


def test_window_and_sent():
    assert rules.in_window(NOW - timedelta(days=89), NOW, 90)
    assert not rules.in_window(NOW - timedelta(days=91), NOW, 90)
    assert not rules.in_window(None, NOW, 90)
    assert rules.sent({"current_status": "Done"})
    assert not rules.sent({"current_status": "Draft"})


def test_reports_read_per_mode():
    assert "sends" in rules.reports_for("campaign", False)
    assert rules.reports_for("activity", False) == ("optouts", "clicks", "opens")
    assert rules.reports_for("activity", True)[-1] == "sends"
    assert rules.reports_for("none", True) == ("optouts", "sends")
    assert rules.reports_for("none", False) == ()


def test_names_fit_salesforce():
    assert rules.campaign_name("x" * 90, "primary_email") == "x" * 80
    assert rules.campaign_name("Spring", "resend") == "Spring (resend)"
    assert len(rules.campaign_name("y" * 90, "resend")) == 80
    assert rules.open_subject("Spring") == "Email Opened: Spring"
    assert rules.click_subject("Spring") == "Email Clicked: Spring"


def ev(contact: str, at: str, **extra: str) -> dict[str, str]:
    return {"contact_id": contact, "email_address": f"{contact}@x.org", "created_time": at, **extra}


def test_fold_keeps_the_highest_status_first_open_and_each_link_once():
    people: dict[str, Recipient] = {}
    rules.fold(people, "sends", [ev("a", "t0"), ev("b", "t0")])
    rules.fold(people, "opens", [ev("a", "t3"), ev("a", "t2")])
    rules.fold(
        people,
        "clicks",
        [
            ev("b", "t05", url_id="1", link_url="https://x.org/1"),
            ev("b", "t04", url_id="1", link_url="https://x.org/1"),
            ev("b", "t6", url_id="2", link_url="https://x.org/2"),
        ],
    )
    taken = rules.fold(people, "forwards", [ev("a", "t7")])
    assert taken == 1
    assert people["a"].status == "Opened" and people["a"].first_open == "t2"
    assert people["b"].status == "Clicked" and people["b"].first_open == "t04"
    assert people["b"].clicks == {"1": ("https://x.org/1", "t04"), "2": ("https://x.org/2", "t6")}
    rules.fold(people, "optouts", [ev("a", "t08")])
    assert people["a"].status == "Unsubscribed" and people["a"].opted_out_at == "t08"


def test_plan_inserts_once_raises_only_and_makes_each_task_once():
    people: dict[str, Recipient] = {}
    rules.fold(people, "opens", [ev("a", "t01"), ev("b", "t01"), ev("c", "t01")])
    rules.fold(people, "clicks", [ev("b", "t2", url_id="9", link_url="u")])
    stored = {
        "b": Stored("003B", "00vB", "Opened", "00TB", {}),
        "c": Stored("003C", "00vC", "Unsubscribed", "00TC", {}),
    }
    plan = rules.plan_recipients(
        "campaign_and_activity", people, stored, ["a", "b", "c", "unknown"]
    )
    assert plan.member_inserts == [("a", "Opened")]
    assert plan.member_updates == [("b", "Clicked")]  # c stays Unsubscribed: nothing to write
    assert plan.open_tasks == ["a"]
    assert plan.click_tasks == [("b", "9")]
    campaign_only = rules.plan_recipients("campaign", people, stored, ["a"])
    assert not campaign_only.open_tasks and campaign_only.member_inserts
    tasks_only = rules.plan_recipients("activity", people, {}, ["a", "b"])
    assert not tasks_only.member_inserts and tasks_only.open_tasks == ["a", "b"]


def test_merge_into_adds_a_retried_recipient():
    people = {"a": Recipient("a", "a@x.org", status="Opened", first_open="t05")}
    rules.merge_into(people, Recipient("a", "", status="Clicked", first_open="t02",
                                       clicks={"1": ("u", "t03")}))  # fmt: skip
    rules.merge_into(people, Recipient("b", "b@x.org", status="Sent"))
    assert people["a"].status == "Clicked" and people["a"].first_open == "t02"
    assert people["a"].clicks == {"1": ("u", "t03")}
    assert people["b"].status == "Sent"


def test_choose_person_prefers_the_setup_type_then_standard_email_then_oldest():
    lead = SfMatch("Lead", "00Q1", "a@x.org", "Email", created="2020")
    old = SfMatch("Contact", "0031", "a@x.org", "npe01__WorkEmail__c", created="2019")
    std = SfMatch("Contact", "0032", "a@x.org", "Email", created="2021")
    assert rules.choose_person([lead, old, std], "Contact") == std
    assert rules.choose_person([lead, std], "Lead") == lead
    assert rules.choose_person([], "Lead") is None
    assert rules.member_field("00Q1") == "LeadId"
    assert rules.member_field("0031") == "ContactId"


class TestReportCursor:
    def test_first_pass_reads_everything_then_stops_at_what_it_reached(self):
        cursor = ReportCursor()
        fresh, reached = cursor.take([{"created_time": "t09"}, {"created_time": "t08"}])
        assert len(fresh) == 2 and not reached
        cursor.finish()
        assert cursor.dump() == {"until": "t09"}
        fresh, reached = cursor.take(
            [{"created_time": "t11"}, {"created_time": "t09"}, {"created_time": "t08"}]
        )
        assert [f["created_time"] for f in fresh] == ["t11"] and reached
        cursor.finish()
        assert cursor.until == "t11"

    def test_an_interrupted_pass_keeps_its_page_and_newest_time(self):
        cursor = ReportCursor(until="t01")
        cursor.take([{"created_time": "t09"}, {"created_time": "t08"}])
        cursor.next = "/next?cursor=abc"
        saved = ReportCursor.load(cursor.dump())
        assert saved == ReportCursor(until="t01", next="/next?cursor=abc", top="t09")
        saved.take([{"created_time": "t05"}, {"created_time": "t01"}])
        saved.finish()
        assert saved.dump() == {"until": "t09"}

    def test_an_empty_report_keeps_its_mark(self):
        cursor = ReportCursor(until="t04")
        assert cursor.take([]) == ([], False)
        cursor.finish()
        assert cursor.until == "t04"
