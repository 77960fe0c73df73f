"""List Views: an org's saved filters per object, listed, described and run as the REST API does.

REST (token needed, counted as API calls, v32.0+ as in Salesforce):
    GET /services/data/vNN.N/sobjects/<Object>/listviews            the object's views
    GET .../listviews/<id>                                          one view's basic information
    GET .../listviews/<id>/describe   columns, orderBy, the SOQL `query`, scope, whereCondition
    GET .../listviews/<id>/results?limit=&offset=                   the view run (25 rows, ≤ 2000)
An unknown id, or the id of another object's view, answers 404 NOT_FOUND.

Control (no token): `GET|POST /_sandbox/listviews`, `DELETE /_sandbox/listviews/<id>`: read the
views back, define one from a label, developerName and SOQL WHERE clause (checked against the
org's schema unless `allow_invalid`, which stores a view whose query the org refuses, as one does
after a field it filters on is deleted), delete one.

Every org starts with a few realistic views (`DEFAULT_VIEWS`); a reset puts them back and drops
the others. The `query` of a view is plain SOQL the sandbox's own engine runs (field names, no
`toLabel()`), so a client may take it from describe and page it through /query or Bulk 2.0.
Results values are strings, datetimes in Java's `Date.toString()` form
(`Thu Nov 26 10:30:00 GMT 2026`), as Salesforce prints them here.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.salesforce.org import SalesforceSandbox, current_sandbox
from sandbox.salesforce.rest import (
    NOT_FOUND_MESSAGE,
    Schema,
    base_path,
    require_version,
    sf_error_response,
)
from sandbox.salesforce.soql import BoolOp, Comparison, InList, Literal, NotOp, SemiJoin, SoqlError
from sandbox.salesforce.soql import parse as parse_soql
from sandbox.salesforce.store import SalesforceError

bp = Blueprint("sf_listviews", __name__)

DEFAULT_LIMIT = 25
MAX_LIMIT = 2000
HIDDEN_COLUMNS = ("Id", "CreatedDate", "LastModifiedDate", "SystemModstamp")
BAY_AREA = ("San Francisco", "Oakland", "San Jose", "Berkeley", "Palo Alto")

# object -> (label, developerName, WHERE clause or None), in the order the org lists them.
DEFAULT_VIEWS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "Contact": (
        ("All Contacts", "AllContacts", None),
        (
            "Bay Area Subscribers",
            "BayAreaSubscribers",
            "MailingCity IN ({}) AND HasOptedOutOfEmail = false".format(
                ", ".join(f"'{c}'" for c in BAY_AREA)
            ),
        ),
        ("California Contacts", "CaliforniaContacts", "MailingState IN ('CA', 'California')"),
        (
            "Newsletter Subscribers",
            "NewsletterSubscribers",
            "HasOptedOutOfEmail = false AND Email != null",
        ),
    ),
    "Lead": (
        ("All Open Leads", "AllOpenLeads", "IsConverted = false"),
        ("Today's Leads", "TodaysLeads", "CreatedDate = TODAY"),
        ("Web Leads", "WebLeads", "LeadSource = 'Web' AND IsConverted = false"),
    ),
    "Account": (
        ("All Accounts", "AllAccounts", None),
        ("New This Week", "NewThisWeek", "CreatedDate = THIS_WEEK"),
    ),
    "Campaign": (
        ("All Active Campaigns", "AllActiveCampaigns", "IsActive = true"),
        ("All Campaigns", "AllCampaigns", None),
    ),
}
DEFAULT_COLUMNS = {
    "Contact": ("Name", "Title", "Email", "Phone", "MailingCity", "MailingState"),
    "Lead": ("Name", "Company", "Email", "Status", "State", "CreatedDate"),
    "Account": ("Name", "BillingState", "Phone", "Type"),
    "Campaign": ("Name", "Type", "Status", "StartDate", "IsActive"),
}
_OPERATORS = {
    "=": "equals",
    "!=": "notEqual",
    "<>": "notEqual",
    "<": "lessThan",
    ">": "greaterThan",
    "<=": "lessOrEqual",
    ">=": "greaterOrEqual",
    "LIKE": "like",
    "INCLUDES": "includes",
    "EXCLUDES": "excludes",
}
_SORT_LABELS = {
    "text": ("Z-A", "A-Z"),  # sic: Salesforce's own example pairs them this way round
    "number": ("9-0", "0-9"),
    "picklist": ("Low to High", "High to Low"),
    "date": ("New to Old", "Old to New"),
}
_DEV_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|_(?!_))*$")


def developer_name_for(label: str) -> str:
    """`Today's Leads` → `Todays_Leads`: what the UI proposes as a view's API name."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", label.replace("'", "")).strip("_")
    return name if name and name[0].isalpha() else f"View_{name}"


