"""The client's request path and methods against hand-built answers: retries, refresh, batching."""

from __future__ import annotations

import ast
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from middleware.constantcontact import errors as e
from middleware.constantcontact.client import ConstantContactClient
from middleware.constantcontact.limiter import LocalLimiter

from .fakes import BASE, ScriptedSession, Sleeps, make_client, response

THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}
QUOTA = {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}
UNAUTHORIZED = {"error_key": "unauthorized", "error_message": "Unauthorized"}
CONTACT = {
    "contact_id": "c1",
    "email_address": {"address": "ann@example.com", "permission_to_send": "implicit"},
    "first_name": "Ann",
    "last_name": "Lee",
    "job_title": "CFO",
    "custom_fields": [{"custom_field_id": "f1", "value": "x"}],
    "list_memberships": ["l1"],
}


def test_throttled_is_retried_with_growing_backoff_and_every_attempt_is_counted():
    session = ScriptedSession([response(429, THROTTLED)] * 3 + [response(200, CONTACT)])
    sleeps = Sleeps()
    client = make_client(session, sleep=sleeps)
    assert client.get_contact("c1")["contact_id"] == "c1"
    assert len(session.sent) == 4
    assert len(sleeps) == 3
    assert all(s >= client.retry.throttled_min for s in sleeps)
    assert client.calls.snapshot() == {"contacts": {"200": 1, "429": 3}}
    assert client.calls.total == 4


def test_retries_run_out_and_the_retryable_error_propagates():
    policy_retries = 4
    session = ScriptedSession([response(503, [{"error_key": "x", "error_message": "down"}])] * 5)
    sleeps = Sleeps()
    client = make_client(session, sleep=sleeps)
    with pytest.raises(e.ServerError) as info:
        client.get_contact("c1")
    assert info.value.retryable
    assert len(session.sent) == policy_retries + 1
    assert len(sleeps) == policy_retries
    # full jitter under a doubling cap
    for attempt, slept in enumerate(sleeps):
        assert 0 <= slept <= client.retry.base * 2**attempt


def test_timeouts_and_broken_connections_are_retried_then_succeed():
    session = ScriptedSession(
        [requests.Timeout("slow"), requests.ConnectionError("reset"), response(200, CONTACT)]
    )
    client = make_client(session)
    assert client.get_contact("c1")["first_name"] == "Ann"
    assert client.calls.snapshot() == {"contacts": {"200": 1, "error": 1, "timeout": 1}}


def test_validation_conflict_and_not_found_are_not_retried():
    for status, cls in ((400, e.Validation), (409, e.Conflict), (404, e.NotFound)):
        session = ScriptedSession([response(status, [{"error_key": "k", "error_message": "m"}])])
        with pytest.raises(cls):
            make_client(session).get_contact("c1")
        assert len(session.sent) == 1


class FlakyTokens:
    def __init__(self):
        self.current = "old"
        self.refreshed_with: list[str] = []

    def access_token(self):
        return self.current

    def refresh(self, rejected):
        self.refreshed_with.append(rejected)
        self.current = "new"
        return "new"


def test_401_refreshes_once_and_retries_with_the_new_token():
    tokens = FlakyTokens()
    session = ScriptedSession([response(401, UNAUTHORIZED), response(200, CONTACT)])
    client = make_client(session, token_source=tokens)
    client.get_contact("c1")
    assert tokens.refreshed_with == ["old"]
    assert [s.headers["Authorization"] for s in session.sent] == ["Bearer old", "Bearer new"]


def test_a_second_401_after_refresh_is_raised_not_looped():
    tokens = FlakyTokens()
    session = ScriptedSession([response(401, UNAUTHORIZED)] * 2)
    with pytest.raises(e.AuthExpired):
        make_client(session, token_source=tokens).get_contact("c1")
    assert tokens.refreshed_with == ["old"]
    assert len(session.sent) == 2


