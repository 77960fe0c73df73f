"""Bulk activities: JSON import, list membership changes, deletes, exports, and their status polls.

An activity is queued when it is posted and its work is applied only when it completes: after
ACTIVITY_STEPS status polls (initialized → processing → completed), or, with ACTIVITY_SECONDS set,
once that long has passed since it was posted (sandbox clock), polled or not. Completing one first
completes every activity queued before it, so work lands in the order it was posted, as in
Constant Contact's queue. In step mode a client that never polls never sees the result
(deliberately unkind).
"""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.constantcontact import errors
from sandbox.constantcontact.account import current_sandbox
from sandbox.constantcontact.contacts import json_body, limit_arg
from sandbox.constantcontact.store import (
    CONTACT_STATUSES,
    ContactQuery,
    Store,
    is_uuid,
    iso,
)

bp = Blueprint("cc_activities", __name__, url_prefix="/v3")

MAX_IMPORT_ROWS = 40000
MAX_IMPORT_BYTES = 4 * 1024 * 1024
MAX_CONTACT_IDS = 500
MAX_LIST_IDS = 50
RETENTION_MS = 10 * 86400 * 1000  # GET /activities lists the past 10 days
EXPORT_FIELDS = (
    "contact_id",
    "email_address",
    "first_name",
    "last_name",
    "job_title",
    "company_name",
    "birthday_month",
    "birthday_day",
    "anniversary",
    "permission_to_send",
    "email_optin_source",
    "email_optin_date",
    "email_optout_source",
    "email_optout_date",
    "email_optout_reason",
    "list_memberships",
    "created_at",
    "updated_at",
)
MEMBERSHIP_KINDS = ("add_list_memberships", "remove_list_memberships", "contact_delete")


@dataclass
class Activity:
    activity_id: str
    kind: str
    created_at: int
    payload: Any
    status: dict[str, int]
    state: str = "initialized"
    updated_at: int = 0
    started_at: int | None = None
    completed_at: int | None = None
    polls: int = 0
    percent_done: int = 0
    errors: list[str] = field(default_factory=list)
    result: str | None = None  # the CSV of a finished export


