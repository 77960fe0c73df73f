"""Email identity, validity and Constant Contact's role addresses (DESIGN §5a)."""

import pytest

from middleware.sync.emails import is_role_address, is_valid_email, mask_email, normalise_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("  Ann@Example.COM ", "ann@example.com", id="identity-trimmed-lower-cased"),
        pytest.param("", "", id="blank-is-blank"),
        pytest.param("   ", "", id="spaces-are-blank"),
        pytest.param(None, "", id="null-is-blank"),
        pytest.param(42, "", id="non-text-is-blank"),
    ],
)
def test_normalise_email(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("email", "valid"),
    [
        pytest.param("ann@example.com", True, id="plain"),
        pytest.param("ann.lee+news@mail.example.co.uk", True, id="tag-and-subdomain"),
        pytest.param("ann@example", False, id="domain-without-dot"),
        pytest.param("ann.example.com", False, id="no-at"),
        pytest.param("ann lee@example.com", False, id="space"),
        pytest.param("ann@@example.com", False, id="two-ats"),
        pytest.param(".ann@example.com", False, id="leading-dot"),
        pytest.param("ann..lee@example.com", False, id="double-dot"),
        pytest.param("a" * 68 + "@example.com", True, id="80-chars-is-cc-maximum"),
        pytest.param("a" * 69 + "@example.com", False, id="over-80-chars-cc-rejects"),
        pytest.param("", False, id="blank"),
    ],
)
def test_is_valid_email(email, valid):
    assert is_valid_email(email) is valid


@pytest.mark.parametrize(
    ("email", "role"),
    [
        pytest.param("sales@example.com", True, id="published-role-sales"),
        pytest.param("Sales+eu@example.com", True, id="role-ignores-case-and-plus-tag"),
        pytest.param("WEBMASTER@example.com", True, id="role-ignores-case"),
        pytest.param("investorrelations@example.com", True, id="published-role-long"),
        pytest.param("www@example.com", True, id="published-role-www"),
        pytest.param("info@example.com", False, id="info-is-not-on-cc-list"),
        pytest.param("allison@example.com", False, id="allison-contains-all-but-is-not-all"),
        pytest.param("salesteam@example.com", False, id="role-word-must-be-whole-local-part"),
        pytest.param("nospamplease@example.com", True, id="spam-anywhere-in-local-part"),
        pytest.param("ann+SPAM@example.com", True, id="spam-in-tag-counts"),
        pytest.param("ann@spamcorp.com", False, id="spam-in-domain-does-not-count"),
        pytest.param("club@googlegroups.com", True, id="googlegroups-domain"),
        pytest.param("club@YahooGroups.com", True, id="yahoogroups-domain-any-case"),
        pytest.param("x-123@craigslist.org", True, id="craigslist-domain"),
        pytest.param("ann@groups.google.com", False, id="other-google-domain-allowed"),
    ],
)
def test_is_role_address(email, role):
    assert is_role_address(email) is role


def test_mask_email_hides_local_part():
    assert mask_email("annabel@example.com") == "a***@example.com"
    assert "annabel" not in mask_email("annabel@example.com")
    assert mask_email("garbage") == "***"