def test_quota_exceeded_stops_at_once_and_blocks_the_shared_limiter():
    clock = [datetime(2026, 3, 14, 12, 0, tzinfo=UTC).timestamp()]
    limiter = LocalLimiter(clock=lambda: clock[0], sleep=lambda s: None)
    session = ScriptedSession([response(429, QUOTA)])
    client = make_client(session, limiter=limiter)
    with pytest.raises(e.QuotaExceeded) as info:
        client.get_contact("c1")
    assert info.value.resume_at == datetime(2026, 3, 15, tzinfo=UTC)
    assert len(session.sent) == 1
    # Another client on the same limiter does not even try until midnight UTC.
    other = ScriptedSession([])
    with pytest.raises(e.QuotaExceeded):
        make_client(other, limiter=limiter).get_contact("c1")
    assert other.sent == []
    clock[0] = datetime(2026, 3, 15, 0, 0, 1, tzinfo=UTC).timestamp()
    other.answers.append(response(200, CONTACT))
    make_client(other, limiter=limiter).get_contact("c1")


def test_activity_queue_limit_backs_off_longer():
    body = [{"error_key": "", "error_message": "You exceeded 1,000 queued activities"}]
    session = ScriptedSession([response(429, body), response(201, {"activity_id": "a1"})])
    sleeps = Sleeps()
    client = make_client(session, sleep=sleeps)
    client.delete_contacts(["c1"])
    assert sleeps[0] >= client.retry.activities_base


def test_pagination_follows_relative_next_links_without_resending_filters():
    page1 = {
        "contacts": [{"contact_id": "a"}],
        "_links": {"next": {"href": "/v3/contacts?cursor=x1"}},
    }
    page2 = {"contacts": [{"contact_id": "b"}], "_links": {}}
    session = ScriptedSession([response(200, page1), response(200, page2)])
    client = make_client(session)
    since = datetime(2026, 3, 1, tzinfo=UTC)
    got = [
        c["contact_id"]
        for c in client.iter_contacts(
            updated_after=since, include=["custom_fields", "list_memberships"]
        )
    ]
    assert got == ["a", "b"]
    first, second = session.sent
    assert first.params == {
        "limit": 500,
        "updated_after": "2026-03-01T00:00:00Z",
        "include": "custom_fields,list_memberships",
    }
    assert second.url == BASE + "/contacts?cursor=x1"
    assert second.params is None


def test_segment_query_still_processing_is_asked_again():
    session = ScriptedSession(
        [
            response(202, {"contacts": [], "status": "processing"}),
            response(200, {"contacts": [{"contact_id": "a"}]}),
        ]
    )
    sleeps = Sleeps()
    assert [
        c["contact_id"] for c in make_client(session, sleep=sleeps).iter_contacts(segment_id="7")
    ] == ["a"]
    assert len(sleeps) == 1


def test_find_contact_by_email_normalises_and_includes_deleted():
    found = {**CONTACT, "deleted_at": "2026-01-01"}
    session = ScriptedSession(
        [response(200, {"contacts": [found]}), response(200, {"contacts": []})]
    )
    client = make_client(session)
    assert client.find_contact_by_email("  Ann@Example.com ")["deleted_at"] == "2026-01-01"
    assert session.sent[0].params["email"] == "ann@example.com"
    assert session.sent[0].params["status"] == "all"
    assert client.find_contact_by_email("nobody@example.com") is None


def test_create_and_update_set_their_source_account():
    session = ScriptedSession([response(201, CONTACT), response(200, CONTACT)])
    client = make_client(session)
    client.create_contact({"email_address": {"address": "ann@example.com"}})
    client.update_contact(
        "c1", {"email_address": {"address": "ann@example.com"}, "update_source": "Contact"}
    )
    assert session.sent[0].json()["create_source"] == "Account"
    assert session.sent[1].json()["update_source"] == "Account"
    assert session.sent[1].method == "PUT"
    assert session.sent[0].headers["Content-Type"] == "application/json"