class Activities:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.lock = threading.RLock()
        self.items: dict[str, Activity] = {}

    def reset(self) -> None:
        with self.lock:
            self.items.clear()

    @property
    def store(self) -> Store:
        return self.sandbox.store  # type: ignore[no-any-return]

    def queued(self) -> int:
        return sum(1 for a in self.items.values() if a.state in ("initialized", "processing"))

    def create(self, kind: str, payload: Any, status: dict[str, int]) -> Activity:
        now = self.store.now()
        with self.lock:
            if self.queued() >= int(self.sandbox.config["MAX_QUEUED_ACTIVITIES"]):
                raise errors.CCError(
                    429,
                    "throttled",
                    "Too many requests. You exceeded 1,000 queued activities"
                    " for this user account.",
                )
            activity = Activity(str(uuid.uuid4()), kind, now, payload, status, updated_at=now)
            self.items[activity.activity_id] = activity
            if int(self.sandbox.config["ACTIVITY_STEPS"]) <= 0:
                self._complete_through(activity)
        self._settle_when_due()
        return activity

    def _settle_when_due(self) -> None:
        """Time-based mode: let time do its work when the activity is due even if no request
        comes then, as Constant Contact does (its contacts change when the import is processed,
        not when someone polls). A daemon timer on the wall clock; a moved sandbox clock only
        makes it find nothing due yet (the next request settles then)."""
        seconds = self.sandbox.config.get("ACTIVITY_SECONDS")
        if seconds is None:
            return
        # A few ms past due: the store's clock counts whole milliseconds.
        timer = threading.Timer(float(seconds) + 0.005, self.settle)
        timer.daemon = True
        timer.start()

    def get(self, activity_id: str) -> Activity:
        with self.lock:
            found = self.items.get(activity_id.lower()) if is_uuid(activity_id) else None
        if found is None:
            raise errors.not_found(f"Activity {activity_id} not found.")
        return found

    def settle(self) -> None:
        """Time-based mode: complete, in order, every activity whose processing time has passed.

        Constant Contact processes activities whether or not anyone polls them, so with
        ACTIVITY_SECONDS set every request first lets time do its work (polls still count too).
        """
        seconds = self.sandbox.config.get("ACTIVITY_SECONDS")
        if seconds is None:
            return
        now = self.store.now()
        with self.lock:
            due = [
                a
                for a in self.items.values()
                if a.state in ("initialized", "processing")
                and (now - a.created_at) / 1000.0 >= float(seconds)
            ]
            if due:
                self._complete_through(due[-1])

    def poll(self, activity_id: str) -> Activity:
        """One status poll: moves the activity a step along, completing it on the last step."""
        with self.lock:
            activity = self.get(activity_id)
            if activity.state not in ("initialized", "processing"):
                return activity
            activity.polls += 1
            now = self.store.now()
            seconds = self.sandbox.config.get("ACTIVITY_SECONDS")
            if seconds is not None:
                # Time-based, like the real service: done once it has been processing long enough.
                elapsed = (now - activity.created_at) / 1000.0
                done = elapsed >= float(seconds)
                percent = int(100 * elapsed / float(seconds)) if float(seconds) else 100
            else:
                steps = max(1, int(self.sandbox.config["ACTIVITY_STEPS"]))
                done = activity.polls >= steps
                percent = activity.polls * 100 // steps
            if done:
                self._complete_through(activity)
            else:
                activity.state = "processing"
                activity.started_at = activity.started_at or now
                activity.updated_at = now
                activity.percent_done = min(99, percent)
            return activity

    def _complete_through(self, target: Activity) -> None:
        # dicts keep insertion order, which is the order activities were posted in
        pending = [a for a in self.items.values() if a.state in ("initialized", "processing")]
        for activity in pending:
            self._run(activity)
            if activity is target:
                break

    def _run(self, activity: Activity) -> None:
        now = self.store.now()
        activity.started_at = activity.started_at or now
        try:
            WORK[activity.kind](self.store, activity)
            activity.state = "completed"
        except errors.CCError as exc:
            activity.state = "failed"
            activity.errors.append(exc.message)
        activity.percent_done = 100
        activity.completed_at = activity.updated_at = self.store.now()

    def render(self, activity: Activity) -> dict[str, Any]:
        out: dict[str, Any] = {
            "activity_id": activity.activity_id,
            "state": activity.state,
            "created_at": iso(activity.created_at),
            "updated_at": iso(activity.updated_at),
            "percent_done": activity.percent_done,
            "activity_errors": list(activity.errors),
        }
        links: dict[str, Any] = {"self": {"href": f"/v3/activities/{activity.activity_id}"}}
        if activity.kind != "list_delete":
            if activity.started_at is not None:
                out["started_at"] = iso(activity.started_at)
            if activity.completed_at is not None:
                out["completed_at"] = iso(activity.completed_at)
            out["status"] = dict(activity.status)
            if activity.kind == "contact_exports" and activity.state == "completed":
                links["results"] = {"href": f"/v3/contact_exports/{activity.activity_id}"}
        out["_links"] = links
        return out

    def listing(self, state: str | None, limit: int) -> list[Activity]:
        horizon = self.store.now() - RETENTION_MS
        with self.lock:
            # newest first: activities are stored in the order they were posted
            found = [
                a
                for a in reversed(self.items.values())
                if a.created_at >= horizon and (state is None or a.state == state)
            ]
        return found[:limit]

    def state(self) -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = {}
            for a in self.items.values():
                counts[a.state] = counts.get(a.state, 0) + 1
            return counts


# -- the work, applied at completion -------------------------------------------------------------


def _work_import(store: Store, activity: Activity) -> None:
    rows, list_ids = activity.payload
    result = store.import_contacts(rows, list_ids)
    activity.status = result.status()
    activity.errors.extend(result.errors)
    activity.payload = None  # free the rows


