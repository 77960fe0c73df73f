"""axe-core (bundled by axe-playwright-python) on a dashboard page: no serious or critical
violation may pass; the minor and moderate ones are kept for the summary, not failed on."""

from __future__ import annotations

from typing import Any

BLOCKING = ("serious", "critical")
# Every finding of the run, blocking or not: (page URL, rule id, impact, how many nodes).
FINDINGS: list[tuple[str, str, str, int]] = []
# Every page axe ran on (URL), for the summary line.
CHECKED: list[str] = []


def violations(page: Any) -> list[dict[str, Any]]:
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page)
    # Proof it ran in the page (the CSP does not stop Playwright's own evaluation).
    assert result.response.get("testEngine", {}).get("name") == "axe-core", result.response
    CHECKED.append(page.url)
    found = list(result.response.get("violations", []))
    for v in found:
        FINDINGS.append((page.url, v["id"], str(v.get("impact")), len(v.get("nodes", []))))
    return found


def assert_accessible(page: Any) -> None:
    """Fail with each serious/critical rule, its help text and the first offending elements."""
    blocking = [v for v in violations(page) if v.get("impact") in BLOCKING]
    lines = [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(" ".join(n.get("target", [])) for n in v.get("nodes", [])[:3])
        for v in blocking
    ]
    assert not blocking, f"axe on {page.url}:\n" + "\n".join(lines)
