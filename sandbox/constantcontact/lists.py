"""`/v3/contact_lists` and `/v3/contact_custom_fields`: the account's lists and custom fields."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.constantcontact import errors
from sandbox.constantcontact.account import current_sandbox
from sandbox.constantcontact.contacts import (
    bool_arg,
    decode_cursor,
    encode_cursor,
    json_body,
    limit_arg,
)
from sandbox.constantcontact.store import Store

bp = Blueprint("cc_lists", __name__, url_prefix="/v3")


def _store() -> Store:
    return current_sandbox().store  # type: ignore[no-any-return]


def _membership_arg() -> str | None:
    which = request.args.get("include_membership_count")
    if which is not None and which not in ("all", "active"):
        raise errors.bad_request("include_membership_count must be all or active.")
    return which


@bp.get("/contact_lists")
def get_lists() -> Response:
    store = _store()
    cursor = request.args.get("cursor")
    if cursor:
        state = decode_cursor(cursor)
    else:
        status = request.args.get("status")
        if status is not None and status not in ("all", "active", "deleted"):
            raise errors.bad_request("status must be all, active or deleted.")
        if request.args.get("channel_type", "email") != "email":
            raise errors.bad_request("The sandbox holds email lists only.")
        state = {
            "a": 0,
            "n": limit_arg(50, 1000),
            "s": status,
            "name": request.args.get("name"),
            "c": bool_arg("include_count"),
            "m": _membership_arg(),
        }
    rows, more, total = store.query_lists(
        state["s"], state["name"], int(state["a"]), int(state["n"])
    )
    which = state["m"]
    body: dict[str, Any] = {
        "lists": [
            store.render_list(r, store.membership_count(r["id"], which) if which else None)
            for r in rows
        ]
    }
    if state["c"]:
        body["lists_count"] = total
    if more:
        nxt = {**state, "a": rows[-1]["id"]}
        body["_links"] = {"next": {"href": f"/v3/contact_lists?cursor={encode_cursor(nxt)}"}}
    return jsonify(body)


@bp.post("/contact_lists")
def create_list() -> tuple[Response, int]:
    store = _store()
    return jsonify(store.render_list(store.create_list(json_body()))), 201


@bp.get("/contact_lists/<list_id>")
def get_list(list_id: str) -> Response:
    store = _store()
    row = store.list_row(list_id)
    which = _membership_arg()
    return jsonify(
        store.render_list(row, store.membership_count(row["id"], which) if which else None)
    )


@bp.put("/contact_lists/<list_id>")
def put_list(list_id: str) -> Response:
    store = _store()
    return jsonify(store.render_list(store.put_list(list_id, json_body())))


@bp.delete("/contact_lists/<list_id>")
def delete_list(list_id: str) -> tuple[Response, int]:
    sandbox = current_sandbox()
    row = sandbox.store.list_row(list_id, include_deleted=False)
    activity = sandbox.activities.create("list_delete", row["id"], {})
    return jsonify(sandbox.activities.render(activity)), 202


@bp.get("/contact_custom_fields")
def get_custom_fields() -> Response:
    store = _store()
    limit = limit_arg(50, 100)
    cursor = request.args.get("cursor")
    after = int(decode_cursor(cursor)["a"]) if cursor else 0
    fields = store.custom_fields()
    page = fields[after : after + limit]
    body: dict[str, Any] = {"custom_fields": [store.render_custom_field(f) for f in page]}
    if after + limit < len(fields):
        nxt = encode_cursor({"a": after + limit})
        body["_links"] = {"next": {"href": f"/v3/contact_custom_fields?cursor={nxt}&limit={limit}"}}
    return jsonify(body)


@bp.post("/contact_custom_fields")
def post_custom_field() -> tuple[Response, int]:
    store = _store()
    return jsonify(store.render_custom_field(store.create_custom_field(json_body()))), 201


@bp.get("/contact_custom_fields/<custom_field_id>")
def get_custom_field(custom_field_id: str) -> Response:
    store = _store()
    return jsonify(store.render_custom_field(store.custom_field(custom_field_id)))


@bp.put("/contact_custom_fields/<custom_field_id>")
def put_custom_field(custom_field_id: str) -> Response:
    store = _store()
    return jsonify(store.render_custom_field(store.put_custom_field(custom_field_id, json_body())))


@bp.delete("/contact_custom_fields/<custom_field_id>")
def delete_custom_field(custom_field_id: str) -> tuple[str, int]:
    _store().delete_custom_field(custom_field_id)
    return "", 204