def _source_contacts(store: Store, source: dict[str, Any], activity: Activity) -> list[int]:
    if source.get("contact_ids"):
        found, missing = store.rowids_for_contact_ids(source["contact_ids"])
        activity.errors.extend(f"Contact {m} not found." for m in missing)
        return found
    if source.get("list_ids"):
        contacts = store.member_rowids(store.resolve_lists(source["list_ids"], status=404))
    else:
        contacts = store.active_rowids()
    excluded = (source.get("exclude") or {}).get("contact_ids") or []
    if excluded:
        drop = set(store.rowids_for_contact_ids(excluded)[0])
        contacts = [c for c in contacts if c not in drop]
    return contacts


def _work_membership(store: Store, activity: Activity) -> None:
    body = activity.payload
    source = {**body["source"], "exclude": body.get("exclude")}
    targets = store.resolve_lists(body["list_ids"], status=404)
    contacts = _source_contacts(store, source, activity)
    if activity.kind == "add_list_memberships":
        store.add_members(contacts, targets)
    else:
        store.remove_members(contacts, targets)
    activity.status = {
        "items_total_count": len(contacts),
        "items_completed_count": len(contacts),
        "list_count": len(targets),
    }


def _work_delete(store: Store, activity: Activity) -> None:
    body = activity.payload
    contacts = _source_contacts(store, body, activity)
    store.delete_contacts(contacts)
    activity.status = {
        "items_total_count": len(contacts),
        "items_completed_count": len(contacts),
        "list_count": len(body.get("list_ids") or []),
    }


def _work_list_delete(store: Store, activity: Activity) -> None:
    store.delete_list(activity.payload)


def _work_export(store: Store, activity: Activity) -> None:
    body = activity.payload
    fields = body.get("fields") or list(EXPORT_FIELDS)
    names = {f["custom_field_id"]: f["name"] for f in store.custom_fields()}
    if not body.get("fields"):
        fields = fields + [f"cf:{n}" for n in names.values()]
    q = ContactQuery(statuses=[body["status"]] if body.get("status") else [])
    if body.get("list_ids"):
        store.resolve_lists(body["list_ids"], status=404)
        q.lists = [x.lower() for x in body["list_ids"]]
    wanted_ids = {c.lower() for c in body.get("contact_ids") or []}
    excluded = {c.lower() for c in (body.get("exclude") or {}).get("contact_ids") or []}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(fields)
    total = 0
    for rows in store.iter_contacts(q):
        rows = [
            r
            for r in rows
            if (not wanted_ids or r["contact_id"] in wanted_ids) and r["contact_id"] not in excluded
        ]
        lists = store.list_ids_of([r["id"] for r in rows]) if "list_memberships" in fields else {}
        for row in rows:
            writer.writerow(_export_row(row, fields, names, lists.get(row["id"], [])))
            total += 1
    activity.result = out.getvalue()
    activity.status = {"items_total_count": total, "items_completed_count": total}


# How each built-in export column is read from a contact row (its JSON ``data``, the ``email``
# part of it, its lists). Only the requested columns are computed: at a million rows the dates
# nobody asked for were most of an export's time.
_EXPORT_VALUES: dict[str, Callable[[Any, dict[str, Any], dict[str, Any], list[str]], Any]] = {
    "contact_id": lambda row, data, mail, lists: row["contact_id"],
    "email_address": lambda row, data, mail, lists: row["email"],
    "permission_to_send": lambda row, data, mail, lists: row["permission"],
    "email_optin_source": lambda row, data, mail, lists: mail.get("opt_in_source"),
    "email_optin_date": lambda row, data, mail, lists: iso(mail.get("opt_in_date")),
    "email_optout_source": lambda row, data, mail, lists: mail.get("opt_out_source"),
    "email_optout_date": lambda row, data, mail, lists: iso(row["opt_out_at"]),
    "email_optout_reason": lambda row, data, mail, lists: mail.get("opt_out_reason"),
    "list_memberships": lambda row, data, mail, lists: ";".join(lists),
    "created_at": lambda row, data, mail, lists: iso(row["created_at"]),
    "updated_at": lambda row, data, mail, lists: iso(row["updated_at"]),
}


