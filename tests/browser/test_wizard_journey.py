"""A newcomer's whole journey in headless Chromium, as issue 14's "done when" describes it.

Sign in; connect Salesforce and Constant Contact through the Connections page and the sandboxes'
consent pages; **New setup** through every wizard step (a new main list, an extra field mapped
with the pickers after unknown fields of both vendors are refused next to them, a filter
condition, an option changed, a weekly schedule refused next to its weekday field then accepted,
the webhook door with a new secret shown once); Finish; Sync Now and the live progress reaching
its end without a reload; the records checked in the Constant Contact sandbox;
a record Constant Contact refuses, found on the errors page with its record link, filtered,
retried and resolved; the setup edited through the wizard again and deleted after its
confirmation. Every page reached is checked with axe (`assert_accessible`).

It shares the package's `live` service with test_dashboard.py: its setup is a *Lead* setup with
names of its own, so the other tests' Contact setup sees none of its records.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from tests.browser.a11y import assert_accessible
from tests.browser.conftest import browser_tests
from tests.browser.live import LiveError, LiveService

pytestmark = browser_tests

SETUP = "Journey web leads"
LIST = "Journey web leads list"
# Over 50 characters: written with its own call (POST /v3/contacts), which the fault refuses.
REFUSED = "a-rather-long-address-for-the-journey-refusal@journey.example.org"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(target)


def connect(page: Any, button: str, vendor: str) -> int:
    """Connect a vendor from the Connections page through its sandbox's consent page; the id."""
    page.get_by_role("link", name="Connections").click()
    page.get_by_role("button", name=button).click()
    expect(
        page.get_by_role("heading", name=f"Allow access to your {vendor} sandbox account?")
    ).to_be_visible()
    page.get_by_role("button", name="Allow").click()
    expect(page).to_have_url(re.compile(r"/connections\?connected=\d+"))
    notice = page.get_by_role("status").filter(has_text=re.compile(r"connection \d+"))
    found = re.search(r"connection (\d+)", notice.inner_text())
    assert found is not None
    return int(found[1])


def save(page: Any, next_step: str) -> None:
    page.get_by_role("button", name="Save and continue").click()
    expect(page).to_have_url(re.compile(rf"/edit/{next_step}$"))
    assert_accessible(page)


def lead(live: LiveService, **values: Any) -> str:
    body = {"Company": "Journey Ltd", "LeadSource": "Web", **values}
    return str(live.sandbox("salesforce", "POST", "/_sandbox/records/Lead", json=body)["id"])


def cc_contact(live: LiveService, email: str) -> dict[str, Any] | None:
    """The contact as the Constant Contact sandbox holds it (with its list names), or None."""
    try:
        params = {"email": email}
        return dict(live.sandbox("constantcontact", "GET", "/_sandbox/contacts", params=params))
    except LiveError as exc:
        if " 404 " in str(exc):
            return None
        raise


