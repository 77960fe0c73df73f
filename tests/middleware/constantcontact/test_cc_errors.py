"""The status→error table and body parsing, tested without HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from middleware.constantcontact import errors as e

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "body", "path", "expected", "retryable"),
    [
        (
            400,
            [{"error_key": "contacts.api.validation.error", "error_message": "bad"}],
            "/contacts",
            e.Validation,
            False,
        ),
        (
            401,
            {"error_key": "unauthorized", "error_message": "Unauthorized"},
            "/contacts",
            e.AuthExpired,
            False,
        ),
        (
            403,
            [{"error_key": "forbidden", "error_message": "no scope"}],
            "/contacts",
            e.Forbidden,
            False,
        ),
        (
            404,
            [{"error_key": "contacts.api.not_found", "error_message": "nope"}],
            "/contacts/x",
            e.NotFound,
            False,
        ),
        (405, [], "/contacts", e.Validation, False),
        (
            409,
            [{"error_key": "contacts.api.conflict", "error_message": "EmailAddress is not unique"}],
            "/contacts",
            e.Conflict,
            False,
        ),
        (
            415,
            [{"error_key": "contacts.api.unsupported.media.type", "error_message": "json"}],
            "/contacts",
            e.Validation,
            False,
        ),
        (422, [], "/contacts", e.Validation, False),
        (
            429,
            {"error_key": "throttled", "error_message": "Too Many Requests"},
            "/contacts",
            e.Throttled,
            True,
        ),
        (
            429,
            {"error_key": "throttled", "error_message": "Too Many Requests"},
            "/activities/contact_delete",
            e.Throttled,
            True,
        ),
        (
            429,
            {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"},
            "/contacts",
            e.QuotaExceeded,
            False,
        ),
        (
            429,
            {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"},
            "/activities/x",
            e.QuotaExceeded,
            False,
        ),
        (
            429,
            [
                {
                    "error_key": "",
                    "error_message": "Too many requests. You exceeded 1,000 queued activities"
                    " for this user account.",
                }
            ],
            "/activities/contacts_json_import",
            e.TooManyActivities,
            True,
        ),
        (
            429,
            [{"error_key": "activities.too_many", "error_message": "x"}],
            "/activities/add_list_memberships",
            e.TooManyActivities,
            True,
        ),
        (
            500,
            [{"error_key": "server_error", "error_message": "boom"}],
            "/contacts",
            e.ServerError,
            True,
        ),
        (502, "<html>bad gateway</html>", "/contacts", e.ServerError, True),
        (503, b"", "/contacts", e.ServerError, True),
        (599, None, "/contacts", e.ServerError, True),
    ],
)
def test_table_maps_status_and_key_to_what_the_caller_should_do(
    status, body, path, expected, retryable
):
    err = e.error_for(status, body, now=NOW, method="GET", path=path)
    assert type(err) is expected
    assert err.retryable is retryable
    assert err.status == status
    assert err.path == path


def test_quota_exceeded_resumes_at_next_midnight_utc():
    err = e.error_for(
        429, {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}, now=NOW
    )
    assert isinstance(err, e.QuotaExceeded)
    assert err.resume_at == datetime(2026, 3, 15, tzinfo=UTC)


def test_next_midnight_from_another_timezone_and_naive():
    from datetime import timedelta, timezone

    late_evening_new_york = datetime(2026, 3, 14, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert e.next_utc_midnight(late_evening_new_york) == datetime(2026, 3, 16, tzinfo=UTC)
    assert e.next_utc_midnight(datetime(2026, 12, 31, 23, 59)) == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "pairs"),
    [
        (
            [
                {"error_key": "a", "error_message": "one"},
                {"error_key": "b", "error_message": "two"},
            ],
            [("a", "one"), ("b", "two")],
        ),
        (
            {"error_key": "unauthorized", "error_message": "Unauthorized"},
            [("unauthorized", "Unauthorized")],
        ),
        (json.dumps([{"error_key": "k", "error_message": "m"}]).encode(), [("k", "m")]),
        (json.dumps({"error_key": "k", "error_message": "m"}), [("k", "m")]),
        (
            {
                "error": "invalid_grant",
                "error_description": "The refresh token is invalid or expired.",
            },
            [("invalid_grant", "The refresh token is invalid or expired.")],
        ),
        (b"not json", [("", "not json")]),
        (b"", []),
        (None, []),
    ],
)
def test_parse_error_body_accepts_arrays_objects_and_garbage(body, pairs):
    assert e.parse_error_body(body) == pairs


def test_messages_of_every_item_are_kept_and_str_names_the_call():
    body = [
        {"error_key": "a", "error_message": "first"},
        {"error_key": "b", "error_message": "second"},
    ]
    err = e.error_for(400, body, now=NOW, method="POST", path="/contacts")
    assert err.error_key == "a"
    assert err.message == "first; second"
    assert str(err) == "400 a: first; second (POST /contacts)"


def test_errors_that_need_a_person_say_so():
    assert e.AuthRevoked("x").needs_attention
    assert e.Forbidden("x").needs_attention
    assert not e.Validation("x").needs_attention


def test_activity_failed_carries_activity_errors():
    err = e.ActivityFailed(
        "failed",
        activity={"activity_id": "a1", "state": "failed", "activity_errors": ["row 3: bad email"]},
    )
    assert err.activity_errors == ["row 3: bad email"]
    assert not err.retryable
