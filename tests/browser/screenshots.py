"""Screenshots of the dashboard's main pages into docs/screenshots/ (README's Dashboard section).

    .venv/bin/python -m tests.browser.screenshots [--out docs/screenshots]    (or: make screenshots)

Starts the same world as the browser tests (`tests.browser.live`: both sandboxes and the service
on sockets, embedded mode), gives it something to show (two OAuth connections, a setup, a Sync
Now over a few seeded contacts, one record Constant Contact refused), and photographs each page
in Debian's headless Chromium at 1280×800 (the viewport, not the whole page, to stay small).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.browser.chromium import VIEWPORT, launch, why_not_available
from tests.browser.live import LiveService

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
