"""Full Sync import activities: checked together at the end of a run, rejected rows attributed.

Posting an import and polling it until it completes costs at least two calls; a million contacts
take some seventy imports. A Full Sync therefore posts its imports without waiting, and at the
end waits for the last one (an account's activities run in order) and reads every final state
with one ``GET /activities`` listing. Rows an activity rejected are found by their index
(``import_data[12]``) or their address in ``activity_errors``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from middleware.constantcontact.client import ConstantContactClient
from middleware.outcome import Failure

FINAL = ("completed", "failed", "cancelled", "timed_out")
_ROW_INDEX = re.compile(r"import_data\[(\d+)\]")
_EMAIL = re.compile(r"[^\s'\"<>(),;:\[\]]+@[^\s'\"<>(),;:\[\]]+\.[A-Za-z]{2,}")


def list_activities(cc: ConstantContactClient, limit: int = 500) -> list[dict[str, Any]]:
    """The account's recent activities, newest first (``GET /activities``, 1 call)."""
    return cc.list_activities(limit=limit)


def attribute_import_errors(
    activity: dict[str, Any], rows: Sequence[tuple[str, str]]
) -> tuple[list[Failure], list[str]]:
    """(failures of the rows the activity's errors name, messages no row could be found for).

    ``rows`` are the (sf_id, email) pairs in body order; empty when unknown (a resumed run).
    An activity that did not complete fails every row it carried.
    """
    by_email = {email: sf_id for sf_id, email in rows}
    failures: list[Failure] = []
    loose: list[str] = []
    named: set[str] = set()
    activity_id = activity.get("activity_id", "?")
    for message in activity.get("activity_errors") or []:
        text = str(message)
        sf_id = email = None
        index = _ROW_INDEX.search(text)
        if index is not None and int(index.group(1)) < len(rows):
            sf_id, email = rows[int(index.group(1))]
        else:
            found = _EMAIL.search(text)
            if found and found.group(0).lower() in by_email:
                email = found.group(0).lower()
                sf_id = by_email[email]
        if sf_id is None:
            loose.append(f"import {activity_id}: {text}")
            continue
        named.add(sf_id)
        failures.append(Failure(sf_id, "import_row_rejected", text, email=email))
    state = activity.get("state")
    if state is not None and state != "completed":
        reason = "; ".join(map(str, activity.get("activity_errors") or [])) or (
            f"the import activity ended {state}"
        )
        if not rows:
            loose.append(f"import {activity_id} ended {state}: {reason}")
        failures += [
            Failure(sf_id, f"import_{state}", reason, email=email)
            for sf_id, email in rows
            if sf_id not in named
        ]
    return failures, loose
