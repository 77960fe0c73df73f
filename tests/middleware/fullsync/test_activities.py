"""Import activities checked at the end of a Full Sync: rejected rows found by index or address."""

from __future__ import annotations

from middleware.fullsync.activities import attribute_import_errors

ROWS = [("003A", "a@example.org"), ("003B", "b@example.org"), ("003C", "c@example.org")]


def test_rows_are_found_by_index_or_by_address() -> None:
    activity = {
        "activity_id": "act-1",
        "state": "completed",
        "activity_errors": [
            "import_data[1]: email address is invalid.",
            "c@example.org could not be added",
            "something about the account",
        ],
    }
    failures, loose = attribute_import_errors(activity, ROWS)
    assert [(f.sf_id, f.code) for f in failures] == [
        ("003B", "import_row_rejected"),
        ("003C", "import_row_rejected"),
    ]
    assert loose == ["import act-1: something about the account"]


def test_an_activity_that_did_not_complete_fails_every_row_it_carried() -> None:
    activity = {"activity_id": "act-2", "state": "failed", "activity_errors": ["import_data[0]: x"]}
    failures, loose = attribute_import_errors(activity, ROWS)
    assert [(f.sf_id, f.code) for f in failures] == [
        ("003A", "import_row_rejected"),
        ("003B", "import_failed"),
        ("003C", "import_failed"),
    ]
    assert loose == []


def test_rows_unknown_after_a_restart_are_reported_not_guessed() -> None:
    failures, loose = attribute_import_errors(
        {"activity_id": "act-3", "state": "timed_out", "activity_errors": []}, []
    )
    assert failures == []
    assert loose == ["import act-3 ended timed_out: the import activity ended timed_out"]