def _export_row(row: Any, fields: list[str], names: dict[str, str], lists: list[str]) -> list[Any]:
    data = json.loads(row["data"])
    mail = data.get("email", {})
    customs: dict[str, Any] | None = None
    out = []
    for name in fields:
        builtin = _EXPORT_VALUES.get(name)
        if builtin is not None:
            out.append(builtin(row, data, mail, lists) or "")
        elif name.startswith("cf:"):
            if customs is None:
                customs = {
                    names[k]: v for k, v in data.get("custom_fields", {}).items() if k in names
                }
            out.append(customs.get(name[3:], ""))
        else:
            value = data.get(name)
            out.append("" if value is None else value)
    return out


WORK = {
    "contacts_json_import": _work_import,
    "add_list_memberships": _work_membership,
    "remove_list_memberships": _work_membership,
    "contact_delete": _work_delete,
    "list_delete": _work_list_delete,
    "contact_exports": _work_export,
}


# -- routes ------------------------------------------------------------------------------------


def _id_array(body: dict[str, Any], key: str, maximum: int, *, required: bool = False) -> list[str]:
    value = body.get(key)
    if value is None:
        if required:
            raise errors.bad_request(f"{key} is required.")
        return []
    if not isinstance(value, list) or not all(is_uuid(v) for v in value):
        raise errors.bad_request(f"{key} must be an array of ids.")
    if len(value) > maximum:
        raise errors.bad_request(f"{key} accepts at most {maximum} ids.")
    if required and not value:
        raise errors.bad_request(f"{key} must not be empty.")
    return value


def _manager() -> Activities:
    return current_sandbox().activities  # type: ignore[no-any-return]


def _created(activity: Activity) -> tuple[Response, int]:
    return jsonify(_manager().render(activity)), 201


@bp.post("/activities/contacts_json_import")
def contacts_json_import() -> tuple[Response, int]:
    if (request.content_length or 0) >= MAX_IMPORT_BYTES:
        raise errors.bad_request("The request body must be smaller than 4 MB.")
    body = json_body()
    rows = body.get("import_data")
    if not isinstance(rows, list) or not rows:
        raise errors.bad_request("import_data is required.")
    if len(rows) > MAX_IMPORT_ROWS:
        raise errors.bad_request(f"import_data accepts at most {MAX_IMPORT_ROWS} contacts.")
    list_ids = _id_array(body, "list_ids", MAX_LIST_IDS, required=True)
    sms = body.get("sms_permission_to_send")
    if sms is not None and sms not in ("explicit", "not_set"):
        raise errors.bad_request("sms_permission_to_send must be explicit or not_set.")
    current_sandbox().store.resolve_lists(list_ids)
    status = {
        "items_total_count": len(rows),
        "person_count": 0,
        "error_count": 0,
        "correctable_count": 0,
        "cannot_add_to_list_count": 0,
    }
    return _created(_manager().create("contacts_json_import", (rows, list_ids), status))


def _membership_body(body: dict[str, Any]) -> dict[str, Any]:
    source = body.get("source")
    if not isinstance(source, dict):
        raise errors.bad_request("source is required.")
    for unsupported in ("segment_id", "tag_ids", "engagement_level"):
        if source.get(unsupported):
            raise errors.bad_request(f"The sandbox does not support source.{unsupported}.")
    given = [k for k in ("contact_ids", "list_ids", "all_active_contacts") if source.get(k)]
    if len(given) != 1:
        raise errors.bad_request(
            "source must name exactly one of contact_ids, list_ids or all_active_contacts."
        )
    _id_array(source, "contact_ids", MAX_CONTACT_IDS)
    _id_array(source, "list_ids", MAX_LIST_IDS)
    exclude = body.get("exclude") or {}
    if exclude.get("contact_ids") and given[0] == "contact_ids":
        raise errors.bad_request("exclude is only allowed with list_ids or all_active_contacts.")
    if exclude:
        _id_array(exclude, "contact_ids", 10**6)
    _id_array(body, "list_ids", MAX_LIST_IDS, required=True)
    return body