class ListViews:
    """The org's List Views: defaults, definition checks, and the SOQL each one runs."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        if not sandbox.store.list_views():  # a new org (a snapshot brings its own views)
            self.install_defaults()

    @property
    def store(self) -> Any:
        return self.sandbox.store

    def install_defaults(self) -> None:
        for sobject, views in DEFAULT_VIEWS.items():
            if self.store.schema.sobject(sobject) is None:
                continue
            for label, developer_name, where in views:
                self.store.add_list_view(
                    sobject, label, developer_name, where, list(self.default_columns(sobject))
                )

    def reset(self) -> None:
        """Back to a new org's views: test-defined ones go, deleted defaults come back."""
        self.store.clear_list_views()
        self.install_defaults()

    def default_columns(self, sobject: str) -> tuple[str, ...]:
        if sobject in DEFAULT_COLUMNS:
            return DEFAULT_COLUMNS[sobject]
        obj = self.store.schema.sobject(sobject)
        return ("Name",) if obj is not None and obj.field("Name") is not None else ("Id",)

    def views(self, sobject: str) -> list[dict[str, Any]]:
        return list(self.store.list_views(sobject))

    def find(self, sobject: str, view_id: str) -> dict[str, Any]:
        """One view of `sobject` by its 15- or 18-character id; 404 NOT_FOUND otherwise."""
        for view in self.views(sobject):
            if view["id"] == view_id or view["id"][:15] == view_id:
                return view
        raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)

    def query(self, view: dict[str, Any]) -> str:
        """The view's SOQL: its columns plus the hidden ones, its filter, sorted by its first
        column then Id (nulls first), as Salesforce writes it in describe."""
        select: list[str] = []
        for name in [*view["columns"], *HIDDEN_COLUMNS]:
            if name.lower() not in {s.lower() for s in select}:
                select.append(name)
        soql = f"SELECT {', '.join(select)} FROM {view['sobject']}"
        if view["where"]:
            soql += f" WHERE {view['where']}"
        return (
            soql
            + " ORDER BY "
            + ", ".join(f"{name} ASC NULLS FIRST" for name in order_fields(view))
        )

    def define(
        self,
        sobject: str,
        label: str,
        developer_name: str | None = None,
        where: str | None = None,
        columns: list[str] | None = None,
        allow_invalid: bool = False,
    ) -> dict[str, Any]:
        """Check and store a new view; SalesforceError as the org's setup would refuse it."""
        obj = self.store.schema.sobject(sobject)
        if obj is None:
            raise SalesforceError(404, "NOT_FOUND", f"no sObject {sobject}")
        label = label.strip()
        if not label or len(label) > 40:
            raise SalesforceError(400, "INVALID_FIELD", "label must be 1 to 40 characters")
        developer_name = developer_name or developer_name_for(label)
        if len(developer_name) > 80 or not _DEV_NAME.match(developer_name):
            raise SalesforceError(
                400,
                "INVALID_FIELD",
                f"developerName {developer_name!r}: letters, digits and single underscores,"
                " starting with a letter",
            )
        if any(v["developerName"].lower() == developer_name.lower() for v in self.views(obj.name)):
            raise SalesforceError(
                400, "DUPLICATE_DEVELOPER_NAME", f"{obj.name} already has a view {developer_name}"
            )
        cols = list(columns) if columns else list(self.default_columns(obj.name))
        names = []
        for col in cols:
            fd = obj.field(col)
            if fd is None and not allow_invalid:
                raise SalesforceError(
                    400, "INVALID_FIELD", f"No such column '{col}' on entity '{obj.name}'"
                )
            names.append(fd.name if fd is not None else col)
        where = (where or "").strip() or None
        view = {"sobject": obj.name, "columns": names, "where": where}
        if not allow_invalid:
            # The org refuses a filter it cannot run, with the error the query itself would get.
            rows = self.store.query(self.query(view) + " LIMIT 1").rows
            getattr(rows, "close", lambda: None)()
        view_id = self.store.add_list_view(obj.name, label, developer_name, where, names)
        return self.find(obj.name, view_id)


