"""The dashboard end to end in headless Chromium: sign-in, OAuth connections through the
sandboxes' consent pages, Sync Now until the run ends, a sync error retried, health, CSRF.

Every page a test reaches is checked with axe (`assert_accessible`). The service and browser are
shared by the whole file (see conftest.py); each test has its own cookies.
"""

from __future__ import annotations

import re
from typing import Any

from tests.browser.a11y import assert_accessible
from tests.browser.conftest import browser_tests, sign_in
from tests.browser.live import LiveService

pytestmark = browser_tests


def expect(page: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(page)


def test_sign_in_refuses_a_wrong_token_then_lets_the_right_one_in_and_out(
    page: Any, live: LiveService
) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert_accessible(page)

    sign_in(page, "not-the-token")
    expect(page.get_by_role("alert")).to_have_text("That admin token is not the right one.")
    expect(page.get_by_role("link", name="Setups")).to_have_count(0)
    assert_accessible(page)

    sign_in(page, live.admin_token)
    expect(page.get_by_role("heading", name="Setups")).to_be_visible()
    assert_accessible(page)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto("/health")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_connect_both_vendors_through_their_consent_pages(
    signed_in: Any, live: LiveService
) -> None:
    page = signed_in
    page.get_by_role("link", name="Connections").click()
    expect(page.get_by_role("heading", name="Connections")).to_be_visible()
    assert_accessible(page)
    for button, vendor, host in (
        ("Connect Salesforce", "Salesforce", live.sf_url),
        ("Connect Constant Contact", "Constant Contact", live.cc_url),
    ):
        page.get_by_role("button", name=button).click()
        # The vendor's own page, on the sandbox's host.
        consent = f"Allow access to your {vendor} sandbox account?"
        expect(page.get_by_role("heading", name=consent)).to_be_visible()
        assert page.url.startswith(host + "/"), page.url
        page.get_by_role("button", name="Allow").click()
        expect(page).to_have_url(re.compile(r"/connections\?connected=\d+"))
        # "Connected: stored as connection N", or "... already connected: connection N ..."
        # when the setup fixture connected the same sandbox org first.
        notice = page.get_by_role("status").filter(has_text=re.compile(r"connection \d+"))
        expect(notice).to_be_visible()
        connection_id = re.search(r"connection (\d+)", notice.inner_text())
        assert connection_id is not None
        first = page.get_by_role("cell", name=re.compile(rf"^{connection_id[1]}: "))
        row = page.get_by_role("row").filter(has=first)
        expect(row.get_by_role("cell", name=vendor, exact=True)).to_be_visible()
        expect(row.get_by_text("active", exact=True)).to_be_visible()
        assert_accessible(page)


def test_denying_consent_connects_nothing(signed_in: Any, live: LiveService) -> None:
    page = signed_in
    before = len(live.api("GET", "/connections")["items"])
    page.goto("/connections")
    page.get_by_role("button", name="Connect Constant Contact").click()
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("heading", name="Could not connect")).to_be_visible()
    expect(page.get_by_text("did not grant access: access_denied")).to_be_visible()
    assert len(live.api("GET", "/connections")["items"]) == before


def test_sync_now_runs_until_the_run_finishes(
    signed_in: Any, live: LiveService, setup_id: int
) -> None:
    page = signed_in
    for i in range(3):
        live.sf_contact(LastName=f"Browser{i}", Email=f"browser{i}@example.org")
    before = live.last_run_id(setup_id)
    page.get_by_role("link", name="Browser setup").click()
    expect(page.get_by_role("heading", name="Browser setup")).to_be_visible()
    assert_accessible(page)

    page.get_by_role("button", name="Sync Now").click()
    expect(page.get_by_text(re.compile(r"Sync Now queued \(job sync-now-"))).to_be_visible()
    run = live.wait_run(setup_id, after=before)
    page.reload()
    expect(page.get_by_text("Nothing is running.")).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=str(run["id"])))
    expect(row.get_by_text("succeeded")).to_be_visible()
    assert run["status"] == "succeeded", run
    assert_accessible(page)

    page.get_by_role("link", name="Setups").click()
    expect(page.get_by_text(f"sync_now run {run['id']}")).to_be_visible()
    assert_accessible(page)


