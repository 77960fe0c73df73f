"""Smoke runs of the benchmarks with tiny numbers, so they cannot rot unnoticed.

The in-process burst and the helpers run everywhere in a few seconds; the runs that start
gunicorn, wrk or an rq worker need the real Redis (integration) and skip when a tool is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import _common as c
from bench import burst, full_sync, intake_profile, latency, pubsub_listener, webhook_intake
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


def test_the_wrk_script_batches_are_valid_events_with_unique_ids() -> None:
    hints = parse_events(webhook_intake.batch_body(10, 5), call_client="ctct-sync")
    assert len(hints) == 5
    assert len({h.record_ids for h in hints}) == 5 and len({h.event_key for h in hints}) == 5
    assert webhook_intake.event_body(10)[:-1] in webhook_intake.batch_body(10, 5)


def test_the_wrk_script_inlines_the_event_template(tmp_path: Path) -> None:
    lua = webhook_intake.lua_script(tmp_path / "events.lua").read_text()
    assert "@" not in lua.replace("@@", "")  # every placeholder filled in
    assert str(webhook_intake.THREAD_SPAN) in lua and '{"events":[' in lua


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
    args = ["--rounds", "2", "--seconds", "1", "--batch", "5", "--batch-rounds", "1"]
    assert webhook_intake.main([*args, "--connections", "2", "--workers", "1"]) == 0


@pytest.mark.integration
def test_intake_profile_runs_briefly(capsys: pytest.CaptureFixture[str]) -> None:
    assert intake_profile.main(["--events", "40", "--batch", "5"]) == 0
    out = capsys.readouterr().out
    assert "single: Redis round trips per event" in out and "batch of 5: whole request" in out


@pytest.mark.integration
def test_latency_runs_briefly_in_embedded_mode() -> None:
    args = ["--seconds", "1", "--rate", "5", "--records", "10", "--mode", "embedded"]
    assert latency.main([*args, "--drain", "8"]) == 0


@pytest.mark.integration
def test_pubsub_listener_runs_briefly(capsys: pytest.CaptureFixture[str]) -> None:
    """A 200-event backlog in process, then 10 edits through gunicorn, an rq worker and the
    listener process with the sandbox's Pub/Sub server on a free port (~20 s)."""
    args = ["--events", "200", "--contacts", "40", "--seconds", "2", "--rate", "5"]
    assert pubsub_listener.main([*args, "--records", "20", "--drain", "15", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"decoded": 200' in out and '"undecodable": 0' in out
    assert "listener PSS peak / last (MB)" in out


@pytest.mark.integration
def test_full_sync_runs_briefly_and_writes_exactly_the_drift() -> None:
    figures = full_sync.run_size(400, 0.03)
    assert figures["initial"]["summary"]["imported"] > 350
    exact = figures["exact"]
    assert exact["imports_are_the_edits"] and exact["removals_are_the_deletes"], exact
    assert exact["optouts_reached_salesforce"] and exact["other_cc_writes"] == {}, exact


# ------------------------------------------------------------------------------- fault matrix


def test_fault_matrix_judges_contacts_as_the_targets_say() -> None:
    from bench.faults import Expected, evaluate

    expected = {
        "a@x.org": Expected("subscribed", "t-2"),
        "b@x.org": Expected("unsubscribed"),
        "c@x.org": Expected("absent"),
        "d@x.org": Expected("subscribed", "t-1"),
    }
    allowed = {"a@x.org", "b@x.org", "d@x.org", "old@x.org"}
    contacts = {
        "a@x.org": {"job_title": "t-2", "_permission": "implicit", "_deleted": False},
        "b@x.org": {"job_title": "x", "_permission": "unsubscribed", "_deleted": False},
        "d@x.org": {"job_title": "t-1", "_permission": "explicit", "_deleted": False},
        "old@x.org": {"_permission": "implicit", "_deleted": False},
    }
    assert evaluate(expected, allowed, contacts).all_right
    stale = {**contacts, "a@x.org": {**contacts["a@x.org"], "job_title": "t-1"}}
    assert evaluate(expected, allowed, stale).wrong == ["a@x.org"]
    resubscribed = {**contacts, "b@x.org": {**contacts["b@x.org"], "_permission": "implicit"}}
    assert evaluate(expected, allowed, resubscribed).wrong == ["b@x.org"]
    deleted = {**contacts, "d@x.org": {**contacts["d@x.org"], "_deleted": True}}
    assert evaluate(expected, allowed, deleted).wrong == ["d@x.org"]
    leaked = {**contacts, "c@x.org": {"_permission": "implicit"}, "z@x.org": {}}
    verdict = evaluate(expected, allowed, leaked)
    assert verdict.extra == ["c@x.org", "z@x.org"] and not verdict.all_right


def test_fault_watcher_notes_re_subscribes_and_when_all_is_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench import faults

    states: list[dict[str, dict[str, object]]] = [
        {"u@x.org": {"_permission": "unsubscribed"}, "a@x.org": {"job_title": "old"}},
        {"u@x.org": {"_permission": "unsubscribed"}, "a@x.org": {"job_title": "new"}},
        {"u@x.org": {"_permission": "implicit"}, "a@x.org": {"job_title": "new"}},
    ]
    monkeypatch.setattr(faults.c, "cc_contacts_by_email", lambda _app: states.pop(0))
    watcher = faults.Watcher(cc_app=None, unsubscribed=set())
    watcher.look()
    assert watcher.unsubscribed == {"u@x.org"} and watcher.verdict is None
    watcher.expect(
        {
            "u@x.org": faults.Expected("unsubscribed"),
            "a@x.org": faults.Expected("subscribed", "new"),
        },
        {"u@x.org", "a@x.org"},
    )
    watcher.look()
    assert watcher.right_since is not None and not watcher.resubscribed
    watcher.look()
    assert watcher.resubscribed == {"u@x.org"} and watcher.right_since is None
    assert watcher.verdict is not None and watcher.verdict.wrong == ["u@x.org"]


def test_fault_workload_mixes_every_kind_of_change() -> None:
    from bench.faults import plan_workload

    linked = [(f"003{i:015d}", f"p{i}@x.org") for i in range(80)]
    unsubscribed = [(f"003{i:015d}", f"u{i}@x.org") for i in range(100, 104)]
    actions = plan_workload(60, linked, unsubscribed, seed=1)
    kinds = {a.kind for a in actions}
    assert len(actions) == 60
    assert kinds == {"edit", "unsub_edit", "opt_out", "create", "create_opted_out"}
    edited = [a.record_id for a in actions if a.kind == "edit"]
    assert len(set(edited)) < len(edited)  # some records change more than once: order matters
    opted_out = {a.record_id for a in actions if a.kind == "opt_out"}
    assert not opted_out & set(edited)


@pytest.mark.integration
def test_fault_matrix_runs_one_cheap_row() -> None:
    """Duplicate deliveries of 20 events through gunicorn, an rq worker, the clock, a private
    redis-server and both sandboxes on sockets; each row starts from nothing (~20 s)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from bench import faults

    parsed = faults.parse_args(["--faults", "duplicate", "--events", "20", "--row-timeout", "60"])
    result = faults.run_row(parsed, faults.BY_NAME["duplicate"], tls_dir=None)
    assert result.error == "", result.notes
    assert result.events == 20
    assert result.deliveries.get("202", 0) >= 2  # every batch twice at least
    assert result.lost == 0 and result.extra == 0 and result.resubscribed == 0, result.notes
    assert result.seconds_to_right is not None
    assert result.readyz_row  # /readyz was watched


def test_campaign_results_runs_briefly_and_salesforce_agrees() -> None:
    from bench import campaign_results

    steps = campaign_results.run(300, 0.3, 0.05, 0.02, list(campaign_results.MODES))
    assert [s.problems for s in steps] == [[]] * 6
    first, second = steps[0], steps[1]
    assert first.counts["members_created"] > 250
    assert second.cc_total < first.cc_total
