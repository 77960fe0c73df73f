"""Both vendors' status tables mapped into the one taxonomy, one row per answer, without HTTP."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import pytest

from middleware import vendor_errors
from middleware.constantcontact import errors as cc
from middleware.salesforce import errors as sf
from middleware.vendor_errors import Kind, kind_of

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)

RETRY, REAUTH, RECORD, QUOTA, FAILED = (
    Kind.RETRY_LATER,
    Kind.NEEDS_REAUTH,
    Kind.RECORD_REJECTED,
    Kind.QUOTA_PAUSE,
    Kind.FAILED,
)


@pytest.mark.parametrize(
    ("status", "error_key", "path", "kind"),
    [
        (400, "contacts.api.validation.error", "/contacts", RECORD),
        (401, "unauthorized", "/contacts", REAUTH),  # what survives the client's one refresh
        (403, "forbidden", "/contacts", REAUTH),  # scope, privilege or a deactivated app
        (404, "", "/contacts/x", RECORD),
        (405, "", "/contacts", RECORD),
        (409, "contacts.api.conflict", "/contacts", RECORD),
        (415, "", "/contacts", RECORD),
        (418, "", "/contacts", RECORD),  # any other 4xx is about the request
        (429, "throttled", "/contacts", RETRY),
        (429, "quota_exceeded", "/contacts", QUOTA),
        (429, "", "/activities/contacts_json_import", RETRY),
        (500, "", "/contacts", RETRY),
        (502, "", "/contacts", RETRY),
        (503, "", "/contacts", RETRY),
        (504, "", "/contacts", RETRY),
        (599, "", "/contacts", RETRY),
    ],
)
def test_constant_contact_table_maps_into_the_taxonomy(status, error_key, path, kind) -> None:
    body = [{"error_key": error_key, "error_message": "x"}] if error_key else None
    err = cc.error_for(status, body, now=NOW, path=path)
    assert kind_of(err) is kind
    assert kind_of(cc.error_class_for(status, error_key, path)) is kind


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (401, None, "", REAUTH),  # what survives the client's one refresh
        (401, "INVALID_SESSION_ID", "Session expired", REAUTH),
        (400, "invalid_grant", "expired access/refresh token", REAUTH),
        (400, "inactive_user", "user is inactive", REAUTH),
        (400, "inactive_org", "org is inactive", REAUTH),
        (400, "invalid_client", "invalid client credentials", REAUTH),
        (400, "redirect_uri_mismatch", "x", REAUTH),
        (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", QUOTA),
        (403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.", RETRY),
        (500, "UNKNOWN_EXCEPTION", "boom", RETRY),
        (502, None, "<html>Bad gateway</html>", RETRY),
        (503, "SERVER_UNAVAILABLE", "down", RETRY),
        (400, "UNABLE_TO_LOCK_ROW", "locked", RETRY),
        (408, None, "timeout", RETRY),
        (429, None, "slow down", RETRY),
        (400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", RECORD),
        (400, "DUPLICATES_DETECTED", "Use one of these records?", RECORD),
        (400, "CANNOT_UPDATE_CONVERTED_LEAD", "converted", RECORD),
        (404, "NOT_FOUND", "The requested resource does not exist", RECORD),
        (300, None, "several records", RECORD),
        (400, "MALFORMED_QUERY", "unexpected token", FAILED),
        (400, "INVALID_FIELD", "No such column", FAILED),
        (403, "INSUFFICIENT_ACCESS", "no access", FAILED),
        (400, "SOMETHING_NEW", "?", FAILED),
    ],
)
def test_salesforce_table_maps_into_the_taxonomy(status, code, message, kind) -> None:
    assert kind_of(sf.error_for(status, code, message)) is kind
    assert kind_of(sf.error_class(status, code, message)) is kind


def _vendor_classes(module: object) -> list[type[vendor_errors.VendorError]]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, vendor_errors.VendorError) and cls.__module__ == module.__name__  # type: ignore[attr-defined]
    ]


@pytest.mark.parametrize("module", [cc, sf], ids=["constantcontact", "salesforce"])
def test_every_vendor_class_is_one_kind_and_its_flags_agree(module) -> None:
    classes = _vendor_classes(module)
    assert len(classes) > 8
    for cls in classes:
        kind = kind_of(cls)
        base = {
            RETRY: vendor_errors.RetryLater,
            REAUTH: vendor_errors.NeedsReauth,
            RECORD: vendor_errors.RecordRejected,
            QUOTA: vendor_errors.QuotaPause,
            FAILED: vendor_errors.VendorError,
        }[kind]
        assert issubclass(cls, base), cls
        if kind is RETRY:
            assert cls.retryable is True, cls
        if kind is REAUTH:
            assert cls.needs_attention is True, cls


def test_shared_kinds_catch_either_vendor() -> None:
    with pytest.raises(vendor_errors.NeedsReauth):
        raise cc.AuthRevoked("refresh token refused")
    with pytest.raises(vendor_errors.NeedsReauth):
        raise sf.OAuthFailed("refresh refused")
    with pytest.raises(vendor_errors.RecordRejected):
        raise sf.RecordRejected("DUPLICATE_VALUE", "duplicate", ["Email"])
    quota = cc.error_for(429, [{"error_key": "quota_exceeded"}], now=NOW)
    assert isinstance(quota, vendor_errors.QuotaPause)
    assert quota.resume_at == datetime(2026, 3, 15, tzinfo=UTC)
    assert kind_of(ValueError("not a vendor's")) is FAILED
