"""`GET /v3/account/summary` on the Constant Contact sandbox, checked against the V3 spec."""

from __future__ import annotations

from tests.sandbox.constantcontact.conftest import CC


def test_the_summary_names_the_account(cc: CC) -> None:
    body = cc.get("/v3/account/summary").json()
    assert body["encoded_account_id"] == "a07e1ldsbx01"
    assert body["organization_name"] and body["contact_email"]
    assert "physical_address" not in body and "company_logo" not in body


def test_extra_fields_add_the_address_and_the_logo(cc: CC) -> None:
    body = cc.get(
        "/v3/account/summary", params={"extra_fields": "physical_address,company_logo"}
    ).json()
    assert body["physical_address"]["country_code"] == "US"
    assert body["company_logo"]["url"].startswith("https://")


def test_an_unknown_extra_field_is_a_400(cc: CC) -> None:
    with cc.invalid():
        answer = cc.get("/v3/account/summary", params={"extra_fields": "bank_account"})
    assert answer.status_code == 400


def test_it_needs_a_token(anon: CC) -> None:
    with anon.invalid():  # no Authorization header: the spec requires one
        assert anon.get("/v3/account/summary").status_code == 401
