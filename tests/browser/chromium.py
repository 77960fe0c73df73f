"""Debian's Chromium under Playwright: where it is, how it starts, and why it cannot.

Playwright's own browser download is never used (this machine's network does not reach it):
``launch`` starts ``/usr/bin/chromium`` (``apt-get install chromium``), or ``CHROMIUM_PATH``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# As /work/.library's machine notes start it: no sandbox as root, and no background networking,
# which this machine's closed network refuses many times a start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


def why_not_available() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).is_file():
        return f"chromium not installed (apt-get install chromium; looked for {CHROMIUM})"
    try:
        import axe_playwright_python  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (pip install -r requirements-dev.txt)"
    return None


@contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``) for the ``with`` block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