def test_unsubscribe_reads_first_and_keeps_top_level_fields():
    session = ScriptedSession(
        [
            response(200, CONTACT),
            response(
                200,
                {
                    **CONTACT,
                    "email_address": {
                        "address": "ann@example.com",
                        "permission_to_send": "unsubscribed",
                    },
                },
            ),
        ]
    )
    client = make_client(session)
    client.unsubscribe_contact("c1")
    get, put = session.sent
    assert (get.method, put.method) == ("GET", "PUT")
    body = put.json()
    assert body == {
        "first_name": "Ann",
        "last_name": "Lee",
        "job_title": "CFO",
        "email_address": {"address": "ann@example.com", "permission_to_send": "unsubscribed"},
        "update_source": "Account",
    }
    # Sub-resources are left out so the PUT cannot touch them.
    assert "custom_fields" not in body and "list_memberships" not in body


def test_unsubscribe_with_a_known_contact_costs_one_call_and_none_when_already_out():
    session = ScriptedSession([response(200, CONTACT)])
    client = make_client(session)
    client.unsubscribe_contact("c1", current=CONTACT)
    assert [s.method for s in session.sent] == ["PUT"]
    out = {
        **CONTACT,
        "email_address": {"address": "ann@example.com", "permission_to_send": "unsubscribed"},
    }
    assert client.unsubscribe_contact("c1", current=out) is out
    assert len(session.sent) == 1


def test_get_or_create_list_survives_a_racing_creator_and_caches():
    session = ScriptedSession(
        [
            response(200, {"lists": []}),
            response(409, [{"error_key": "contact_lists.api.conflict", "error_message": "exists"}]),
            response(200, {"lists": [{"list_id": "L1", "name": "Main"}]}),
        ]
    )
    client = make_client(session)
    assert client.get_or_create_list("Main")["list_id"] == "L1"
    assert client.get_or_create_list("Main")["list_id"] == "L1"
    assert [s.method for s in session.sent] == ["GET", "POST", "GET"]


def test_ensure_custom_fields_matches_name_or_label_and_creates_the_rest():
    existing = {
        "custom_fields": [
            {"custom_field_id": "f1", "label": "Favorite Fruit", "name": "Favorite_Fruit"}
        ]
    }
    session = ScriptedSession(
        [
            response(200, existing),
            response(201, {"custom_field_id": "f2", "label": "Region", "name": "Region"}),
        ]
    )
    client = make_client(session)
    assert client.ensure_custom_fields(["Favorite_Fruit", "Region", "Favorite Fruit"]) == {
        "Favorite_Fruit": "f1",
        "Region": "f2",
        "Favorite Fruit": "f1",
    }
    assert session.sent[1].json() == {"label": "Region", "type": "string"}


def _import_bodies(session):
    return [s.json() for s in session.sent if s.path == "/activities/contacts_json_import"]


def test_import_splits_by_row_count():
    rows = [{"email": f"p{i}@example.com"} for i in range(7)]
    session = ScriptedSession([lambda s: response(201, {"activity_id": f"a{len(s.data)}"})] * 3)
    client = make_client(session)
    client.import_max_rows = 3
    activities = client.import_contacts(iter(rows), ["L1"])
    bodies = _import_bodies(session)
    assert [len(b["import_data"]) for b in bodies] == [3, 3, 1]
    assert [r for b in bodies for r in b["import_data"]] == rows
    assert all(b["list_ids"] == ["L1"] for b in bodies)
    assert len(activities) == 3