# ---------------------------------------------------------------------------------------------
# Shapes


def order_fields(view: dict[str, Any]) -> list[str]:
    """A view sorts by its first column, then Id."""
    first = view["columns"][0] if view["columns"] else "Id"
    return [first] if first.lower() == "id" else [first, "Id"]


def _urls(version: str, view: dict[str, Any]) -> dict[str, str]:
    url = f"{base_path(version)}/sobjects/{view['sobject']}/listviews/{view['id']}"
    return {"describeUrl": f"{url}/describe", "resultsUrl": f"{url}/results", "url": url}


def basic_info(version: str, view: dict[str, Any]) -> dict[str, Any]:
    urls = _urls(version, view)
    return {
        "describeUrl": urls["describeUrl"],
        "developerName": view["developerName"],
        "id": view["id"],
        "label": view["label"],
        "resultsUrl": urls["resultsUrl"],
        "soqlCompatible": True,
        "url": urls["url"],
    }


def _sort_kind(kind: str) -> str:
    if kind in ("int", "double", "currency", "percent", "phone"):
        return "number"
    if kind in ("picklist", "multipicklist"):
        return "picklist"
    if kind in ("date", "datetime"):
        return "date"
    return "text"


def columns(schema: Schema, view: dict[str, Any]) -> list[dict[str, Any]]:
    order = [f.lower() for f in order_fields(view)]
    out = []
    names = list(view["columns"])
    names += [h for h in HIDDEN_COLUMNS if h.lower() not in {n.lower() for n in names}]
    for name in names:
        described = schema.field(view["sobject"], name) or {}
        kind = str(described.get("type") or "string")
        ascending, descending = _SORT_LABELS[_sort_kind(kind)]
        index = order.index(name.lower()) if name.lower() in order else None
        out.append(
            {
                "ascendingLabel": ascending,
                "descendingLabel": descending,
                "fieldNameOrPath": described.get("name", name),
                "hidden": name in HIDDEN_COLUMNS and name not in view["columns"],
                "label": described.get("label", name),
                "selectListItem": described.get("name", name),
                "sortDirection": "ascending" if index is not None else None,
                "sortIndex": index,
                "sortable": bool(described.get("sortable", True)),
                "type": kind,
            }
        )
    return out


