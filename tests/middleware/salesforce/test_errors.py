"""The (status, errorCode) → error-class table, exercised without HTTP."""

from __future__ import annotations

import pytest

from middleware.salesforce import errors as e


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
            e.SessionExpired,
        ),
        (401, "", e.SessionExpired),
        (
            400,
            {"error": "invalid_grant", "error_description": "expired access/refresh token"},
            e.AuthRevoked,
        ),
        (400, {"error": "inactive_user", "error_description": "user is inactive"}, e.AuthRevoked),
        (
            401,
            {"error": "invalid_client", "error_description": "invalid client credentials"},
            e.OAuthFailed,
        ),
        (400, {"error": "redirect_uri_mismatch", "error_description": "x"}, e.OAuthFailed),
        (
            403,
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            e.ApiLimitExceeded,
        ),
        (
            403,
            [
                {
                    "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                    "errorCode": "REQUEST_LIMIT_EXCEEDED",
                }
            ],
            e.ConcurrencyLimitExceeded,
        ),
        (500, [{"message": "boom", "errorCode": "UNKNOWN_EXCEPTION"}], e.Retryable),
        (502, "<html>Bad gateway</html>", e.Retryable),
        (503, [{"message": "down", "errorCode": "SERVER_UNAVAILABLE"}], e.Retryable),
        (
            400,
            [
                {
                    "message": "unable to obtain exclusive access to this record",
                    "errorCode": "UNABLE_TO_LOCK_ROW",
                }
            ],
            e.Retryable,
        ),
        (
            400,
            [{"message": "unexpected token: FORM", "errorCode": "MALFORMED_QUERY"}],
            e.QueryError,
        ),
        (400, [{"message": "No such column 'Foo__c'", "errorCode": "INVALID_FIELD"}], e.QueryError),
        (
            400,
            [
                {
                    "message": "Required fields are missing: [LastName]",
                    "errorCode": "REQUIRED_FIELD_MISSING",
                    "fields": ["LastName"],
                }
            ],
            e.RecordRejected,
        ),
        (
            400,
            [{"message": "Bad state", "errorCode": "FIELD_INTEGRITY_EXCEPTION"}],
            e.RecordRejected,
        ),
        (
            400,
            [{"message": "rule", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION"}],
            e.RecordRejected,
        ),
        (
            400,
            [{"message": "Use one of these records?", "errorCode": "DUPLICATES_DETECTED"}],
            e.RecordRejected,
        ),
        (
            400,
            [
                {
                    "message": "cannot reference converted lead",
                    "errorCode": "CANNOT_UPDATE_CONVERTED_LEAD",
                }
            ],
            e.RecordRejected,
        ),
        (
            400,
            [{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED"}],
            e.RecordRejected,
        ),
        (
            404,
            [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}],
            e.NotFound,
        ),
        (
            300,
            [
                "/services/data/v66.0/sobjects/Contact/003A",
                "/services/data/v66.0/sobjects/Contact/003B",
            ],
            e.MultipleMatches,
        ),
        (
            403,
            [{"message": "insufficient access rights", "errorCode": "INSUFFICIENT_ACCESS"}],
            e.AccessDenied,
        ),
        (
            403,
            [{"message": "API is not enabled", "errorCode": "API_DISABLED_FOR_ORG"}],
            e.AccessDenied,
        ),
        (409, [{"message": "version mismatch", "errorCode": "INVALID_VERSION"}], e.RequestFailed),
        (429, "", e.Retryable),
    ],
)
def test_error_table(status, body, expected) -> None:
    err = e.error_from_response(status, body, url="https://x/services/data/v66.0/query")
    assert type(err) is expected
    assert err.status == status


def test_what_the_caller_should_do_follows_the_class() -> None:
    daily = e.error_for(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    concurrent = e.error_for(
        403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
    )
    assert not daily.retryable  # stop for the day, never sleep-retry
    assert concurrent.retryable and isinstance(concurrent, e.Retryable)
    assert isinstance(concurrent, e.ApiLimitExceeded)
    assert not e.error_for(400, "MALFORMED_QUERY", "x").retryable
    assert e.error_for(None, "SERVER_UNAVAILABLE", "x").retryable


def test_record_rejected_carries_code_message_and_fields() -> None:
    err = e.error_from_response(
        400,
        b'[{"message":"Required fields are missing: [LastName]",'
        b'"errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]',
    )
    assert isinstance(err, e.RecordRejected)
    assert (err.code, err.message, err.fields) == (
        "REQUIRED_FIELD_MISSING",
        "Required fields are missing: [LastName]",
        ("LastName",),
    )
    assert "LastName" in str(err) and "REQUIRED_FIELD_MISSING" in str(err)
    assert err.as_dict() == {
        "code": "REQUIRED_FIELD_MISSING",
        "message": "Required fields are missing: [LastName]",
        "fields": ["LastName"],
    }


def test_collection_item_errors_use_status_code_key() -> None:
    err = e.record_error({"statusCode": "DUPLICATES_DETECTED", "message": "dup", "fields": []})
    assert err == e.RecordRejected("DUPLICATES_DETECTED", "dup")
    assert not err.retryable
    rolled_back = e.record_error(
        {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "rolled back", "fields": []}
    )
    assert rolled_back.retryable


def test_unparseable_body_keeps_a_short_message() -> None:
    err = e.error_from_response(500, "x" * 2000)
    assert isinstance(err, e.Retryable)
    assert len(err.message) == 500