def test_a_newcomer_connects_creates_a_setup_in_the_wizard_and_watches_it_sync(
    signed_in: Any, live: LiveService
) -> None:
    page = signed_in
    tag = secrets.token_hex(3)
    web = [f"journey-{tag}-{i}@example.org" for i in range(3)]
    phoned = f"journey-{tag}-phone@example.org"
    for i, email in enumerate(web):
        lead(live, LastName=f"Journey{i}", Email=email, Title=f"Title {i}")
    lead(live, LastName="Phoned", Email=phoned, LeadSource="Phone Inquiry")

    # --- connect both vendors through their consent pages ----------------------------------------
    sf = connect(page, "Connect Salesforce", "Salesforce")
    assert_accessible(page)
    cc = connect(page, "Connect Constant Contact", "Constant Contact")

    # --- step 1: Salesforce -----------------------------------------------------------------------
    page.get_by_role("link", name="Setups").click()
    page.get_by_role("link", name="New setup").click()
    expect(page.get_by_role("heading", name="Step 1: Salesforce")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Setup name").fill(SETUP)
    page.get_by_label("Salesforce connection").select_option(str(sf))
    page.get_by_label("Object type").select_option("Lead")
    page.get_by_role("button", name="Continue").click()

    # --- step 2: Constant Contact, the account's lists, a new main list ---------------------------
    expect(
        page.get_by_role("heading", name=re.compile("^Step 2: Constant Contact"))
    ).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Constant Contact connection").select_option(str(cc))
    page.get_by_role("button", name="Show this connection's lists").click()
    expect(page.get_by_label("Main list", exact=True)).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Or a new list named").fill(LIST)
    page.get_by_role("button", name="Create the setup (paused)").click()
    expect(page.get_by_role("heading", name="Setup created (paused)")).to_be_visible()
    secret = page.locator("#webhook-secret").inner_text()
    assert len(secret) >= 20, secret
    expect(page.locator("#webhook-url")).to_contain_text("/webhooks/salesforce/")
    assert_accessible(page)
    page.get_by_role("link", name="Continue to field mapping").click()
    found = re.search(r"/setups/(\d+)/edit/fields$", page.url)
    assert found is not None, page.url
    setup_id = int(found[1])

    # --- step 3: field mapping with the pickers (datalists of both vendors' fields) ---------------
    assert_accessible(page)
    sf_field = page.get_by_label("Mapping 1: Salesforce field", exact=True)
    assert sf_field.get_attribute("list") == "sf-fields"
    expect(page.locator("#sf-fields option[value=Title]")).to_have_count(1)
    expect(page.locator("#cc-fields option[value=job_title]")).to_have_count(1)
    cc_field = page.get_by_label("Mapping 1: Constant Contact field", exact=True)
    sf_field.fill("Titel")
    # Each refused next to its field (the schema's first, then the org's): the error describes
    # the field, which is marked invalid.
    for box, typed, words in (
        (cc_field, "job_titel", "'job_titel' is not a Constant Contact contact field"),
        (sf_field, "Titel", "Lead has no field Titel"),
    ):
        cc_field.fill("job_titel" if box is cc_field else "job_title")
        page.get_by_role("button", name="Save and continue").click()
        expect(page.get_by_role("heading", name="This step was not saved")).to_be_visible()
        expect(box).to_have_value(typed)
        expect(box).to_have_attribute("aria-invalid", "true")
        error = page.locator(f"#{box.get_attribute('id')}-error")
        expect(error).to_contain_text(words)
        assert error.get_attribute("id") in (box.get_attribute("aria-describedby") or "")
        assert_accessible(page)
    sf_field.fill("Title")
    save(page, "segments")

    # --- step 4: a filter condition in the builder ------------------------------------------------
    page.get_by_label("Condition 1: field", exact=True).fill("LeadSource")
    page.get_by_label("Condition 1: operator", exact=True).select_option("equals")
    page.get_by_label("Condition 1: value", exact=True).fill("Web")
    save(page, "options")

    # --- step 5: options --------------------------------------------------------------------------
    page.get_by_label("Unsubscribe on Salesforce opt out").check()
    save(page, "schedule")

    # --- step 6: schedule: a weekly Full Sync needs a weekday, said next to it --------------------
    page.get_by_label("Full sync").select_option("weekly")
    page.get_by_role("button", name="Save and continue").click()
    weekday = page.get_by_label("Weekday")
    expect(weekday).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#{weekday.get_attribute('id')}-error")).to_contain_text("weekday")
    assert_accessible(page)
    weekday.select_option("sunday")
    save(page, "changes")

    # --- step 7: the doors; the webhook door and a new secret shown once --------------------------
    webhook_door = page.locator("#door-webhook")
    webhook_door.check()
    page.get_by_label("How callouts prove who they are").select_option("shared_secret")
    page.get_by_role("button", name="Make a new secret").click()
    expect(page.get_by_role("heading", name="New webhook secret: copy it now")).to_be_visible()
    new_secret = page.locator("#webhook-secret").inner_text()
    assert new_secret and new_secret != secret
    assert_accessible(page)
    save(page, "finish")

    # --- finish, Sync Now, the live progress ------------------------------------------------------
    expect(page.get_by_text("1 extra mapping(s); a filter; Full Sync weekly")).to_be_visible()
    page.get_by_role("button", name="Finish and start syncing").click()
    expect(page.get_by_text("The setup is running.")).to_be_visible()
    assert not live.status(setup_id)["paused"]
    assert_accessible(page)

    states: list[str] = []
    page.on(
        "console",
        lambda m: (
            states.append(m.text[len("run-progress:") :])
            if m.text.startswith("run-progress:")
            else None
        ),
    )
    page.add_init_script(_WATCH)
    before = live.last_run_id(setup_id)
    page.get_by_role("button", name="Sync Now").click()
    expect(page.get_by_text(re.compile(r"Sync Now queued \(job sync-now-"))).to_be_visible()
    # No reload by the test: the page's script follows the run, then reloads once by itself.
    row = page.locator("table tbody tr").filter(
        has=page.get_by_role("cell", name=re.compile("^\\d+$"))
    )
    expect(page.get_by_text("succeeded").first).to_be_visible(timeout=30_000)
    run = live.wait_run(setup_id, after=before)
    assert run["status"] == "succeeded", run
    expect(row.filter(has_text="succeeded").first).to_be_visible()
    assert "finished" in states, states
    expect(page.locator("#run-progress")).to_have_attribute("data-state", "idle")
    expect(page.locator("#run-progress-text")).to_contain_text(f"The last run ({run['id']})")
    assert_accessible(page)

    # --- the records really reached Constant Contact, filtered and mapped -------------------------
    for i, email in enumerate(web):
        contact = cc_contact(live, email)
        assert contact is not None, email
        assert contact.get("job_title") == f"Title {i}", contact
        assert LIST in contact["list_names"], contact
    assert cc_contact(live, phoned) is None, "the filter keeps LeadSource = Web only"

    # --- a record Constant Contact refuses: seen, filtered, retried, resolved ---------------------
    refused_id = lead(live, LastName="Refused", Email=REFUSED)
    live.sandbox(
        "constantcontact",
        "POST",
        "/_sandbox/faults",
        json={"status": 400, "path": "/v3/contacts", "method": "POST", "count": 1},
    )
    before = live.last_run_id(setup_id)
    page.get_by_role("button", name="Sync Now").click()
    live.wait_run(setup_id, after=before)
    page.get_by_role("link", name=re.compile(r"Sync errors: 1 unresolved")).click()
    expect(page.get_by_role("heading", name=re.compile("Sync errors of"))).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Injected fault: bad request.")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("@journey.example.org")  # the address masked, its domain shown
    link = row.get_by_role("link", name=re.compile(rf"Salesforce {refused_id}"))
    expect(link).to_have_attribute("href", re.compile(rf"/lightning/r/(Lead/)?{refused_id}/view$"))
    assert_accessible(page)
    page.get_by_label("Search").fill("nobody-like-this")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#errors-summary")).to_contain_text("0 ")
    page.get_by_label("Search").fill("journey.example.org")
    page.get_by_label("Direction").select_option(index=1)
    page.get_by_role("button", name="Filter").click()
    expect(row).to_have_count(1)
    assert_accessible(page)
    retried = live.last_run_id(setup_id)
    row.get_by_role("button", name=re.compile(r"^Retry error \d+$")).click()
    expect(page.get_by_text("Retrying 1 error(s)")).to_be_visible()
    live.wait_run(setup_id, after=retried)
    page.get_by_label("Status").select_option("resolved")
    page.get_by_role("button", name="Filter").click()
    expect(
        row.get_by_role("cell", name=re.compile(r"^resolved \(\d+ attempts?\)$"))
    ).to_be_visible()
    assert cc_contact(live, REFUSED) is not None

    # --- edit through the wizard again, then delete with confirmation -----------------------------
    page.goto(f"/setups/{setup_id}")
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page.get_by_role("heading", name="Step 1: Salesforce")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Setup name").fill(f"{SETUP} (edited)")
    save(page, "constant-contact")
    expect(page.get_by_label("Main list", exact=True)).to_have_value(LIST)
    save(page, "fields")
    expect(page.get_by_label("Mapping 1: Salesforce field", exact=True)).to_have_value("Title")
    page.goto(f"/setups/{setup_id}")
    expect(page.get_by_role("heading", name=f"{SETUP} (edited)")).to_be_visible()
    page.get_by_role("link", name=re.compile("^Delete")).click()
    expect(page.get_by_role("heading", name=f"Delete “{SETUP} (edited)”?")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("button", name="Yes, delete this setup").click()
    expect(page.get_by_role("heading", name="Setups")).to_be_visible()
    expect(page.get_by_role("link", name=f"{SETUP} (edited)")).to_have_count(0)
    assert all(s["id"] != setup_id for s in live.api("GET", "/setups")["items"])


# Reports each change of the progress box's state on the console (the page's CSP forbids the
# string evaluation `wait_for_function` needs; a console message is read from outside).
_WATCH = """document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("run-progress");
  if (box) new MutationObserver(() => console.log("run-progress:" + box.dataset.state))
    .observe(box, {attributes: true, attributeFilter: ["data-state"]});
});"""
