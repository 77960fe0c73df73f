"""The real client against the in-process Constant Contact sandbox; every exchange validated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from middleware.constantcontact import errors as e
from middleware.constantcontact.client import ConstantContactClient
from middleware.constantcontact.limiter import LocalLimiter, NoLimiter
from middleware.constantcontact.oauth import (
    MemoryTokenStore,
    OAuthClient,
    RefreshingTokenSource,
    make_pkce_pair,
    thread_lock,
)
from sandbox.adapter import mount
from sandbox.common import Clock
from sandbox.constantcontact.app import create_app
from tests.contract.cc_openapi import ValidatingSession

BASE = "https://cc.sandbox.test"
START = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
REDIRECT = "http://localhost:5000/oauth/constantcontact/callback"


class FrozenClock(Clock):
    """Sandbox time that moves only when the test (or an injected sleep) moves it."""

    def __init__(self) -> None:
        super().__init__()
        self._now = START

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def reset(self) -> None:
        self._now = START


class World:
    """One sandbox account, a validating session on it, and a connected client."""

    def __init__(self, clock: FrozenClock, **config: Any) -> None:
        self.clock = clock
        self.app = create_app(
            {"clock": clock, "sleep": lambda _s: None, "RATE_PER_SECOND": 0, "DAILY_QUOTA": 0}
            | config
        )
        self.sandbox = self.app.extensions["cc_sandbox"]
        self.session = ValidatingSession()
        mount(self.session, BASE, self.app)
        self.sleeps: list[float] = []
        self.oauth = OAuthClient(
            self.sandbox.config["CLIENT_ID"],
            self.sandbox.config["CLIENT_SECRET"],
            self.session,
            auth_url=BASE + "/oauth2/default/v1",
            now=clock.now,
        )
        self.store = MemoryTokenStore()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def connect(self) -> None:
        """The consent flow: authorize (auto-approved by the sandbox), then exchange the code."""
        verifier, challenge = make_pkce_pair()
        url = self.oauth.authorization_url(REDIRECT, "st-1", code_challenge=challenge)
        answer = self.session.get(url, allow_redirects=False)
        assert answer.status_code == 302, answer.text
        back = parse_qs(urlsplit(answer.headers["Location"]).query)
        assert back["state"] == ["st-1"]
        tokens = self.oauth.exchange_code(back["code"][0], REDIRECT, code_verifier=verifier)
        assert self.store.save(tokens, None)

    def client(self, limiter: Any = None) -> ConstantContactClient:
        source = RefreshingTokenSource(
            self.oauth, self.store, thread_lock(), now=self.clock.now, sleep=self.sleep
        )
        return ConstantContactClient(
            BASE + "/v3",
            self.session,
            source,
            limiter or NoLimiter(),
            now=self.clock.now,
            sleep=self.sleep,
            monotonic=lambda: self.clock.now().timestamp(),
        )

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.session.request(method, BASE + "/_sandbox" + path, **kwargs)
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def fault(self, **fault: Any) -> None:
        self.control("POST", "/faults", json=fault)


@pytest.fixture
def world() -> Iterator[World]:
    w = World(FrozenClock())
    w.connect()
    yield w
    w.session.close()


@pytest.fixture
def cc(world: World) -> ConstantContactClient:
    return world.client()


def test_every_request_the_client_sends_is_validated_and_counted(world, cc):
    cc.get_or_create_list("Main")
    cc.create_contact({"email_address": {"address": "ann@example.com"}, "first_name": "Ann"})
    list(cc.iter_contacts(status="all", include=["custom_fields", "list_memberships"]))
    # ValidatingSession raises on any violation; here we show it saw every call we counted.
    assert world.session.exchanges == cc.calls.total == 4
    assert cc.calls.snapshot() == {
        "contact_lists": {"200": 1, "201": 1},
        "contacts": {"200": 1, "201": 1},
    }
    by_family = world.control("GET", "/state")["calls"]["by_family"]
    assert {
        k: v for k, v in by_family.items() if not k.startswith("oauth2")
    } == cc.calls.by_family()


def test_contact_lifecycle_create_conflict_update_unsubscribe_delete_revive(world, cc):
    created = cc.create_contact(
        {
            "email_address": {"address": "ann@example.com"},
            "first_name": "Ann",
            "last_name": "Lee",
            "job_title": "CFO",
        }
    )
    contact_id = created["contact_id"]
    with pytest.raises(e.Conflict) as info:
        cc.create_contact({"email_address": {"address": "ann@example.com"}})
    assert info.value.error_key == "contacts.api.conflict"

    found = cc.find_contact_by_email(" ANN@example.com")
    assert found is not None and found["contact_id"] == contact_id
    assert cc.find_contact_by_email("nobody@example.com") is None

    cc.update_contact(
        contact_id,
        {
            "email_address": {"address": "ann@example.com"},
            "first_name": "Anne",
            "last_name": "Lee",
            "job_title": "CFO",
        },
    )
    assert cc.get_contact(contact_id)["first_name"] == "Anne"

    before = cc.calls.total
    cc.unsubscribe_contact(contact_id)
    assert cc.calls.total - before == 2  # GET + PUT, as documented
    back = world.control("GET", "/contacts", params={"email": "ann@example.com"})
    assert back["email_address"]["permission_to_send"] == "unsubscribed"
    assert back["email_address"]["opt_out_source"] == "Account"
    assert (back["first_name"], back["last_name"], back["job_title"]) == ("Anne", "Lee", "CFO")
    before = cc.calls.total
    cc.unsubscribe_contact(contact_id)  # already out: one read, no write
    assert cc.calls.total - before == 1

    cc.delete_contact(contact_id)
    deleted = cc.find_contact_by_email("ann@example.com")
    assert deleted is not None and deleted.get("deleted_at")
    with pytest.raises(e.NotFound):
        cc.get_contact("00000000-0000-0000-0000-000000000000")


def test_a_deleted_contact_is_revived_by_put(world, cc):
    created = cc.create_contact(
        {"email_address": {"address": "bo@example.com"}, "first_name": "Bo"}
    )
    cc.delete_contact(created["contact_id"])
    with pytest.raises(e.Conflict):
        cc.create_contact({"email_address": {"address": "bo@example.com"}})
    cc.update_contact(
        created["contact_id"], {"email_address": {"address": "bo@example.com"}, "first_name": "Bo"}
    )
    assert not cc.get_contact(created["contact_id"]).get("deleted_at")


def test_lists_and_custom_fields_are_created_once(world, cc):
    main = cc.get_or_create_list("Main")
    again = world.client().get_or_create_list("Main")  # a fresh client: reads, does not create
    assert main["list_id"] == again["list_id"]
    assert world.control("GET", "/state")["records"]["lists"] == 1

    ids = cc.ensure_custom_fields(["Region", "Favorite Fruit"])
    assert set(ids) == {"Region", "Favorite Fruit"}
    assert world.client().ensure_custom_fields(["Region", "Favorite_Fruit"]) == {
        "Region": ids["Region"],
        "Favorite_Fruit": ids["Favorite Fruit"],
    }


def test_import_in_several_activities_then_read_back(world, cc):
    main = cc.get_or_create_list("Main")["list_id"]
    cc.ensure_custom_fields(["Region"])
    rows = [
        {
            "email": f"p{i}@example.com",
            "first_name": f"P{i}",
            "last_name": "Test",
            "cf:Region": "EU",
        }
        for i in range(25)
    ]
    cc.import_max_rows = 10
    activities = cc.import_contacts(rows, [main])
    assert len(activities) == 3
    done = cc.wait_for_activities([a["activity_id"] for a in activities])
    assert [a["state"] for a in done] == ["completed"] * 3
    on_list = list(cc.iter_contacts(lists=[main], include=["custom_fields"]))
    assert len(on_list) == 25
    back = world.control("GET", "/contacts", params={"email": "p7@example.com"})
    assert back["custom_fields_by_name"] == {"Region": "EU"}
    assert back["list_names"] == ["Main"]
    # One listing shows every import's final state (how a Full Sync checks its imports).
    listed = {a["activity_id"]: a for a in cc.list_activities(state="completed", limit=50)}
    assert {a["activity_id"] for a in activities} <= set(listed)
    assert cc.list_activities(state="failed") == []


def test_list_memberships_delete_and_export(world, cc):
    main = cc.get_or_create_list("Main")["list_id"]
    other = cc.get_or_create_list("Other")["list_id"]
    ids = [
        cc.create_contact({"email_address": {"address": f"m{i}@example.com"}})["contact_id"]
        for i in range(5)
    ]
    cc.activity_ids_max = 2
    added = cc.add_list_memberships(ids, [main, other])
    assert len(added) == 3
    cc.wait_for_activities([a["activity_id"] for a in added])
    assert len(list(cc.iter_contacts(lists=[other]))) == 5
    removed = cc.remove_list_memberships(ids[:2], [other])
    cc.wait_for_activities([a["activity_id"] for a in removed])
    assert len(list(cc.iter_contacts(lists=[other]))) == 3

    export = cc.export_contacts(
        list_ids=[main], fields=["email_address", "first_name", "email_optout_source"]
    )
    final = cc.wait_for_activity(export["activity_id"])
    rows = list(cc.iter_export_rows(final))
    assert sorted(r["email_address"] for r in rows) == [f"m{i}@example.com" for i in range(5)]
    assert set(rows[0]) == {"email_address", "first_name", "email_optout_source"}

    deleted = cc.delete_contacts(ids)
    cc.wait_for_activities([a["activity_id"] for a in deleted])
    assert list(cc.iter_contacts(lists=[main])) == []


def test_paging_through_a_seeded_account(world, cc):
    seeded = world.control("POST", "/seed", json={"contacts": 600, "lists": ["Main"], "seed": 3})
    got = list(cc.iter_contacts(status="all"))
    assert len(got) == len({c["contact_id"] for c in got}) >= 600
    assert cc.calls.snapshot()["contacts"] == {"200": 2}
    assert seeded


def test_expired_access_token_is_refreshed_once_and_persisted(world, cc):
    cc.get_or_create_list("Main")
    version = world.store.load().version
    old_refresh = world.store.load().tokens.refresh_token
    world.control("POST", "/tokens/expire")
    cc.create_contact({"email_address": {"address": "r@example.com"}})
    assert world.store.load().version == version + 1
    assert cc.calls.snapshot()["contacts"] == {"401": 1, "201": 1}
    # The rotated-out refresh token is dead: reusing it means reconnecting.
    with pytest.raises(e.AuthRevoked):
        world.oauth.refresh(old_refresh)


def test_faults_503_and_throttled_are_retried_with_backoff(world, cc):
    world.fault(status=503, count=2, path="/v3/contacts")
    world.fault(kind="throttle", count=1, path="/v3/contact_lists")
    cc.create_contact({"email_address": {"address": "f@example.com"}})
    cc.get_or_create_list("Main")
    assert cc.calls.snapshot()["contacts"] == {"503": 2, "201": 1}
    assert cc.calls.snapshot()["contact_lists"]["429"] == 1
    assert len(world.sleeps) == 3


def test_quota_exceeded_from_constant_contact_pauses_everyone_until_midnight(world):
    limiter = LocalLimiter(clock=lambda: world.clock.now().timestamp(), sleep=world.sleep)
    cc = world.client(limiter)
    world.fault(status=429, error_key="quota_exceeded", path="/v3/contacts")
    with pytest.raises(e.QuotaExceeded) as info:
        cc.create_contact({"email_address": {"address": "q@example.com"}})
    assert info.value.resume_at == datetime(2026, 11, 27, tzinfo=UTC)
    with pytest.raises(e.QuotaExceeded):
        world.client(limiter).get_or_create_list("Main")
    assert world.session.exchanges == 1


def test_our_limiter_keeps_the_sandbox_from_ever_throttling_us():
    clock = FrozenClock()
    world = World(clock, RATE_PER_SECOND=4, DAILY_QUOTA=10_000)
    world.connect()
    limiter = LocalLimiter(4, 1.0, clock=lambda: clock.now().timestamp(), sleep=world.sleep)
    a, b = world.client(limiter), world.client(limiter)
    for i in range(10):
        (a if i % 2 else b).create_contact({"email_address": {"address": f"x{i}@example.com"}})
    rejected = world.control("GET", "/state")["calls"]["rejected"]
    assert rejected.get("throttled", 0) == 0
    assert clock.now() - START >= timedelta(seconds=2)
    assert a.calls.total + b.calls.total == 10


def test_opt_outs_by_the_person_are_found_by_status_scan_and_export(world, cc):
    for name in ("ann", "bob", "cy"):
        cc.create_contact({"email_address": {"address": f"{name}@example.com"}})
    world.control("POST", "/unsubscribe", json={"email": "bob@example.com", "reason": "too many"})
    out = list(cc.iter_contacts(status="unsubscribed"))
    assert [c["email_address"]["address"] for c in out] == ["bob@example.com"]
    assert out[0]["email_address"]["opt_out_source"] == "Contact"
    export = cc.wait_for_activity(cc.export_contacts(status="unsubscribed")["activity_id"])
    assert [r["email_address"] for r in cc.iter_export_rows(export)] == ["bob@example.com"]


def test_email_campaigns_their_activities_and_tracking_reports_are_read_page_by_page(world, cc):
    main = cc.get_or_create_list("Main")
    for n in range(3):
        cc.create_contact(
            {
                "email_address": {"address": f"r{n}@example.org", "permission_to_send": "implicit"},
                "first_name": f"R{n}",
                "list_memberships": [main["list_id"]],
                "create_source": "Account",
            }
        )
    world.clock.advance(60)
    sent = world.control(
        "POST",
        "/emails",
        json={
            "name": "Spring Appeal",
            "subject": "Spring is here",
            "html_content": "<p>Hello</p>",
            "list_ids": [main["list_id"]],
            "sent_at": (START + timedelta(seconds=30)).isoformat(),
        },
    )
    activity = sent["campaign_activity_id"]
    world.control(
        "POST",
        f"/emails/{activity}/events",
        json=[
            {"email": "r0@example.org", "type": "open"},
            {"email": "r0@example.org", "type": "click", "url": "https://example.org/give"},
            {"email": "r1@example.org", "type": "bounce", "bounce_code": "B"},
            {"email": "r2@example.org", "type": "optout"},
        ],
    )

    campaigns = list(cc.iter_email_campaigns(after=START))
    assert [c["name"] for c in campaigns] == ["Spring Appeal"]
    assert list(cc.iter_email_campaigns(after=START + timedelta(days=1))) == []
    detail = cc.email_campaign(campaigns[0]["campaign_id"])
    roles = {a["role"]: a["campaign_activity_id"] for a in detail["campaign_activities"]}
    assert roles["primary_email"] == activity
    assert cc.campaign_activity(activity)["subject"] == "Spring is here"
    assert "<p>Hello</p>" in cc.campaign_activity(activity, html=True)["html_content"]

    sends = list(cc.iter_tracking(activity, "sends"))
    assert sorted(s["email_address"] for s in sends) == [
        "r0@example.org",
        "r1@example.org",
        "r2@example.org",
    ]
    (click,) = cc.iter_tracking(activity, "clicks")
    assert click["link_url"] == "https://example.org/give"
    (bounce,) = cc.iter_tracking(activity, "bounces")
    assert bounce["bounce_code"] == "B"
    (optout,) = cc.iter_tracking(activity, "optouts")
    assert optout["email_address"] == "r2@example.org"
    with pytest.raises(ValueError):
        list(cc.iter_tracking(activity, "didnotopens"))
    with pytest.raises(e.NotFound):
        list(cc.iter_tracking("00000000-0000-0000-0000-000000000000", "sends"))


def test_tracking_reports_follow_their_next_links(world, cc, monkeypatch):
    from middleware.constantcontact import client as client_module

    monkeypatch.setattr(client_module, "REPORT_PAGE", 2)
    main = cc.get_or_create_list("Main")
    for n in range(5):
        cc.create_contact(
            {
                "email_address": {"address": f"p{n}@example.org", "permission_to_send": "implicit"},
                "list_memberships": [main["list_id"]],
                "create_source": "Account",
            }
        )
    world.clock.advance(60)
    sent = world.control(
        "POST",
        "/emails",
        json={"name": "Paged", "subject": "Paged", "list_ids": [main["list_id"]],
              "sent_at": (START + timedelta(seconds=30)).isoformat()},
    )  # fmt: skip
    before = cc.calls.by_family().get("reports", 0)
    sends = list(cc.iter_tracking(sent["campaign_activity_id"], "sends"))
    assert len({s["email_address"] for s in sends}) == 5
    assert cc.calls.by_family()["reports"] - before == 3  # 2 + 2 + 1


def test_simulated_campaign_results_and_campaign_types_read_through_the_client(world, cc):
    world.control("POST", "/seed", json={"contacts": 1500, "lists": ["Main"], "seed": 3})
    sent = world.control(
        "POST",
        "/emails",
        json={
            "name": "Appeal",
            "subject": "Give",
            "list_names": ["Main"],
            "sent_at": (START - timedelta(hours=6)).isoformat(),
            "links": ["https://example.org/give", "https://example.org/news"],
            "rates": {"open": 0.3, "click": 0.05, "bounce": 0.01, "optout": 0.01},
            "seed": 1,
        },
    )
    world.control("POST", "/emails", json={"name": "Split", "subject": "A", "list_names": ["Main"],
                                           "type_code": 57})  # fmt: skip
    activity = sent["campaign_activity_id"]
    opens = list(cc.iter_tracking(activity, "opens"))
    assert len(opens) == sent["recorded"]["open"] > 500  # more than one page
    clicks = list(cc.iter_tracking(activity, "clicks"))
    assert {c["link_url"] for c in clicks} == {
        "https://example.org/give",
        "https://example.org/news",
    }
    optouts = list(cc.iter_tracking(activity, "optouts"))
    assert len(optouts) == sent["contacts"]["optout"] > 0
    kinds = {c["name"]: (c["type"], c["type_code"]) for c in cc.iter_email_campaigns()}
    assert kinds == {"Appeal": ("NEWSLETTER", 10), "Split": ("AB_TEST", 57)}

    world.clock.advance(3600)
    more = world.control("POST", f"/emails/{activity}/simulate", json={"rates": {"open": 0.01}})
    again = list(cc.iter_tracking(activity, "opens"))
    assert len(again) == len(opens) + more["recorded"]["open"]
    assert again[len(again) - len(opens) :] == opens  # the new ones come first, most recent first