def test_import_splits_by_serialized_bytes_and_never_exceeds_the_limit():
    rows = [{"email": f"person{i}@example.com", "first_name": "Zoë" * (i % 5)} for i in range(200)]
    session = ScriptedSession([lambda s: response(201, {"activity_id": "a"})] * 200)
    client = make_client(session)
    client.import_max_bytes = 1000
    client.import_contacts(rows, ["L1", "L2"])
    sizes = [len(s.data) for s in session.sent]
    assert len(sizes) > 1
    assert max(sizes) <= 1000
    assert [r for b in _import_bodies(session) for r in b["import_data"]] == rows
    # Batches are filled: each but the last could not take the next row.
    for sent, nxt in zip(session.sent, _import_bodies(session)[1:], strict=False):
        first_next = json.dumps(nxt["import_data"][0], separators=(",", ":"), ensure_ascii=False)
        assert len(sent.data) + 1 + len(first_next.encode()) > 1000


def test_import_at_real_limits_40000_rows_per_call():
    rows = ({"email": f"p{i}@e.co"} for i in range(40_001))
    session = ScriptedSession([lambda s: response(201, {"activity_id": "a"})] * 2)
    make_client(session).import_contacts(rows, ["L1"])
    assert [len(b["import_data"]) for b in _import_bodies(session)] == [40_000, 1]
    assert all(len(s.data) < 4_000_000 for s in session.sent)


def test_import_at_real_byte_limit_under_4mb():
    rows = ({"email": f"p{i}@example.com", "street": "x" * 200} for i in range(20_000))
    session = ScriptedSession([lambda s: response(201, {"activity_id": "a"})] * 3)
    make_client(session).import_contacts(rows, ["L1"])
    assert len(session.sent) == 2
    assert all(len(s.data) < 4_000_000 for s in session.sent)
    assert sum(len(b["import_data"]) for b in _import_bodies(session)) == 20_000


def test_import_rejects_a_row_bigger_than_any_call_before_sending():
    session = ScriptedSession([])
    client = make_client(session)
    client.import_max_bytes = 100
    with pytest.raises(e.Validation):
        client.import_contacts([{"email": "a@b.co", "street": "x" * 200}], ["L1"])
    assert session.sent == []


def test_membership_and_delete_activities_chunk_by_500_ids_and_50_lists():
    ids = [f"c{i}" for i in range(1001)]
    lists = [f"L{i}" for i in range(51)]
    session = ScriptedSession([lambda s: response(201, {"activity_id": "a"})] * 20)
    client = make_client(session)
    assert len(client.add_list_memberships(ids, lists)) == 6
    bodies = [s.json() for s in session.sent]
    assert {len(b["source"]["contact_ids"]) for b in bodies} == {500, 1}
    assert {len(b["list_ids"]) for b in bodies} == {50, 1}
    session.sent.clear()
    assert len(client.remove_list_memberships(ids[:10], ["L1"])) == 1
    assert session.sent[0].path == "/activities/remove_list_memberships"
    session.sent.clear()
    assert len(client.delete_contacts(ids)) == 3
    assert [len(s.json()["contact_ids"]) for s in session.sent] == [500, 500, 1]


def test_wait_for_activity_polls_with_growing_pauses():
    states = ["initialized", "processing", "processing", "completed"]
    session = ScriptedSession([response(200, {"activity_id": "a1", "state": s}) for s in states])
    sleeps = Sleeps()
    client = make_client(session, sleep=sleeps)
    assert client.wait_for_activity("a1")["state"] == "completed"
    assert len(session.sent) == 4
    assert sleeps == sorted(sleeps) and sleeps[0] < sleeps[-1]
    assert client.calls.snapshot() == {"activities": {"200": 4}}


def _done(activity_id: str, seconds: float) -> dict[str, Any]:
    return {
        "activity_id": activity_id,
        "state": "completed",
        "created_at": "2026-12-08T10:00:00.000Z",
        "completed_at": f"2026-12-08T10:00:{seconds:06.3f}Z",
    }


