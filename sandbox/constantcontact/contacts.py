"""`/v3/contacts`: paged, filtered reads; create, replace, soft delete; the sign-up form."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.constantcontact import errors
from sandbox.constantcontact.account import current_sandbox
from sandbox.constantcontact.store import (
    CONTACT_STATUSES,
    INCLUDES,
    RANGE_COLUMNS,
    ContactQuery,
    Store,
    normalize_email,
    parse_time,
)

bp = Blueprint("cc_contacts", __name__, url_prefix="/v3")


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise errors.bad_request("The request body is not valid JSON.")
    return body


def csv_arg(name: str, allowed: tuple[str, ...], max_items: int | None = None) -> list[str]:
    raw = request.args.get(name)
    if raw is None:
        return []
    values = [v.strip() for v in raw.split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise errors.bad_request(f"{name} value {bad[0]} is not valid.")
    if max_items is not None and len(values) > max_items:
        raise errors.bad_request(f"{name} accepts at most {max_items} values.")
    return values


def limit_arg(default: int, maximum: int) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise errors.bad_request("limit must be an integer.") from None
    if not 1 <= limit <= maximum:
        raise errors.bad_request(f"limit must be between 1 and {maximum}.")
    return limit


def bool_arg(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise errors.bad_request(f"{name} must be true or false.")
    return raw.lower() == "true"


def encode_cursor(state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        state = json.loads(raw)
    except (binascii.Error, ValueError):
        raise errors.bad_request("The cursor is not valid.") from None
    if not isinstance(state, dict) or "a" not in state:
        raise errors.bad_request("The cursor is not valid.")
    return state


def _query_from_args() -> dict[str, Any]:
    args = request.args
    for unsupported in ("segment_id", "tags", "sms_status"):
        if args.get(unsupported):
            raise errors.bad_request(f"The sandbox does not support the {unsupported} filter.")
    q = ContactQuery(statuses=csv_arg("status", CONTACT_STATUSES))
    if "email" in args:
        q.email = normalize_email(args["email"])
    if args.get("lists"):
        q.lists = [x.strip().lower() for x in args["lists"].split(",") if x.strip()]
        if len(q.lists) > 25:
            raise errors.bad_request("lists accepts at most 25 list ids.")
    for name in RANGE_COLUMNS:
        if args.get(name):
            q.ranges[name] = parse_time(args[name], name)
    return {
        "q": q.as_dict(),
        "a": 0,
        "n": limit_arg(50, 500),
        "i": csv_arg("include", INCLUDES),
        "c": bool_arg("include_count"),
    }


@bp.get("/contacts")
def list_contacts() -> Response:
    store: Store = current_sandbox().store
    cursor = request.args.get("cursor")
    state = decode_cursor(cursor) if cursor else _query_from_args()
    q = ContactQuery.from_dict(state["q"])
    rows, more, total = store.query_contacts(q, int(state["a"]), int(state["n"]), bool(state["c"]))
    body: dict[str, Any] = {"contacts": store.render_many(rows, state["i"])}
    if total is not None:
        body["contacts_count"] = total
    if more:
        nxt = {**state, "a": rows[-1]["id"]}
        body["_links"] = {"next": {"href": f"/v3/contacts?cursor={encode_cursor(nxt)}"}}
    return jsonify(body)


@bp.post("/contacts")
def create_contact() -> tuple[Response, int]:
    store: Store = current_sandbox().store
    row = store.create_contact(json_body())
    return jsonify(store.render_contact(row, INCLUDES)), 201


@bp.get("/contacts/<contact_id>")
def get_contact(contact_id: str) -> Response:
    store: Store = current_sandbox().store
    row = store.require_contact(contact_id)
    return jsonify(store.render_contact(row, csv_arg("include", INCLUDES)))


@bp.put("/contacts/<contact_id>")
def put_contact(contact_id: str) -> Response:
    store: Store = current_sandbox().store
    row = store.put_contact(contact_id, json_body())
    return jsonify(store.render_contact(row, INCLUDES))


@bp.delete("/contacts/<contact_id>")
def delete_contact(contact_id: str) -> tuple[str, int]:
    store: Store = current_sandbox().store
    row = store.require_contact(contact_id)
    store.delete_contacts([row["id"]])
    return "", 204


@bp.post("/contacts/sign_up_form")
def sign_up_form() -> tuple[Response, int]:
    store: Store = current_sandbox().store
    contact_id, action = store.sign_up(json_body())
    return jsonify(contact_id=contact_id, action=action), 201 if action == "created" else 200
