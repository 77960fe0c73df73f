"""Dashboard: the sync errors page's record links, filters and narrowed retry / resolve."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from middleware.services import errors as error_services
from middleware.store import errors as error_repo
from tests.middleware.web.test_admin import Api, api, connected, new_setup
from tests.middleware.web.test_dashboard import post, text, web

__all__ = ["api", "connected", "web"]

SF_ID = "003000000000001AAA"


def _error(api: Api, setup_id: int, **fields: Any) -> int:
    error = {
        "direction": "sf_to_cc",
        "vendor": "constantcontact",
        "code": "invalid_email",
        "message": "The email address is not valid.",
        "email": "a@example.com",
        **fields,
    }
    with api.store.transaction() as session:
        return error_repo.record_errors(session, setup_id, [error])[0].id


def _page(web: FlaskClient, setup_id: int, query: str = "") -> str:
    return text(web.get(f"/setups/{setup_id}/errors{query}"))


def _rows(page: str) -> str:
    return page.split("<tbody>")[1] if "<tbody>" in page else ""


def test_links_to_the_record_and_the_contact(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    _error(api, setup["id"], sf_id=SF_ID, cc_contact_id="a1b2c3d4-0000-1111-2222-333344445555")
    page = _page(web, setup["id"])
    # The connection's instance URL (make_connection) and Lightning's record page.
    assert f'href="https://example.my.salesforce.com/lightning/r/{SF_ID}/view"' in page
    assert (
        'href="https://app.constantcontact.com/pages/contacts/ui#contact/'
        'a1b2c3d4-0000-1111-2222-333344445555"'
    ) in page
    assert 'rel="noopener noreferrer"' in page and "(opens in a new tab)" in page


def test_no_link_where_the_record_is_not_known(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    _error(api, setup["id"], sf_id="not an id", direction="cc_to_sf", vendor="salesforce")
    page = _page(web, setup["id"])
    assert "Salesforce not an id" in page and "/lightning/r/" not in page
    assert 'class="cc-link"' not in page


def test_no_salesforce_link_without_a_connection(api: Api) -> None:
    setup = new_setup(api)
    items = [{"sf_id": SF_ID, "cc_contact_id": None}]
    with api.store.transaction() as session:
        error_services.record_links(session, setup["id"], items)
    assert items[0]["salesforce_url"] is None and items[0]["constantcontact_url"] is None


def test_filters_by_direction_status_and_search(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    sid = setup["id"]
    _error(api, sid, sf_id=SF_ID, email="ann@example.com", message="Ann refused")
    _error(
        api,
        sid,
        direction="cc_to_sf",
        vendor="salesforce",
        code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
        email="bob@example.com",
        message="Bob refused",
        cc_contact_id="c-bob",
    )
    done = _error(api, sid, email="cy@example.com", message="Cy refused", sf_id=SF_ID[:-1] + "B")
    with api.store.transaction() as session:
        error_repo.resolve_errors(session, sid, ids=[done])

    page = _page(web, sid)
    assert "Ann refused" in _rows(page) and "Bob refused" in _rows(page)
    assert "Cy refused" not in _rows(page)  # resolved: hidden unless asked
    assert '<label for="status">Status</label>' in page and '<label for="q">Search</label>' in page

    rows = _rows(_page(web, sid, "?direction=cc_to_sf"))
    assert "Bob refused" in rows and "Ann refused" not in rows
    assert "Constant Contact → Salesforce" in rows

    page = _page(web, sid, "?q=ANN+ref")
    assert "Ann refused" in _rows(page) and "Bob refused" not in _rows(page)
    assert "1 unresolved (open or retrying) matching “ANN ref”." in page

    assert "Bob refused" in _rows(_page(web, sid, "?q=c-bob"))
    assert "Ann refused" not in _rows(_page(web, sid, "?q=%25"))  # no wildcards

    page = _page(web, sid, "?status=resolved")
    assert "Cy refused" in _rows(page) and "Ann refused" not in _rows(page)
    assert 'id="retry-all"' not in page and "choose that status" in page

    page = _page(web, sid, "?status=all&direction=bogus")
    assert all(f"{n} refused" in _rows(page) for n in ("Ann", "Bob", "Cy"))


def test_retry_all_and_resolve_all_follow_the_filters(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    sid = setup["id"]
    _error(api, sid, sf_id=SF_ID, message="Ann refused")
    _error(api, sid, direction="cc_to_sf", vendor="salesforce", message="Bob refused")
    page = _page(web, sid, "?direction=cc_to_sf")
    assert "Retry all 1 from Constant Contact → Salesforce" in page
    page = text(post(web, f"/setups/{sid}/errors/resolve", direction="cc_to_sf"))
    assert "Marked 1 error(s) resolved" in page
    # Back on the filtered page, which now has nothing left.
    assert "No unresolved sync errors from Constant Contact → Salesforce." in page
    page = text(post(web, f"/setups/{sid}/errors/retry", q="Ann"))
    assert "Retrying 1 error(s)" in page and "Ann refused" in _rows(page)


def test_the_admin_api_filters_the_same_way(api: Api, connected: dict[str, int]) -> None:
    setup = new_setup(api, **connected)
    sid = setup["id"]
    _error(api, sid, sf_id=SF_ID, message="Ann refused")
    _error(api, sid, direction="cc_to_sf", vendor="salesforce", message="Bob refused")
    listed = api.get(f"/setups/{sid}/errors?direction=cc_to_sf").json
    assert [e["message"] for e in listed["items"]] == ["Bob refused"]
    listed = api.get(f"/setups/{sid}/errors?search=ann").json
    assert [e["message"] for e in listed["items"]] == ["Ann refused"]
    assert api.get(f"/setups/{sid}/errors?direction=sideways").status_code == 400
    resolved = api.post(f"/setups/{sid}/errors/resolve", {"all": True, "search": "Bob"}).json
    assert resolved == {"resolved": 1}
    refused = api.post(f"/setups/{sid}/errors/resolve", {"ids": [1], "direction": "cc_to_sf"})
    assert refused.status_code in (400, 422)
