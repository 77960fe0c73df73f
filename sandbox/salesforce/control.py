"""Salesforce-only control room under /_sandbox/: a user clicking in the org's UI, plus read-back.

Writes here go through the store with an empty changeOrigin (what Salesforce records for UI edits
outside Lightning Experience), so they produce the same change events a person's edit would. Lead
conversion and undelete live here because Salesforce's REST API offers neither. No token needed;
these routes are never faulted and never counted as API calls.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.salesforce.oauth import instance_url
from sandbox.salesforce.org import SalesforceSandbox, current_sandbox
from sandbox.salesforce.rest import (
    EMAIL_FIELDS,
    ID_RE,
    Schema,
    shape_record,
    soql_literal,
    to_18,
)
from sandbox.salesforce.store import SalesforceError

log = logging.getLogger(__name__)

bp = Blueprint("sf_sandbox_ctl", __name__, url_prefix="/_sandbox")

UI_ORIGIN = ""
MAX_READ_BACK = 2000


@bp.errorhandler(SalesforceError)
def _sf_error(exc: SalesforceError) -> tuple[Response, int]:
    return jsonify(errorCode=exc.error_code, message=exc.message, fields=exc.fields), exc.status


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(errorCode=code, message=message, fields=[]), status


def _version(sandbox: SalesforceSandbox) -> str:
    return str(sandbox.config["API_VERSIONS"][-1])


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "send a JSON object of field values")
    body.pop("attributes", None)
    return body


def _readable_fields(described: dict[str, Any]) -> list[str]:
    # Compound address/location fields are not selectable alongside their parts in every store.
    return [f["name"] for f in described["fields"] if f.get("type") not in ("address", "location")]


def _record(sandbox: SalesforceSandbox, schema: Schema, sobject: str, record_id: str) -> Any:
    row = sandbox.store.get(sobject, record_id, include_deleted=True)
    if row is None:
        raise SalesforceError(404, "NOT_FOUND", f"no {sobject} with Id {record_id}")
    return shape_record(row, sobject, _version(sandbox), schema)


def _id(record_id: str) -> str:
    if not ID_RE.match(record_id):
        raise SalesforceError(400, "MALFORMED_ID", f"malformed id {record_id}")
    return to_18(record_id)


# -- tokens and state ---------------------------------------------------------------------------


@bp.post("/tokens")
def issue_token() -> tuple[Response, int]:
    """A token without the OAuth dance, for tests and the CLI: `{"ttl"?, "scope"?, "refresh"?}`."""
    sandbox = current_sandbox()
    body = request.get_json(silent=True) or {}
    ttl = body.get("ttl")
    token = sandbox.auth.issue(
        scope=str(body.get("scope") or "api refresh_token"),
        with_refresh=bool(body.get("refresh", False)),
        ttl=float(ttl) if ttl is not None else None,
    )
    return jsonify(sandbox.auth.token_response(token, instance_url())), 201


@bp.post("/tokens/expire")
def expire_tokens() -> Response:
    """Every access token ends now; the next API call answers 401 INVALID_SESSION_ID."""
    return jsonify(expired=current_sandbox().auth.expire_all())


@bp.get("/state")
def state() -> Response:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    records: dict[str, int] = {}
    recycle_bin: dict[str, int] = {}
    for item in schema.global_sobjects():
        name = str(item["name"])
        live = sandbox.store.count(name)
        records[name] = live
        recycle_bin[name] = sandbox.store.count(name, include_deleted=True) - live
    return jsonify(
        now=sandbox.clock.now().isoformat(),
        api_calls=sandbox.usage.snapshot(),
        records=records,
        recycle_bin=recycle_bin,
        tokens=sandbox.auth.counts(),
        query_cursors=sandbox.cursors.count(),
    )


# -- records, as a user in the UI -----------------------------------------------------------------


@bp.get("/records/<sobject>")
def list_records(sobject: str) -> Response | tuple[Response, int]:
    """Read back records: `?email=` (the object's email field), `?limit=`, `?deleted=true`."""
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    described = schema.require(sobject)
    name = str(described["name"])
    try:
        limit = max(1, min(MAX_READ_BACK, int(request.args.get("limit", 200))))
    except ValueError:
        return _error(400, "INVALID_ARGUMENT", "limit must be a number")
    soql = f"SELECT {', '.join(_readable_fields(described))} FROM {name}"
    email = request.args.get("email")
    if email is not None:
        field = EMAIL_FIELDS.get(name, "Email")
        if schema.field(name, field) is None:
            field = "Email"
        if schema.field(name, field) is None:
            return _error(400, "INVALID_FIELD", f"{name} has no email field")
        soql += f" WHERE {field} = {soql_literal(email.strip())}"
    soql += f" ORDER BY CreatedDate, Id LIMIT {limit}"
    deleted = request.args.get("deleted", "").lower() == "true"
    result = sandbox.store.query(soql, include_deleted=deleted)
    version = _version(sandbox)
    rows = [shape_record(r, name, version, schema) for r in result.rows]
    return jsonify(totalSize=len(rows), records=rows)


@bp.get("/records/<sobject>/<record_id>")
def get_record(sobject: str, record_id: str) -> Response:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    return jsonify(_record(sandbox, schema, name, _id(record_id)))


@bp.post("/records/<sobject>")
def create_record(sobject: str) -> tuple[Response, int]:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    new_id = sandbox.store.create(name, _body(), origin=UI_ORIGIN)
    return jsonify(id=new_id, record=_record(sandbox, schema, name, new_id)), 201


@bp.patch("/records/<sobject>/<record_id>")
def edit_record(sobject: str, record_id: str) -> Response:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    record_id = _id(record_id)
    sandbox.store.update(name, record_id, _body(), origin=UI_ORIGIN)
    return jsonify(_record(sandbox, schema, name, record_id))


@bp.delete("/records/<sobject>/<record_id>")
def delete_record(sobject: str, record_id: str) -> tuple[str, int]:
    """Delete to the Recycle Bin, or with `?hard=true` erase it (Salesforce emits no event)."""
    sandbox = current_sandbox()
    name = Schema(sandbox).name(sobject)
    record_id = _id(record_id)
    if request.args.get("hard", "").lower() == "true":
        sandbox.store.hard_delete(name, record_id)
    else:
        sandbox.store.delete(name, record_id, origin=UI_ORIGIN)
    return "", 204


@bp.post("/records/<sobject>/<record_id>/undelete")
def undelete_record(sobject: str, record_id: str) -> Response:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    record_id = _id(record_id)
    sandbox.store.undelete(name, record_id, origin=UI_ORIGIN)
    return jsonify(_record(sandbox, schema, name, record_id))


@bp.post("/leads/<lead_id>/convert")
def convert_lead(lead_id: str) -> Response:
    """Convert a Lead: `{"accountId"?}` merges into an existing Account; answers the new Ids."""
    body = request.get_json(silent=True) or {}
    account_id = body.get("accountId")
    result = current_sandbox().store.convert_lead(
        _id(lead_id), account_id=_id(account_id) if account_id else None, origin=UI_ORIGIN
    )
    return jsonify(result)


@bp.post("/snapshot")
def snapshot() -> Response | tuple[Response, int]:
    """Write the whole org to a SQLite file (`{"path"}`, else the SNAPSHOT config path)."""
    sandbox = current_sandbox()
    body = request.get_json(silent=True) or {}
    path = body.get("path") or sandbox.config.get("SNAPSHOT")
    if not path:
        return _error(400, "MISSING_ARGUMENT", "give 'path' (no SNAPSHOT configured)")
    sandbox.store.snapshot(str(path))
    log.info("sandbox org snapshot written")
    return jsonify(path=str(path))
