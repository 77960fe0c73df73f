"""Smoke runs of the benchmarks with tiny numbers, so they cannot rot unnoticed.

The in-process burst and the helpers run everywhere in a few seconds; the runs that start
gunicorn, wrk or an rq worker need the real Redis (integration) and skip when a tool is missing.
"""

from __future__ import annotations

import shutil

import pytest

from bench import _common as c
from bench import burst, full_sync, latency, webhook_intake
from middleware.salesforce.events import parse_events


def test_burst_in_process_verifies_every_record_within_the_targets() -> None:
    figures = burst.run_inprocess(records=60, batch=25, activity_steps=2)
    assert figures.mismatches == []
    assert figures.events == 60
    assert figures.linked >= 55  # a seeded role address or two is skipped by the rules
    assert figures.sf_total <= burst.TARGET_SF
    assert figures.cc_total <= burst.TARGET_CC
    assert figures.webhook_statuses == {202: figures.webhook_posts}


def test_the_wrk_script_sends_valid_unique_change_events() -> None:
    first, second = webhook_intake.event_body(1), webhook_intake.event_body(2)
    hints = parse_events(first, call_client="ctct-sync") + parse_events(second, call_client="x")
    assert [h.entity for h in hints] == ["Contact", "Contact"]
    assert hints[0].record_ids != hints[1].record_ids
    assert hints[0].event_key != hints[1].event_key
    assert len(first) > 500  # a realistic CDC envelope, not a stub


def test_hello_app_answers_202() -> None:
    seen: list[str] = []
    body = webhook_intake.hello_app(
        {"CONTENT_LENGTH": "0"}, lambda status, _headers: seen.append(status)
    )
    assert seen == ["202 Accepted"] and body == [b'{"accepted":1}']


def test_figures_helpers() -> None:
    assert c.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert c.percentile(list(map(float, range(1, 101))), 99) == 99.0
    hits = [c.Hit(at, "GET", "/v3/activities/x", "", None) for at in (0.1, 0.2, 0.3, 1.5, 1.6)]
    mean, peak = latency.cc_rate(hits, 0.0, 2.0)
    assert mean == 2.5 and peak == 3


def test_stages_follow_one_change_through_the_pipeline() -> None:
    rid, email = "003SB0000000001YAA", "ada@example.org"
    change = latency.Change(0, rid, email, sent=10.0, seen=12.0)
    posts = [(10.02, 10.03, 202, [rid])]
    sf = [c.Hit(10.5, "GET", "/services/data/v66.0/queryAll/", f"q=IN+('{rid}')", None)]
    body = b'{"import_data":[{"email":"ada@example.org"}],"list_ids":["x"]}'
    cc = [c.Hit(10.6, "POST", "/v3/activities/contacts_json_import", "", body)]
    parts = latency.stages([change], posts, sf, cc)
    assert parts["webhook answered → flush re-read (SOQL)"] == [pytest.approx(0.47)]
    assert parts["import posted → right in CC (polls)"] == [pytest.approx(1.4)]


@pytest.mark.integration
def test_webhook_intake_runs_briefly_under_gunicorn() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    assert webhook_intake.main(["--seconds", "1", "--connections", "2", "--workers", "1"]) == 0


@pytest.mark.integration
def test_latency_runs_briefly_in_embedded_mode() -> None:
    args = ["--seconds", "1", "--rate", "5", "--records", "10", "--mode", "embedded"]
    assert latency.main([*args, "--drain", "8"]) == 0


@pytest.mark.integration
def test_full_sync_runs_briefly_and_writes_exactly_the_drift() -> None:
    figures = full_sync.run_size(400, 0.03)
    assert figures["initial"]["summary"]["imported"] > 350
    exact = figures["exact"]
    assert exact["imports_are_the_edits"] and exact["removals_are_the_deletes"], exact
    assert exact["optouts_reached_salesforce"] and exact["other_cc_writes"] == {}, exact