def _literal_text(lit: Literal) -> Any:
    if lit.kind == "string":
        return "'" + str(lit.value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    if lit.kind == "null":
        return "null"
    if lit.kind == "boolean":
        return "true" if lit.value else "false"
    if lit.kind == "date" and isinstance(lit.value, date):
        return lit.value.isoformat()
    if lit.kind == "datetime" and isinstance(lit.value, datetime):
        return lit.value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if lit.kind == "dateconst":
        return f"{lit.value}:{lit.n}" if lit.n is not None else str(lit.value)
    return str(lit.value)


def where_condition(where: str | None) -> dict[str, Any]:
    """SoqlWhereCondition as describe shows it: `{field, operator, values}` for one condition,
    `{conditions, conjunction}` for and/or/not groups; an unfiltered view has no conditions."""
    if not where:
        return {"conditions": [], "conjunction": "and"}
    try:
        node = parse_soql(f"SELECT Id FROM X WHERE {where}").where
    except SoqlError:
        return {"conditions": [], "conjunction": "and"}
    return _condition(node)


def _condition(node: Any) -> dict[str, Any]:
    if isinstance(node, BoolOp):
        return {
            "conditions": [_condition(item) for item in node.items],
            "conjunction": node.op.lower(),
        }
    if isinstance(node, NotOp):
        return {"conditions": [_condition(node.item)], "conjunction": "not"}
    if isinstance(node, InList):
        return {
            "field": ".".join(node.path.parts),
            "operator": "notIn" if node.negate else "in",
            "values": [_literal_text(v) for v in node.values],
        }
    if isinstance(node, SemiJoin):
        return {
            "field": ".".join(node.path.parts),
            "operator": "notIn" if node.negate else "in",
            "values": [],
        }
    if isinstance(node, Comparison):
        values = node.value.value if node.value.kind == "list" else [node.value]
        return {
            "field": ".".join(node.path.parts),
            "operator": _OPERATORS.get(node.op.upper(), node.op.lower()),
            "values": [_literal_text(v) for v in values],
        }
    return {"conditions": [], "conjunction": "and"}


def describe(hub: ListViews, schema: Schema, view: dict[str, Any]) -> dict[str, Any]:
    return {
        "columns": columns(schema, view),
        "id": view["id"],
        "orderBy": [
            {"fieldNameOrPath": name, "nullsPosition": "first", "sortDirection": "ascending"}
            for name in order_fields(view)
        ],
        "query": hub.query(view),
        "relatedEntityId": None,
        "scope": "everything",
        "scopeEntityId": None,
        "sobjectType": view["sobject"],
        "whereCondition": where_condition(view["where"]),
    }


def java_date(value: str) -> str:
    """`2026-11-26T10:30:00.000+0000` → `Thu Nov 26 10:30:00 GMT 2026`."""
    when = datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return when.strftime("%a %b %d %H:%M:%S GMT %Y")


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) == 28 and value[10] == "T" and value.endswith("+0000"):
        return java_date(value)
    if isinstance(value, dict):
        return None  # a compound value is never a list view column
    return str(value)


def _path_value(row: dict[str, Any], path: str) -> Any:
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        number = int(raw)
    except ValueError:
        raise SalesforceError(
            400, "INVALID_PARAMETER_VALUE", f"{name}: {raw} is not a valid integer"
        ) from None
    return max(low, min(high, number))


# ---------------------------------------------------------------------------------------------
# REST routes

LISTVIEWS = "/services/data/v<version>/sobjects/<sobject>/listviews"


def _context(version: str, sobject: str) -> tuple[ListViews, Schema, str]:
    require_version(version, 32.0)
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    return sandbox.listviews, schema, schema.name(sobject)


@bp.get(LISTVIEWS)
def list_views(version: str, sobject: str) -> Response:
    hub, _schema, name = _context(version, sobject)
    views = [basic_info(version, v) for v in hub.views(name)]
    return jsonify(
        done=True, listviews=views, nextRecordsUrl=None, size=len(views), sobjectType=name
    )


@bp.get(f"{LISTVIEWS}/<view_id>")
def list_view(version: str, sobject: str, view_id: str) -> Response:
    hub, _schema, name = _context(version, sobject)
    return jsonify(basic_info(version, hub.find(name, view_id)))


@bp.get(f"{LISTVIEWS}/<view_id>/describe")
def describe_view(version: str, sobject: str, view_id: str) -> Response:
    hub, schema, name = _context(version, sobject)
    return jsonify(describe(hub, schema, hub.find(name, view_id)))


