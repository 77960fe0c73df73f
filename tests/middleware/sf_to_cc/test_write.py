"""The write stage's guards and the lookups that give new links their contact ids (issue 9)."""

from __future__ import annotations

from typing import Any

from middleware.constantcontact.errors import CCError
from middleware.sf_to_cc.write import execute, imported_links, new_contacts
from middleware.sync.types import Import, LinkRecord, Plan, Unsubscribe, UpdateContact


class NoCalls:
    """A Constant Contact client that must not be called."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected Constant Contact call: {name}")


class Lookups:
    def __init__(self, found: dict[str, dict[str, Any]], fail_on: str | None = None) -> None:
        self.found, self.fail_on = found, fail_on
        self.asked: list[str] = []

    def find_contact_by_email(self, email: str) -> dict[str, Any] | None:
        self.asked.append(email)
        if email == self.fail_on:
            raise CCError("outage", status=503)
        return self.found.get(email)


def test_a_put_without_contact_id_is_the_records_error_not_a_call() -> None:
    plan = Plan(
        actions=[
            UpdateContact("003A", "", {"email_address": {"address": "a@example.org"}}),
            Unsubscribe("003B", "", {"email_address": {"address": "b@example.org"}}),
        ]
    )
    outcome = execute(NoCalls(), plan)  # type: ignore[arg-type]
    assert {(f.sf_id, f.code) for f in outcome.failures} == {
        ("003A", "no_contact_id"),
        ("003B", "no_contact_id"),
    }


def test_new_links_are_looked_up_after_the_import_when_few() -> None:
    plan = Plan(
        actions=[
            Import("003A", "a@example.org", {"email": "a@example.org"}, ("L",)),
            LinkRecord("003A", "a@example.org", None, "fp", ("L",)),
            LinkRecord("003B", "b@example.org", "known", "fp", ("L",)),
            LinkRecord("003C", "c@example.org", None, "fp", ("L",)),
        ]
    )
    rows = imported_links(plan, failed={"003C"})
    assert rows == [("003A", "a@example.org")]
    cc = Lookups({"a@example.org": {"contact_id": "cid-a"}})
    assert new_contacts(cc, rows) == {"003A": {"contact_id": "cid-a"}}  # type: ignore[arg-type]
    # Too many: none looked up (the next Full Sync's export gives them their ids).
    many = [(f"003{i}", f"p{i}@example.org") for i in range(21)]
    cc = Lookups({})
    assert new_contacts(cc, many) == {}  # type: ignore[arg-type]
    assert cc.asked == []
    # An outage only leaves the ids unknown.
    cc = Lookups({"a@example.org": {"contact_id": "cid-a"}}, fail_on="b@example.org")
    found = new_contacts(cc, [("003B", "b@example.org"), ("003A", "a@example.org")])  # type: ignore[arg-type]
    assert found == {}
