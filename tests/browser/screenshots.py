"""Screenshots of the dashboard's main pages into docs/screenshots/ (README's Dashboard section).

    .venv/bin/python -m tests.browser.screenshots [--out docs/screenshots]    (or: make screenshots)

Starts the same world as the browser tests (`tests.browser.live`: both sandboxes and the service
on sockets, embedded mode), gives it something to show (two OAuth connections, a setup, a Sync
Now over a few seeded contacts, one record Constant Contact refused), and photographs each page
in Debian's headless Chromium at 1280×800 (the viewport, not the whole page, to stay small):
the main pages, a run in progress, then a second setup made through the wizard, step by step
(``wizard-*.png``, one with an error next to its field).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.browser.chromium import VIEWPORT, launch, why_not_available
from tests.browser.live import LiveService

Shot = Callable[..., None]
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Over 50 characters: written with its own call (POST /v3/contacts), which the fault refuses.
REFUSED = "a-rather-long-address-for-one-single-call@newsletter.example.org"


def stage(live: LiveService) -> int:
    """A setup with one finished Sync Now and one open sync error; its id."""
    setup_id = live.create_setup("Newsletter contacts", main_list="Newsletter")
    live.sandbox("salesforce", "POST", "/_sandbox/seed", json={"contacts": 25})
    live.sf_contact(FirstName="Ada", LastName="Refused", Email=REFUSED)
    live.sandbox(
        "constantcontact",
        "POST",
        "/_sandbox/faults",
        json={"status": 400, "path": "/v3/contacts", "method": "POST", "count": 1},
    )
    live.api("POST", f"/setups/{setup_id}/sync")
    live.wait_run(setup_id)
    return setup_id


def running(live: LiveService, page: Any, setup_id: int, shot: Shot) -> None:
    """The setup page while a Sync Now runs (Salesforce slowed down so it is caught going)."""
    live.sf_contact(FirstName="Grace", LastName="Running", Email="grace@newsletter.example.org")
    slow = {"kind": "slow", "delay": 4, "path": "/services/data", "count": 1}
    live.sandbox("salesforce", "POST", "/_sandbox/faults", json=slow)
    page.goto(f"/setups/{setup_id}")
    before = live.last_run_id(setup_id)
    page.get_by_role("button", name="Sync Now").click()
    page.locator("#run-progress[data-state=running]").wait_for()
    shot("setup-running")
    live.wait_run(setup_id, after=before)


def wizard(page: Any, shot: Shot) -> None:
    """A second setup through the wizard, photographed at each step that shows something new."""
    page.goto("/setups/new")
    page.get_by_label("Setup name").fill("Spring event")
    page.get_by_label("Salesforce connection").select_option(index=1)
    page.get_by_label("Object type").select_option("Contact")
    shot("wizard-salesforce")
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Constant Contact connection").select_option(index=1)
    page.get_by_role("button", name="Show this connection's lists").click()
    page.get_by_label("Or a new list named").fill("Spring event 2027")
    shot("wizard-constant-contact")
    page.get_by_role("button", name="Create the setup (paused)").click()
    page.get_by_role("heading", name="Setup created (paused)").wait_for()
    shot("wizard-created")
    page.get_by_role("link", name="Continue to field mapping").click()
    page.get_by_label("Mapping 1: Salesforce field", exact=True).fill("Title")
    page.get_by_label("Mapping 1: Constant Contact field", exact=True).fill("job_title")
    page.get_by_label("Mapping 2: Salesforce field", exact=True).fill("Department")
    page.get_by_label("Mapping 2: Constant Contact field", exact=True).fill("department")
    page.get_by_role("button", name="Save and continue").click()
    page.get_by_text("This step was not saved").wait_for()
    shot("wizard-field-mapping")
    page.get_by_label("Mapping 2: Salesforce field", exact=True).fill("")
    page.get_by_label("Mapping 2: Constant Contact field", exact=True).fill("")
    page.get_by_role("button", name="Save and continue").click()
    page.get_by_label("Condition 1: field", exact=True).fill("MailingState")
    page.get_by_label("Condition 1: operator", exact=True).select_option("equals")
    page.get_by_label("Condition 1: value", exact=True).fill("CA")
    page.get_by_label("Condition 2: field", exact=True).fill("Email")
    page.get_by_label("Condition 2: operator", exact=True).select_option("is_not_blank")
    page.evaluate("document.activeElement.blur()")
    page.get_by_role("heading", name="Step 4: Segmentation").evaluate("h => h.scrollIntoView()")
    shot("wizard-segmentation")
    page.get_by_role("button", name="Save and continue").click()
    page.get_by_role("button", name="Save and continue").click()  # options
    page.get_by_label("Full sync").select_option("weekly")
    page.get_by_label("Weekday").select_option("sunday")
    shot("wizard-schedule")
    page.get_by_role("button", name="Save and continue").click()
    shot("wizard-changes")
    page.get_by_role("button", name="Save and continue").click()
    shot("wizard-finish")


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with tempfile.TemporaryDirectory() as workdir:
        live = LiveService(Path(workdir)).start()
        try:
            setup_id = stage(live)
            with launch() as browser:
                context = browser.new_context(
                    base_url=live.base, viewport=VIEWPORT, ignore_https_errors=True
                )
                page = context.new_page()

                def shot(name: str, path: str | None = None) -> None:
                    if path is not None:
                        page.goto(path)
                    target = out / f"{name}.png"
                    page.screenshot(path=str(target))
                    shots.append(target)

                shot("sign-in", "/sign-in")
                page.get_by_label("Admin token").fill(live.admin_token)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("heading", name="Setups").wait_for()
                shot("setups")
                shot("setup", f"/setups/{setup_id}")
                shot("errors", f"/setups/{setup_id}/errors")
                shot("connections", "/connections")
                shot("health", "/health")
                running(live, page, setup_id, shot)
                wizard(page, shot)
                context.close()
        finally:
            live.stop()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG files")
    args = parser.parse_args(argv)
    missing = why_not_available()
    if missing:
        print(f"cannot take screenshots: {missing}", file=sys.stderr)
        return 2
    for path in take(args.out):
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