def test_the_first_poll_comes_when_recent_activities_were_done():
    # Nothing seen yet: one second. Then the slowest of what the account's last activities
    # took (their own timestamps), with a margin, never later than a second nor before 0.2 s.
    session = ScriptedSession(
        [response(200, _done(f"a{i}", t)) for i, t in enumerate([0.5, 0.4, 0.6, 30.0])]
    )
    sleeps = Sleeps()
    client = make_client(session, sleep=sleeps)
    assert client.first_poll_delay() == 1.0
    for i in range(4):
        client.wait_for_activity(f"a{i}")
    assert sleeps[:4] == [1.0, pytest.approx(0.545), pytest.approx(0.545), pytest.approx(0.65)]
    # A long export does not push the next small import's first poll past 1 s ...
    assert client.first_poll_delay() == 1.0
    # ... and is forgotten after five more.
    client._activity_seconds.extend([0.5] * 5)
    assert client.first_poll_delay() == pytest.approx(0.545)
    client._activity_seconds.extend([0.01] * 5)
    assert client.first_poll_delay() == 0.2


def test_an_activity_without_timestamps_teaches_nothing():
    session = ScriptedSession([response(200, {"activity_id": "a1", "state": "completed"})])
    client = make_client(session, sleep=Sleeps())
    client.wait_for_activity("a1")
    assert client.first_poll_delay() == 1.0


def test_wait_for_activity_failed_carries_the_activity_errors():
    failed = {"activity_id": "a1", "state": "failed", "activity_errors": ["Row 2: invalid email"]}
    session = ScriptedSession([response(200, failed)])
    with pytest.raises(e.ActivityFailed) as info:
        make_client(session).wait_for_activity("a1")
    assert info.value.activity_errors == ["Row 2: invalid email"]


def test_wait_for_activity_gives_up_after_its_timeout():
    t = [0.0]
    session = ScriptedSession([response(200, {"activity_id": "a1", "state": "processing"})] * 100)

    def sleep(s):
        t[0] += s

    client = make_client(session, sleep=sleep)
    client.monotonic = lambda: t[0]
    with pytest.raises(e.ActivityTimeout):
        client.wait_for_activity("a1", timeout=60)
    assert t[0] <= 60
    assert 3 < len(session.sent) < 20


def test_wait_for_activities_waits_for_all_then_reports_the_failure():
    # Two unfinished: one listing reads both; then the one left is polled by id.
    listing = {
        "activities": [
            {"activity_id": "b", "state": "failed", "activity_errors": ["boom"]},
            {"activity_id": "a", "state": "processing"},
        ]
    }
    session = ScriptedSession(
        [
            lambda s: response(200, listing),
            lambda s: response(200, {"activity_id": "a", "state": "completed"}),
        ]
    )
    with pytest.raises(e.ActivityFailed) as info:
        make_client(session).wait_for_activities(["a", "b"])
    assert [a["state"] for a in info.value.activities] == ["completed", "failed"]
    assert [s.path for s in session.sent] == ["/activities", "/activities/a"]


def test_wait_for_activities_polls_by_id_those_the_listing_no_longer_shows():
    session = ScriptedSession(
        [
            lambda s: response(200, {"activities": [{"activity_id": "a", "state": "completed"}]}),
            lambda s: response(200, {"activity_id": "old", "state": "completed"}),
        ]
    )
    done = make_client(session).wait_for_activities(["old", "a"])
    assert [a["activity_id"] for a in done] == ["old", "a"]
    assert [s.path for s in session.sent] == ["/activities", "/activities/old"]