@bp.post("/activities/add_list_memberships")
def add_list_memberships() -> tuple[Response, int]:
    body = _membership_body(json_body())
    current_sandbox().store.resolve_lists(body["list_ids"])
    status = {
        "items_total_count": 0,
        "items_completed_count": 0,
        "list_count": len(body["list_ids"]),
    }
    return _created(_manager().create("add_list_memberships", body, status))


@bp.post("/activities/remove_list_memberships")
def remove_list_memberships() -> tuple[Response, int]:
    body = _membership_body(json_body())
    current_sandbox().store.resolve_lists(body["list_ids"], status=404)
    status = {
        "items_total_count": 0,
        "items_completed_count": 0,
        "list_count": len(body["list_ids"]),
    }
    return _created(_manager().create("remove_list_memberships", body, status))


@bp.post("/activities/contact_delete")
def contact_delete() -> tuple[Response, int]:
    body = json_body()
    contact_ids = _id_array(body, "contact_ids", MAX_CONTACT_IDS)
    list_ids = _id_array(body, "list_ids", MAX_LIST_IDS)
    if bool(contact_ids) == bool(list_ids):
        raise errors.bad_request("Give exactly one of contact_ids or list_ids.")
    status = {"items_total_count": 0, "items_completed_count": 0, "list_count": len(list_ids)}
    payload = {"contact_ids": contact_ids, "list_ids": list_ids}
    return _created(_manager().create("contact_delete", payload, status))


@bp.post("/activities/contact_exports")
def contact_exports() -> tuple[Response, int]:
    body = json_body()
    contact_ids = _id_array(body, "contact_ids", MAX_CONTACT_IDS)
    list_ids = _id_array(body, "list_ids", MAX_LIST_IDS)
    if contact_ids and list_ids:
        raise errors.bad_request("contact_ids and list_ids cannot be combined.")
    for unsupported in ("segment_id", "tag_ids", "new_subscriber"):
        if body.get(unsupported):
            raise errors.bad_request(f"The sandbox does not support {unsupported} in exports.")
    status_filter = body.get("status")
    if status_filter is not None and status_filter not in CONTACT_STATUSES:
        raise errors.bad_request(f"status {status_filter!s} is not valid.")
    fields = body.get("fields")
    if fields is not None:
        if not isinstance(fields, list) or not fields:
            raise errors.bad_request("fields must be a non-empty array.")
        bad = [f for f in fields if not (f in EXPORT_FIELDS or str(f).startswith("cf:"))]
        if bad:
            raise errors.bad_request(f"Field {bad[0]!s} cannot be exported.")
        optin = [f for f in fields if str(f).startswith(("email_optin", "email_optout"))]
        if optin and "email_address" not in fields:
            raise errors.bad_request(f"Exporting {optin[0]} needs email_address as well.")
    status = {"items_total_count": 0, "items_completed_count": 0}
    return _created(_manager().create("contact_exports", body, status))


@bp.get("/contact_exports/<file_export_id>")
def get_export(file_export_id: str) -> Response:
    activity = _manager().get(file_export_id)
    if activity.kind != "contact_exports" or activity.result is None:
        raise errors.not_found("The export file is not available (is the activity completed?).")
    return Response(activity.result, mimetype="text/csv")


@bp.get("/activities/<activity_id>")
def get_activity(activity_id: str) -> Response:
    manager = _manager()
    return jsonify(manager.render(manager.poll(activity_id)))


@bp.get("/activities")
def list_activities() -> Response:
    state = request.args.get("state")
    if state is not None and state not in (
        "processing",
        "completed",
        "cancelled",
        "failed",
        "timed_out",
    ):
        raise errors.bad_request(f"state {state} is not valid.")
    manager = _manager()
    limit = limit_arg(50, 500)
    if manager.sandbox.config.get("ACTIVITY_SECONDS") is None:
        # Step mode stands polls in for time: a listing is one poll of each unfinished activity
        # it shows (oldest first), as a by-id poll of each would be.
        for activity in reversed(manager.listing(None, limit)):
            if activity.state in ("initialized", "processing"):
                manager.poll(activity.activity_id)
    found = manager.listing(state, limit)
    return jsonify(activities=[manager.render(a) for a in found])