def test_pause_resume_and_the_full_sync_reset_page(
    signed_in: Any, live: LiveService, setup_id: int
) -> None:
    page = signed_in
    page.goto(f"/setups/{setup_id}")
    page.get_by_label("Reason (optional)").fill("quiet hours")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("Paused: changes keep collecting")).to_be_visible()
    expect(page.get_by_text("quiet hours")).to_be_visible()
    assert live.status(setup_id)["paused"]
    assert_accessible(page)
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text("Resumed: the changes that waited are being synced.")).to_be_visible()
    assert not live.status(setup_id)["paused"]

    page.get_by_role("link", name="Full Sync with reset…").click()
    expect(page.get_by_role("heading", name=re.compile("^Full Sync with reset"))).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("button", name="Sync Now")).to_be_visible()


def test_a_record_constant_contact_refuses_is_shown_and_retried_from_the_page(
    signed_in: Any, live: LiveService, setup_id: int
) -> None:
    page = signed_in
    # Over 50 characters, so it is written on its own (POST /v3/contacts), not in an import;
    # the Constant Contact sandbox refuses that one call with a 400.
    email = "a-rather-long-address-for-one-call@browser.example.org"
    live.sf_contact(LastName="Refused", Email=email)
    live.sandbox(
        "constantcontact",
        "POST",
        "/_sandbox/faults",
        json={"status": 400, "path": "/v3/contacts", "method": "POST", "count": 1},
    )
    before = live.last_run_id(setup_id)
    page.goto(f"/setups/{setup_id}")
    page.get_by_role("button", name="Sync Now").click()
    live.wait_run(setup_id, after=before)

    page.reload()
    page.get_by_role("link", name=re.compile(r"Sync errors: 1 unresolved")).click()
    expect(page.get_by_role("heading", name=re.compile("Sync errors of"))).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Injected fault: bad request.")
    expect(row).to_have_count(1)
    expect(row.get_by_text("open (1 attempt)")).to_be_visible()
    assert_accessible(page)

    retried = live.last_run_id(setup_id)
    row.get_by_role("button", name=re.compile(r"^Retry error \d+$")).click()
    expect(page.get_by_text("Retrying 1 error(s)")).to_be_visible()
    live.wait_run(setup_id, after=retried)
    page.reload()
    expect(page.get_by_text("No unresolved sync errors.")).to_be_visible()
    assert_accessible(page)
    assert live.sandbox("constantcontact", "GET", "/_sandbox/contacts", params={"email": email})


def test_health_page_renders_every_check(signed_in: Any) -> None:
    page = signed_in
    page.get_by_role("link", name="Health").click()
    expect(page.get_by_role("heading", name="Health", exact=True)).to_be_visible()
    for check in ("Database", "Job queues", "Workers", "Connections", "Setups"):
        expect(page.get_by_role("cell", name=check, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Failed jobs")).to_be_visible()
    assert_accessible(page)


def test_a_form_with_a_tampered_csrf_token_is_refused(
    signed_in: Any, live: LiveService, setup_id: int
) -> None:
    page = signed_in
    before = live.last_run_id(setup_id)
    page.goto(f"/setups/{setup_id}")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Sync Now"))
    form.locator("input[name=csrf_token]").evaluate("el => { el.value = 'tampered'; }")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.get_by_role("button", name="Sync Now").click()
    assert answer.value.status == 400
    expect(page.get_by_role("heading", name="Form expired")).to_be_visible()
    assert_accessible(page)
    assert live.last_run_id(setup_id) == before
    assert not live.status(setup_id)["pending"]
