"""A run's counts in words: each number says what happened, Sync Now's directions apart."""

from __future__ import annotations

from middleware import run_counts
from middleware.sync import sf_to_cc


def test_a_sync_now_reads_as_what_happened_on_each_side() -> None:
    counts = {
        "records": 5880,
        "sf_to_cc": {
            "imported": 2880,
            "skipped": {sf_to_cc.REASON_OPT_OUT_NOT_PROPAGATED: 73, "no email": 39},
        },
        "cc_to_sf": {"scanned_unsubscribed": 1, "skipped": {"already linked": 2880}},
    }
    assert run_counts.describe(counts) == [
        "records read: 5,880 (Salesforce records and Constant Contact contacts together)",
        "Constant Contact → Salesforce:",
        "  scans of every Constant Contact unsubscribe: 1",
        "  skipped: 2,880 already linked",
        "Salesforce → Constant Contact:",
        "  contacts created or updated in Constant Contact (import): 2,880",
        "  skipped: 39 no email; "
        "73 opted out, never created in Constant Contact (nothing to unsubscribe)",
    ]


def test_a_full_sync_leaves_out_progress_and_timings_and_zeroes() -> None:
    counts = {
        "records": 3006,
        "percent": 100.0,
        "phase_seconds": {"read": 1.1},
        "unchanged": 2882,
        "list_removals": 1,
        "deleted": 0,
        "reported: account not found": 2,
        "errors": 1,
    }
    assert run_counts.describe(counts) == [
        "records read: 3,006",
        "list memberships removed: 1",
        "records unchanged: 2,882",
        "record errors (see /errors): 1",
        "reported, account not found: 2",
    ]


def test_a_sync_now_with_nothing_to_do_on_one_side_says_so() -> None:
    assert run_counts.describe({"records": 0, "sf_to_cc": {}, "cc_to_sf": {"linked": 2}}) == [
        "Constant Contact → Salesforce:",
        "  Constant Contact contacts linked to Salesforce records: 2",
        "Salesforce → Constant Contact: nothing",
    ]


def test_a_counter_without_words_still_shows_its_name() -> None:
    assert run_counts.describe({"created_person_accounts": 2}) == ["created person accounts: 2"]