@bp.get(f"{LISTVIEWS}/<view_id>/results")
def view_results(version: str, sobject: str, view_id: str) -> Response:
    hub, schema, name = _context(version, sobject)
    view = hub.find(name, view_id)
    limit = _arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _arg("offset", 0, 0, 2**31)
    result = hub.store.query(hub.query(view))
    rows = iter(result.rows)
    try:
        page = list(itertools.islice(rows, offset, offset + limit))
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    cols = columns(schema, view)
    records = [
        {
            "columns": [
                {
                    "fieldNameOrPath": c["fieldNameOrPath"],
                    "value": _cell(_path_value(row, c["fieldNameOrPath"])),
                }
                for c in cols
            ]
        }
        for row in page
    ]
    return jsonify(
        columns=cols,
        developerName=view["developerName"],
        done=offset + len(page) >= result.total_size,
        id=view["id"],
        label=view["label"],
        records=records,
        size=len(records),
    )


# ---------------------------------------------------------------------------------------------
# Control routes


@bp.errorhandler(SalesforceError)
def _control_error(exc: SalesforceError) -> tuple[Response, int]:
    if request.path.startswith("/_sandbox"):
        return jsonify(errorCode=exc.error_code, message=exc.message, fields=exc.fields), exc.status
    return sf_error_response(exc), exc.status


def _control_view(hub: ListViews, schema: Schema, view: dict[str, Any]) -> dict[str, Any]:
    version = str(hub.sandbox.config["API_VERSIONS"][-1])
    return {
        **basic_info(version, view),
        "sobjectType": view["sobject"],
        "where": view["where"],
        "columns": list(view["columns"]),
        "query": hub.query(view),
    }


@bp.get("/_sandbox/listviews")
def control_list() -> Response:
    """Every view (`?sobject=` for one object's) with its WHERE clause and query."""
    sandbox = current_sandbox()
    hub: ListViews = sandbox.listviews
    schema = Schema(sandbox)
    wanted = request.args.get("sobject")
    views = hub.store.list_views(schema.name(wanted) if wanted else None)
    return jsonify(listviews=[_control_view(hub, schema, v) for v in views])


@bp.post("/_sandbox/listviews")
def control_create() -> tuple[Response, int]:
    """`{sobjectType, label, developerName?, where?, columns?, allow_invalid?}` → the new view."""
    sandbox = current_sandbox()
    hub: ListViews = sandbox.listviews
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "send a JSON object")
    sobject, label = body.get("sobjectType"), body.get("label")
    where, cols, dev = body.get("where"), body.get("columns"), body.get("developerName")
    if not isinstance(sobject, str) or not isinstance(label, str):
        raise SalesforceError(400, "MISSING_ARGUMENT", "'sobjectType' and 'label' are required")
    if where is not None and not isinstance(where, str):
        raise SalesforceError(400, "INVALID_FIELD", "'where' must be a SOQL WHERE clause")
    if dev is not None and not isinstance(dev, str):
        raise SalesforceError(400, "INVALID_FIELD", "'developerName' must be a string")
    if cols is not None and (
        not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols)
    ):
        raise SalesforceError(400, "INVALID_FIELD", "'columns' must be a non-empty list of fields")
    view = hub.define(sobject, label, dev, where, cols, bool(body.get("allow_invalid", False)))
    return jsonify(_control_view(hub, Schema(sandbox), view)), 201


@bp.delete("/_sandbox/listviews/<view_id>")
def control_delete(view_id: str) -> tuple[str, int]:
    hub: ListViews = current_sandbox().listviews
    for view in hub.store.list_views():
        if view["id"] == view_id or view["id"][:15] == view_id:
            hub.store.delete_list_view(view["id"])
            return "", 204
    raise SalesforceError(404, "NOT_FOUND", f"no list view {view_id}")