def test_export_rows_stream_across_chunk_boundaries():
    csv_text = (
        "\ufeffemail_address,first_name,notes\r\n"
        'ann@example.com,Ann,"two\r\nlines"\r\n'
        "bob@example.com,Bøb,plain\r\n"
    )
    raw = csv_text.encode("utf-8")

    class Streamed(requests.Response):
        def iter_content(self, chunk_size=1, decode_unicode=False):
            for i in range(0, len(raw), 5):
                yield raw[i : i + 5]

    streamed = Streamed()
    streamed.status_code = 200
    streamed.raw = io.BytesIO()
    session = ScriptedSession([streamed])
    activity = {
        "activity_id": "x1",
        "state": "completed",
        "_links": {"results": {"href": "/v3/contact_exports/x1"}},
    }
    rows = list(make_client(session).iter_export_rows(activity))
    assert rows == [
        {"email_address": "ann@example.com", "first_name": "Ann", "notes": "two\r\nlines"},
        {"email_address": "bob@example.com", "first_name": "Bøb", "notes": "plain"},
    ]
    assert session.sent[0].path == "/contact_exports/x1"
    assert session.sent[0].headers["Accept"] == "text/csv"


def test_export_table_gives_the_header_then_lists_and_skips_blank_lines():
    raw = b"\xef\xbb\xbfemail_address,first_name\r\nann@example.com,Ann\r\n\r\nbob@example.com\r\n"
    streamed = requests.Response()
    streamed.status_code = 200
    streamed.raw = io.BytesIO(raw)
    session = ScriptedSession([streamed])
    activity = {"activity_id": "x2", "state": "completed"}
    table = list(make_client(session).iter_export_table(activity))
    assert table == [
        ["email_address", "first_name"],
        ["ann@example.com", "Ann"],
        ["bob@example.com"],
    ]
    assert session.sent[0].path == "/contact_exports/x2"


def test_the_client_refuses_the_signup_form_endpoint_even_if_asked():
    client = make_client(ScriptedSession([]))
    with pytest.raises(ValueError):
        client._request("POST", "/contacts/sign_up" + "_form", json_body={})


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _references(source: str, needle: str) -> list[int]:
    """Lines where code (not a docstring or comment) names ``needle``: strings or identifiers."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    lines = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            text = node.name
        if text and needle in text:
            lines.append(node.lineno)
    return lines


def test_no_code_in_middleware_references_the_signup_form_endpoint():
    # It re-subscribes people who unsubscribed; consent is sticky (DESIGN §5a). Docstrings and
    # comments may warn about it; code may not call it.
    root = Path(__file__).resolve().parents[3] / "middleware"
    needle = "sign_up" + "_form"
    offenders = {
        str(p): lines
        for p in root.rglob("*.py")
        if (lines := _references(p.read_text(encoding="utf-8"), needle))
    }
    assert root.is_dir() and offenders == {}


def test_the_reference_finder_catches_calls_and_skips_docstrings():
    needle = "sign_up" + "_form"
    code = f'''"""Never {needle}."""
def f(s):
    """Not {needle} either."""
    # {needle} in a comment is fine
    return s.post("/contacts/{needle}")
'''
    assert _references(code, needle) == [5]
    assert _references(f"x = client.{needle}()", needle) == [1]


def test_base_url_with_a_path_joins_next_links():
    client = ConstantContactClient("https://x.test/v3/", ScriptedSession([]), None, None)  # type: ignore[arg-type]
    assert client._path_of("/v3/contacts?cursor=a%3D") == "/contacts?cursor=a%3D"
    assert (
        client._path_of("https://x.test/v3/contact_custom_fields?cursor=1")
        == "/contact_custom_fields?cursor=1"
    )


def test_contacts_filter_on_more_than_25_lists_is_refused_before_sending():
    session = ScriptedSession([])
    with pytest.raises(ValueError):
        list(make_client(session).iter_contacts(lists=[f"L{i}" for i in range(26)]))
    assert session.sent == []


def test_a_retry_after_header_is_honoured_up_to_the_cap():
    throttled = response(429, THROTTLED)
    throttled.headers["Retry-After"] = "7"
    session = ScriptedSession([throttled, response(200, CONTACT)])
    sleeps = Sleeps()
    make_client(session, sleep=sleeps).get_contact("c1")
    assert sleeps == [7.0]
