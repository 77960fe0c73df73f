"""Browser tests: the dashboard in a real headless Chromium against the running service.

Fixtures, from the widest:

- ``live`` (package): both sandboxes and the service on sockets (`tests.browser.live.LiveService`,
  embedded mode: SQLite, in-process worker, no Redis), one for every test in this folder, stopped
  after the last one (its threads do not outlive the folder's tests).
- ``browser`` (package): Debian's Chromium (``/usr/bin/chromium``, or ``CHROMIUM_PATH``) driven by
  Playwright; Playwright's own browser download is never used.
- ``page`` (per test): a fresh browser context (no cookies) at 1280×800 whose relative URLs are
  the service's (``page.goto("/health")``); it accepts the Salesforce sandbox's own CA.
- ``signed_in`` (per test): ``page`` after signing in through the sign-in form.
- ``setup_id`` (package): one setup made through the admin API over two OAuth-made connections,
  for the pages of a setup (until the wizard makes one in the browser).

Tests in this folder carry ``pytestmark = browser_tests`` (below): marked ``browser`` and skipped,
with the reason, when Chromium or Playwright is missing; the summary then says so in one line.
Check each page reached with ``tests.browser.a11y.assert_accessible(page)``.

A journey that makes its own setup (the wizard) needs only ``signed_in`` and ``live``: connect
through the Connections page or ``live.connect(vendor, label)`` (a sandbox is one org / account,
so connecting again reuses the connection), seed records with ``live.sf_contact(...)`` or
``live.sandbox("salesforce", "POST", "/_sandbox/seed", json=...)``, click through the pages, read
the new setup's id from the page URL, then ``live.wait_run(setup_id, after=0)`` for its first run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.a11y import CHECKED, FINDINGS
from tests.browser.chromium import CHROMIUM, VIEWPORT, launch, why_not_available
from tests.browser.live import LiveService

SKIP_REASON = why_not_available()
browser_tests = [
    pytest.mark.browser,
    pytest.mark.skipif(SKIP_REASON is not None, reason=f"browser tests: {SKIP_REASON}"),
]
_started = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line saying whether the browser tests ran, so `make test` tells it plainly."""
    ran = [
        r
        for key in ("passed", "failed", "error")
        for r in terminalreporter.stats.get(key, [])
        if "tests/browser/" in getattr(r, "nodeid", "") and getattr(r, "when", "") == "call"
    ]
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if "tests/browser/" in getattr(r, "nodeid", "")
    ]
    if SKIP_REASON is not None and skipped:
        terminalreporter.write_line(
            f"browser tests: skipped, {SKIP_REASON}", yellow=True, bold=True
        )
    elif ran:
        seconds = sum(getattr(r, "duration", 0.0) for r in ran)
        terminalreporter.write_line(
            f"browser tests: {len(ran)} ran in Chromium ({CHROMIUM}), {seconds:.1f}s of test calls"
        )
        rules = sorted({f"{rule} ({impact})" for _url, rule, impact, _n in FINDINGS})
        terminalreporter.write_line(
            f"browser tests: axe-core checked {len(CHECKED)} page(s); findings of any impact: "
            + (", ".join(rules) if rules else "none")
        )


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    service = LiveService(tmp_path_factory.mktemp("browser-live")).start()
    yield service
    service.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if SKIP_REASON is not None:
        pytest.skip(f"browser tests: {SKIP_REASON}")
    with launch() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any, live: LiveService) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live.base, viewport=VIEWPORT, ignore_https_errors=True, locale="en-GB"
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def sign_in(page: Any, token: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto("/sign-in")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in(page: Any, live: LiveService) -> Any:
    sign_in(page, live.admin_token)
    page.get_by_role("heading", name="Setups").wait_for()
    return page


@pytest.fixture(scope="package")
def setup_id(live: LiveService) -> int:
    return live.create_setup("Browser setup")
