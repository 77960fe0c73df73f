"""The wizard's form translation (``web/dashboard/forms``): controls from the schema, posted
forms back into options; no app, no vendor."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from middleware.web.dashboard import forms
from schemas.setup import SetupSchema


def _row(op: str, value: str) -> MultiDict[str, str]:
    return MultiDict(
        {"filter_rows[0].field": "F", "filter_rows[0].op": op, "filter_rows[0].value": value}
    )


@pytest.mark.parametrize(
    ("op", "typed", "value"),
    [
        ("equals", "Web", "Web"),
        ("equals", "120", 120),
        ("equals", "1.5", 1.5),
        ("equals", "01234", "01234"),  # a code, not a number
        ("equals", "true", True),
        ("contains", "true", "true"),
        ("in", "EMEA, APAC , 3", ["EMEA", "APAC", 3]),
        ("greater_or_equal", "2026-01-01", "2026-01-01"),
        ("equals", "", None),  # the schema says a value is needed
    ],
)
def test_filter_values_are_typed_as_the_schema_takes_them(op: str, typed: str, value: Any) -> None:
    flt, _ = forms.read_filter(_row(op, typed))
    assert flt == {"match": "all", "conditions": [{"field": "F", "op": op, "value": value}]}


def test_valueless_operators_send_no_value() -> None:
    flt, _ = forms.read_filter(_row("is_blank", "ignored"))
    assert flt == {"match": "all", "conditions": [{"field": "F", "op": "is_blank"}]}


def test_no_rows_is_no_filter() -> None:
    assert forms.read_filter(MultiDict({"filter.match": "any"}))[0] is None


def test_a_stored_filter_round_trips_through_the_builder() -> None:
    a = {"field": "A", "op": "equals", "value": "x"}
    b = {"field": "B", "op": "in", "value": ["p", 2]}
    stored = {"match": "any", "conditions": [{"match": "all", "conditions": [a, b]}, a]}
    builder = forms.filter_form(stored)
    assert [r["path"] for r in builder.rows] == [
        "filter.conditions[0].conditions[0]",
        "filter.conditions[0].conditions[1]",
        "filter.conditions[1]",
    ]
    posted: MultiDict[str, str] = MultiDict({"filter.match": builder.match})
    for i, row in enumerate(builder.rows):
        for key in forms.FILTER_ROW_KEYS:
            posted[f"filter_rows[{i}].{key}"] = row[key]
    for group, match in builder.group_match.items():
        posted[f"filter_groups[{group}].match"] = match
    assert forms.read_filter(posted)[0] == stored


def test_the_options_step_covers_every_option_without_a_step_of_its_own() -> None:
    shown = {c.path for c in forms.option_controls()}
    assert shown == set(SetupSchema().fields) - forms.OWN_STEP_OPTIONS
    assert all(c.help for c in forms.option_controls())
    kinds = {c.path: c.kind for c in forms.option_controls()}
    assert kinds["sync_to_cc"] == "checkbox"
    assert kinds["campaign_response_mode"] == "select"
    assert kinds["campaign_results"] == "fieldset"
    assert {c.path for c in forms.schedule_controls()} == {
        f"schedule.{name}"
        for name in ("full_sync", "at", "timezone", "weekday", "poll_minutes", "catch_up_minutes")
    }


def test_unreadable_numbers_go_to_the_schema_as_typed() -> None:
    posted = MultiDict({"schedule.poll_minutes": "soon", "schedule.catch_up_minutes": "5"})
    read = forms.read_controls(forms.schedule_controls(), posted)
    assert read["poll_minutes"] == "soon" and read["catch_up_minutes"] == 5
