"""`make demo`: both sandboxes, the service and its worker on embedded defaults, and a real sync.

Nothing here is faked: the service is the same Flask app gunicorn runs, on SQLite and the
in-process queue (no Redis, no PostgreSQL); the Salesforce sandbox speaks HTTPS with its own CA,
the Constant Contact sandbox enforces 4 requests/s; connections are made through the vendors'
OAuth flows; changes are real Salesforce writes whose Change Data Capture events the sandbox org
publishes on its Pub/Sub API (gRPC over TLS), where the service's listener, a thread of the web
process in this embedded mode, subscribes to them.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet
from werkzeug.serving import make_server

from middleware import run_counts
from sandbox import server as sandbox_server

WORKDIR = Path("instance") / "demo"
MAIN_LIST = "Demo Main List"
CAMPAIGN = "Spring Gala 2027"
EMAIL = "Spring appeal 2027"
KEEP_RUNNING = "make demo DEMO_ARGS=--keep-running"
CONTACT_CHANNEL = "/data/ContactChangeEvent"
MEMBER_CHANNEL = "/data/CampaignMemberChangeEvent"


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title}")


class Demo:
    def __init__(self, contacts: int, burst: int, consent_page: bool = False) -> None:
        self.contacts = contacts
        self.burst = burst
        # On: both sandboxes ask "Allow access?" as the vendors do (the dashboard-only mode,
        # where a person connects); off: they approve at once (the scripted story).
        self.consent_page = consent_page

    # --- start everything ------------------------------------------------------------------------

    def start(self) -> None:
        if WORKDIR.exists():
            shutil.rmtree(WORKDIR)
        WORKDIR.mkdir(parents=True)
        step("Starting the Salesforce and Constant Contact sandboxes")
        self.sandboxes = sandbox_server.start(
            sf_port=_free_port(8701),
            cc_port=_free_port(8702),
            tls_dir=Path("instance") / "sandbox-tls",
            sf_config={"CONSENT_PAGE": self.consent_page},
            cc_config={
                "RATE_PER_SECOND": 4,
                "ACTIVITY_SECONDS": 0.5,
                "CONSENT_PAGE": self.consent_page,
            },
            pubsub_port=_free_port(8703),
        )
        self.sf_url, self.cc_url = self.sandboxes.sf_url, self.sandboxes.cc_url
        say(f"Salesforce sandbox        {self.sf_url}  (CA {self.sandboxes.tls.ca_cert})")
        self.pubsub_url = f"https://{self.sandboxes.pubsub_target}"
        say(f"Salesforce Pub/Sub API    {self.pubsub_url}  (gRPC, same CA)")
        say(f"Constant Contact sandbox  {self.cc_url}  (4 requests/s, like the real API)")

        step(
            "Starting the service (SQLite + in-process queue, worker and Pub/Sub listener: "
            "no Redis, no PostgreSQL)"
        )
        port = _free_port(5000)
        self.base = f"http://127.0.0.1:{port}"
        self.admin_token = secrets.token_urlsafe(24)
        from app import create_app

        self.app = create_app(
            {
                "SECRET_KEY": secrets.token_urlsafe(32),
                "ADMIN_TOKEN": self.admin_token,
                "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "DATABASE_URL": f"sqlite:///{(WORKDIR / 'demo.sqlite3').resolve()}",
                "EMBEDDED_WORKER": True,
                "EMBEDDED_LISTENER": True,
                "PUBLIC_URL": self.base,
                "SALESFORCE_LOGIN_URL": self.sf_url,
                # The Connections page's "Sandbox" choice signs in at the same local org.
                "SALESFORCE_SANDBOX_LOGIN_URL": self.sf_url,
                "SALESFORCE_CLIENT_ID": "sandbox-client-id",
                "SALESFORCE_CLIENT_SECRET": "sandbox-client-secret",
                "SALESFORCE_CA_BUNDLE": str(self.sandboxes.tls.ca_cert),
                "SALESFORCE_PUBSUB_URL": self.pubsub_url,
                "CC_API_URL": f"{self.cc_url}/v3",
                "CC_AUTH_URL": f"{self.cc_url}/oauth2/default/v1",
                "CC_CLIENT_ID": "sandbox-client-id",
                "CC_CLIENT_SECRET": "sandbox-client-secret",
                "FLUSH_DELAY_SECONDS": 1.0,
                "LOG_LEVEL": "WARNING",
            }
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log in the story
        self.http = make_server("127.0.0.1", port, self.app, threaded=True)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        say(f"Service                   {self.base}  (admin token printed below)")
        say(f"Dashboard                 {self.base}/  (sign in with the admin token)")

        self.admin = requests.Session()
        self.admin.trust_env = False
        self.admin.headers["Authorization"] = f"Bearer {self.admin_token}"
        self.sf = requests.Session()
        self.sf.trust_env = False
        self.sf.verify = str(self.sandboxes.tls.ca_cert)
        self.cc = requests.Session()
        self.cc.trust_env = False

    def stop(self) -> None:
        # Deferred like create_app above: the app module is a heavy import.
        from app import stop_background

        self.http.shutdown()
        stop_background(self.app)
        self.sandboxes.stop()

    # --- helpers ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.admin.request(method, f"{self.base}/admin/api{path}", timeout=60, **kwargs)
        if r.status_code >= 400:
            raise SystemExit(f"admin API {method} {path} answered {r.status_code}: {r.text[:800]}")
        return r.json() if r.content else None

    def sf_call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.sf.request(method, f"{self.sf_url}{path}", timeout=600, **kwargs)
        if r.status_code >= 400:
            raise SystemExit(f"Salesforce sandbox {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def cc_contact(self, email: str) -> dict[str, Any] | None:
        r = self.cc.get(f"{self.cc_url}/_sandbox/contacts", params={"email": email}, timeout=30)
        return r.json() if r.status_code == 200 else None

    def pubsub_streams(self) -> list[dict[str, Any]]:
        """The Subscribe streams the sandbox org's Pub/Sub API has open now."""
        return list(self.sf_call("GET", "/_sandbox/pubsub/state")["subscribers"])

    def wait_subscribed(self, topic: str, timeout: float = 60.0) -> None:
        """Until the listener's stream on ``topic`` is open: events before it are not replayed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(s["topic"] == topic for s in self.pubsub_streams()):
                return
            time.sleep(0.25)
        raise SystemExit(f"the listener did not subscribe to {topic}; see /readyz?verbose")

    def delivered(self, topic: str) -> int:
        return sum(s["delivered"] for s in self.pubsub_streams() if s["topic"] == topic)

    def wait_idle(self, setup_id: int, timeout: float = 300.0) -> None:
        """Until no change is pending and no run is running."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            status = self.api("GET", f"/setups/{setup_id}/status")
            busy = status["pending"] or status["active_run"] is not None
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 1.5:
                return
            time.sleep(0.25)
        raise SystemExit("the sync did not settle in time; see the runs with the admin API")

    # --- the story -------------------------------------------------------------------------------

    def connect(self) -> tuple[int, int]:
        step("Connecting both accounts through their OAuth flows")
        ids = []
        for vendor, label in (("salesforce", "Sandbox org"), ("constantcontact", "Sandbox CC")):
            start = self.api("POST", "/connections/start", json={"vendor": vendor, "label": label})
            session = self.sf if vendor == "salesforce" else self.cc
            # The sandboxes auto-approve and redirect to our callback, which stores the tokens.
            r = session.get(start["authorize_url"], timeout=30, allow_redirects=True)
            if r.status_code >= 400:
                raise SystemExit(f"OAuth callback for {vendor} failed: {r.status_code} {r.text}")
            items = self.api("GET", "/connections")["items"]
            conn = max((c for c in items if c["vendor"] == vendor), key=lambda c: c["id"])
            say(f"{vendor:16} connection {conn['id']}: {conn['status']} ({conn['label']})")
            ids.append(conn["id"])
        return ids[0], ids[1]

    def create_setup(self, sf_conn: int, cc_conn: int) -> dict[str, Any]:
        step("Creating a setup (Contacts → Constant Contact main list)")
        body = {
            "name": "Demo setup",
            "object_type": "Contact",
            "main_list": MAIN_LIST,
            "salesforce_connection": sf_conn,
            "constant_contact_connection": cc_conn,
            "unsubscribe_on_sf_opt_out": True,
            "remove_on_sf_delete": True,
            "salesforce_changes": ["pubsub"],
        }
        setup = self.api("POST", "/setups", json=body)
        say(
            f"setup {setup['id']}: {setup['name']!r}, Salesforce changes through the Pub/Sub door "
            "(salesforce_changes: pubsub)"
        )
        self.wait_subscribed(CONTACT_CHANNEL)
        say(
            f"the listener subscribed to {CONTACT_CHANNEL} on the org's Pub/Sub API "
            "(no webhook is configured: no Flow, no callout)"
        )
        return dict(setup)

    def initial_sync(self, setup_id: int) -> None:
        step(f"Seeding {self.contacts:,} Salesforce contacts, then Sync Now")
        seeded = self.sf_call("POST", "/_sandbox/seed", json={"contacts": self.contacts})
        say(f"seeded: {json.dumps(seeded)}")
        started = time.monotonic()
        self.api("POST", f"/setups/{setup_id}/sync")
        self.wait_idle(setup_id)
        say(f"Sync Now finished in {time.monotonic() - started:.1f}s")
        self.print_last_run(setup_id)

    def changes(self, setup_id: int) -> None:
        step(
            "Changing records in Salesforce: Change Data Capture over the Pub/Sub API, read by "
            "the listener, drives the sync"
        )
        delivered_before = self.delivered(CONTACT_CHANNEL)
        rec = "/_sandbox/records/Contact"
        ada = self.sf_call(
            "POST",
            rec,
            json={
                "FirstName": "Ada",
                "LastName": "Lovelace",
                "Email": "ada@example.org",
                "Title": "Analyst",
            },
        )
        grace = self.sf_call(
            "POST",
            rec,
            json={"FirstName": "Grace", "LastName": "Hopper", "Email": "grace@example.org"},
        )
        alan = self.sf_call(
            "POST",
            rec,
            json={"FirstName": "Alan", "LastName": "Turing", "Email": "alan@example.org"},
        )
        edsger = self.sf_call(
            "POST",
            rec,
            json={"FirstName": "Edsger", "LastName": "Dijkstra", "Email": "edsger@old.example.org"},
        )
        self.wait_idle(setup_id)
        say("created 4 contacts (Ada, Grace, Alan, Edsger)")
        self.sf_call("PATCH", f"{rec}/{ada['id']}", json={"Title": "Countess of Computing"})
        self.sf_call("PATCH", f"{rec}/{grace['id']}", json={"HasOptedOutOfEmail": True})
        self.sf_call("DELETE", f"{rec}/{alan['id']}")
        self.sf_call("PATCH", f"{rec}/{edsger['id']}", json={"Email": "edsger@new.example.org"})
        say("edited Ada's title, opted Grace out, deleted Alan, changed Edsger's email")
        self.wait_idle(setup_id)
        for email, what in (
            ("ada@example.org", "title edited"),
            ("grace@example.org", "opted out in Salesforce"),
            ("alan@example.org", "deleted in Salesforce"),
            ("edsger@old.example.org", "old address"),
            ("edsger@new.example.org", "new address"),
        ):
            self.show_contact(email, what)
        say(
            f"the listener's {CONTACT_CHANNEL} stream delivered "
            f"{self.delivered(CONTACT_CHANNEL) - delivered_before} change events for these"
        )

        step(f"A burst: {self.burst} contacts edited at once")
        page = self.sf_call("GET", rec, params={"limit": self.burst})
        started = time.monotonic()
        for i, record in enumerate(page.get("records", [])[: self.burst]):
            self.sf_call("PATCH", f"{rec}/{record['Id']}", json={"Title": f"Burst title {i}"})
        self.wait_idle(setup_id)
        say(
            f"burst settled {time.monotonic() - started:.1f}s after the first edit "
            f"({self.delivered(CONTACT_CHANNEL) - delivered_before} change events read so far)"
        )
        self.print_last_run(setup_id)

    def back_to_salesforce(self, setup_id: int) -> None:
        step("Constant Contact → Salesforce: an unsubscribe and a new subscriber")
        token = self.cc.post(f"{self.cc_url}/_sandbox/tokens", timeout=30).json()["access_token"]
        self.cc.post(
            f"{self.cc_url}/_sandbox/unsubscribe", json={"email": "ada@example.org"}, timeout=30
        )
        say("Ada clicked 'unsubscribe' in a Constant Contact email")
        lists = self.cc.get(
            f"{self.cc_url}/v3/contact_lists",
            params={"name": MAIN_LIST},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()["lists"]
        signup = {
            "email_address": "hedy@example.org",
            "first_name": "Hedy",
            "last_name": "Lamarr",
            "company_name": "Lamarr Labs",
            "list_memberships": [lists[0]["list_id"]],
        }
        r = self.cc.post(
            f"{self.cc_url}/v3/contacts/sign_up_form",
            json=signup,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        say(f"Hedy signed up on the main list through a Constant Contact form ({r.status_code})")
        say("Sync Now (the clock polls every setup on its own schedule; this is the on-demand way)")
        self.api("POST", f"/setups/{setup_id}/sync")
        self.wait_idle(setup_id)
        self.print_last_run(setup_id)
        for email in ("ada@example.org", "hedy@example.org"):
            found = self.sf_call("GET", "/_sandbox/records/Contact", params={"email": email})
            for rec in found.get("records", []):
                account = rec.get("AccountId") or "no account"
                say(
                    f"  Salesforce {rec['Id']} {rec.get('FirstName')} {rec.get('LastName')} "
                    f"<{email}>: HasOptedOutOfEmail={rec.get('HasOptedOutOfEmail')}, {account}"
                )

    def full_sync(self, setup_id: int) -> None:
        step("Full Sync: what events cannot tell us")
        token = self.cc.post(f"{self.cc_url}/_sandbox/tokens", timeout=30).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        katherine = self.sf_call(
            "POST",
            "/_sandbox/records/Contact",
            json={"FirstName": "Katherine", "LastName": "Johnson", "Email": "kj@example.org"},
        )
        self.sf_call(
            "POST",
            "/_sandbox/records/Contact",
            json={"FirstName": "Margaret", "LastName": "Hamilton", "Email": "mh@example.org"},
        )
        self.wait_idle(setup_id)
        # A hard delete (the Recycle Bin emptied) emits no change event at all.
        self.sf_call(
            "DELETE", f"/_sandbox/records/Contact/{katherine['id']}", params={"hard": "true"}
        )
        # Someone edits a synced contact's name in Constant Contact; Salesforce owns that field.
        contact = self.cc_contact("mh@example.org") or {}
        body = {
            "email_address": {"address": "mh@example.org"},
            "first_name": "Maggie",
            "last_name": contact.get("last_name", "Hamilton"),
            "update_source": "Account",
        }
        self.cc.put(
            f"{self.cc_url}/v3/contacts/{contact.get('contact_id')}",
            json=body,
            headers=auth,
            timeout=30,
        )
        say("Katherine hard-deleted in Salesforce (no event); Margaret renamed in CC")
        started = time.monotonic()
        self.api("POST", f"/setups/{setup_id}/full-sync", json={})
        self.wait_idle(setup_id, timeout=600)
        say(f"Full Sync finished in {time.monotonic() - started:.1f}s")
        self.print_last_run(setup_id)
        self.show_contact("kj@example.org", "hard-deleted in Salesforce")
        self.show_contact("mh@example.org", "renamed in Constant Contact")

    def campaign_list(self, sf_conn: int, cc_conn: int) -> None:
        step("Segmentation: a Salesforce Campaign becomes a Constant Contact list")
        rec = "/_sandbox/records"
        people = []
        for first, last in (
            ("Rosalind", "Franklin"),
            ("Barbara", "McClintock"),
            ("Lise", "Meitner"),
        ):
            email = f"{first.lower()}@example.org"
            made = self.sf_call(
                "POST",
                f"{rec}/Contact",
                json={"FirstName": first, "LastName": last, "Email": email},
            )
            people.append((made["id"], email))
        gala = self.sf_call(
            "POST", f"{rec}/Campaign", json={"Name": CAMPAIGN, "IsActive": True, "Type": "Event"}
        )
        for contact_id, _email in people[:2]:
            self.sf_call(
                "POST",
                f"{rec}/CampaignMember",
                json={"CampaignId": gala["id"], "ContactId": contact_id},
            )
        body = {
            "name": "Campaign members",
            "object_type": "Contact",
            "main_list": "Demo: Campaign members",
            "salesforce_connection": sf_conn,
            "constant_contact_connection": cc_conn,
            "campaign_lists": {"source": "campaigns", "selected": [CAMPAIGN]},
            "salesforce_changes": ["pubsub"],
        }
        setup = self.api("POST", "/setups", json=body)
        say(
            f"Campaign {CAMPAIGN!r} (active) with Rosalind and Barbara as members; setup "
            f"{setup['id']} keeps a list per selected Campaign, and syncs only their members"
        )
        self.api("POST", f"/setups/{setup['id']}/sync")
        self.wait_idle(setup["id"])
        self.print_last_run(setup["id"])
        for _id, email in people:
            self.show_contact(email, "Campaign member" if _id != people[2][0] else "not a member")
        self.wait_subscribed(MEMBER_CHANNEL)
        self.sf_call(
            "POST",
            f"{rec}/CampaignMember",
            json={"CampaignId": gala["id"], "ContactId": people[2][0]},
        )
        say(
            f"Lise joins the Campaign in Salesforce; the listener, now also on {MEMBER_CHANNEL}, "
            "reads the change event and the setup adds her to the Campaign's list"
        )
        self.wait_idle(setup["id"])
        self.show_contact(people[2][1], "joined the Campaign")

    def campaign_results(self, setup_id: int) -> None:
        step("Campaign results: an email's opens and clicks arrive in Salesforce")
        self.api(
            "PATCH", f"/setups/{setup_id}", json={"campaign_response_mode": "campaign_and_activity"}
        )
        sent = self.cc.post(
            f"{self.cc_url}/_sandbox/emails",
            json={
                "name": EMAIL,
                "subject": "Spring is here: come and help",
                "list_names": [MAIN_LIST],
                "links": ["https://example.org/donate", "https://example.org/volunteer"],
                "rates": {"open": 0.3, "click": 0.05, "bounce": 0.01, "optout": 0.005},
                "spread_seconds": 3600,
            },
            timeout=120,
        )
        if sent.status_code != 201:
            raise SystemExit(f"sending the email failed: {sent.status_code} {sent.text[:300]}")
        made = sent.json()
        say(
            f"Constant Contact sent {EMAIL!r} to {made['sends']:,} contacts of the main list; "
            f"the sandbox drew its events: {json.dumps(made.get('contacts'))}"
        )
        self.api("POST", f"/setups/{setup_id}/campaign-results")
        self.wait_idle(setup_id)
        self.print_last_run(setup_id)
        campaigns = self.sf_call("GET", "/_sandbox/records/Campaign")["records"]
        campaign = next(c for c in campaigns if c["Name"] == EMAIL)
        say(
            f"Salesforce Campaign {campaign['Name']!r} (Type {campaign['Type']}, sent "
            f"{campaign['StartDate']}): NumberSent {campaign['NumberSent']:,.0f}, "
            f"responses {campaign['NumberOfResponses']:,}"
        )
        members = self.sf_call("GET", "/_sandbox/records/CampaignMember", params={"limit": 2000})
        statuses: dict[str, int] = {}
        for member in members["records"]:
            if member["CampaignId"] == campaign["Id"]:
                statuses[member["Status"]] = statuses.get(member["Status"], 0) + 1
        say(f"  its members by status (first 2,000 read back): {json.dumps(statuses)}")
        tasks = self.sf_call("GET", "/_sandbox/records/Task", params={"limit": 2000})["records"]
        for kind in ("Email Opened", "Email Clicked"):
            task = next((t for t in tasks if t["Subject"].startswith(kind)), None)
            if task is not None:
                when, text = task["ActivityDate"], task["Description"]
                say(f"  a Task: {task['Subject']!r} on {when}, {text!r}")

    # --- reporting -------------------------------------------------------------------------------

    def show_contact(self, email: str, what: str) -> None:
        contact = self.cc_contact(email)
        if contact is None:
            say(f"  {email:28} ({what}): not in Constant Contact")
            return
        consent = contact["email_address"]["permission_to_send"]
        lists = contact.get("list_names") or contact.get("list_memberships") or []
        name = f"{contact.get('first_name', '')} {contact.get('last_name', '')}".strip()
        title = contact.get("job_title", "")
        say(f"  {email:28} ({what}): {name!r}, {consent}, lists {lists}, title {title!r}")

    def print_last_run(self, setup_id: int) -> None:
        items = self.api("GET", f"/setups/{setup_id}/runs", params={"limit": 1})["items"]
        if items:
            run = items[0]
            say(
                f"last run #{run['id']} {run['kind']} {run['status']}, "
                f"API calls {json.dumps(run.get('api_calls'))}:"
            )
            for phrase in run_counts.describe(run.get("counts") or {}):
                say(f"  {phrase}")

    def say_dashboard(self) -> None:
        say(f"dashboard      {self.base}/  (open it in a browser)")
        say(f"admin token    {self.admin_token}  (paste it on the sign-in page)")

    def dashboard_only(self) -> None:
        """Seed Salesforce, connect nothing, and say how to go on in the browser."""
        step(f"Seeding {self.contacts:,} Salesforce contacts (nothing is connected or set up yet)")
        seeded = self.sf_call("POST", "/_sandbox/seed", json={"contacts": self.contacts})
        say(f"seeded: {json.dumps(seeded)}")
        step("Go on in the dashboard (the service and both sandboxes stay up until Ctrl-C)")
        self.say_dashboard()
        say("then, in the browser:")
        say("  1. Connections: Connect Salesforce, then Connect Constant Contact; on each")
        say("     sandbox's page choose Allow (the browser first warns about the Salesforce")
        say(f"     sandbox's own certificate, CA {self.sandboxes.tls.ca_cert}: go on)")
        say("  2. Setups: New setup, and follow the wizard's steps to Finish")
        say("  3. Sync Now, and watch the run on the setup's page")
        say(f"sandboxes      {self.sf_url}/_sandbox/state  {self.cc_url}/_sandbox/state")

    def summary(self, setup_id: int, keep_running: bool) -> None:
        step("What happened")
        items = list(reversed(self.api("GET", f"/setups/{setup_id}/runs")["items"]))
        for run in items:
            say(
                f"run #{run['id']} {run['kind']} {run['status']}, "
                f"API calls {json.dumps(run.get('api_calls'))}"
            )
            for phrase in run_counts.describe(run.get("counts") or {}):
                say(f"    {phrase}")
        cc_state = self.cc.get(f"{self.cc_url}/_sandbox/state", timeout=30).json()
        sf_state = self.sf_call("GET", "/_sandbox/state")
        say(f"Constant Contact holds {json.dumps(cc_state.get('records'))}")
        say(f"Constant Contact API calls: {json.dumps(cc_state.get('calls', {}).get('by_family'))}")
        say(f"Salesforce API calls: {json.dumps(sf_state.get('api_calls'))}")
        errors = self.api("GET", f"/setups/{setup_id}/errors")["items"]
        say(f"open sync errors: {len(errors)}")

        if keep_running:
            step("Where to look (the service and both sandboxes stay up until Ctrl-C)")
        else:
            step("Where to look (these stop with the demo, now)")
        self.say_dashboard()
        say(
            f"admin API      curl -H 'Authorization: Bearer {self.admin_token}' "
            f"{self.base}/admin/api/setups/{setup_id}/runs"
        )
        say(f"OpenAPI        {self.base}/admin/api/openapi.json")
        say(f"health         {self.base}/livez  {self.base}/readyz?verbose")
        say(f"metrics        {self.base}/metrics")
        say(f"sandboxes      {self.sf_url}/_sandbox/state  {self.cc_url}/_sandbox/state")
        say(f"database       {WORKDIR / 'demo.sqlite3'}")
        if not keep_running:
            say(f"to keep them up and try the dashboard or the admin API: {KEEP_RUNNING}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=3000, help="Salesforce contacts to seed")
    parser.add_argument("--burst", type=int, default=300, help="contacts edited in the burst")
    parser.add_argument("--keep-running", action="store_true", help="serve until Ctrl-C")
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="start the sandboxes and the service with seeded contacts, connect nothing, and "
        "serve until Ctrl-C: connect, set up and sync in the dashboard yourself (make dashboard)",
    )
    args = parser.parse_args(argv)
    # Ctrl-C and a plain `kill` both stop everything cleanly (a background job ignores SIGINT).
    signal.signal(signal.SIGTERM, _interrupt)

    demo = Demo(args.contacts, args.burst, consent_page=args.dashboard)
    demo.start()
    if args.dashboard:
        try:
            demo.dashboard_only()
            say("\nServing until Ctrl-C.")
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            demo.stop()
        say("\nStopped.")
        return 0
    try:
        sf_conn, cc_conn = demo.connect()
        setup = demo.create_setup(sf_conn, cc_conn)
        demo.initial_sync(setup["id"])
        demo.changes(setup["id"])
        demo.back_to_salesforce(setup["id"])
        demo.full_sync(setup["id"])
        demo.campaign_results(setup["id"])
        demo.campaign_list(sf_conn, cc_conn)
        demo.summary(setup["id"], args.keep_running)
        if args.keep_running:
            say("\nServing until Ctrl-C.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
    if args.keep_running:
        say("\nDemo finished.")
    else:
        say(
            "\nDemo finished; the service and sandboxes have stopped "
            f"({KEEP_RUNNING} keeps them up)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
