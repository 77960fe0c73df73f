"""The setup wizard: create and edit a setup one page per step, and delete one.

Steps follow the seed guide: Salesforce, Constant Contact and the main list, field mapping,
segmentation, options, schedule, how Salesforce changes arrive, then Finish. A new setup's
first page is only checked (``setups.check_setup_draft``) and travels to the second in the
query string, so nothing but the usual session sits in the cookie; the second page creates
the setup *paused* and shows its webhook secret once; every later page PATCHes it through
``setups.update_setup`` (the admin API's validation, its 422 errors shown next to the field
they name) and Finish resumes it. Editing a setup is the same pages. Vendor reads for the
pickers go through ``services.catalog``; a vendor that cannot answer is a message on the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import available_timezones

from flask import current_app, flash, redirect, request, url_for
from markupsafe import Markup, escape
from werkzeug.wrappers import Response as WebResponse

from middleware.services import catalog, connections, setups
from middleware.services.exceptions import Conflict, Invalid, ServiceError
from middleware.web import get_redis, get_settings, get_store
from middleware.web.dashboard import forms
from middleware.web.dashboard.views import _page, bp
from middleware.web.webhooks import forget_setup
from schemas.setup import (
    CAMPAIGN_LIST_SOURCES,
    DIRECTIONS,
    OBJECT_TYPES,
    SALESFORCE_DOORS,
    WEBHOOK_AUTH,
)

log = logging.getLogger(__name__)

# (slug, title) in order; "finish" is the last page.
STEPS = (
    ("salesforce", "Salesforce"),
    ("constant-contact", "Constant Contact"),
    ("fields", "Field mapping"),
    ("segments", "Segmentation"),
    ("options", "Options"),
    ("schedule", "Schedule"),
    ("changes", "Salesforce changes"),
    ("finish", "Finish"),
)
_SLUGS = [slug for slug, _ in STEPS]
WIZARD_PAUSE = "being set up in the dashboard wizard"
DRAFT_KEYS = ("name", "object_type", "salesforce_connection", "namespace_prefix")
FIELD_MAP_KEYS = ("sf_field", "cc_field", "direction")
EMAIL_KEYS = ("sf_field", "cc_field")
CHECKBOX_KEYS = ("field", "list")
DOOR_WORDS = {
    "webhook": "Webhook: JSON callouts from a Flow or Apex",
    "pubsub": "Pub/Sub: Change Data Capture read by the listener",
    "outbound": "Outbound Messages from a workflow or Flow",
}


@bp.app_template_filter("codes")
def _codes(text: str) -> Markup:
    """Help text with its `backticks` as <code> (everything else escaped)."""
    parts = str(escape(text)).split("`")
    return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


def _config() -> Mapping[str, Any]:
    return current_app.config


def _org() -> setups.OrgReader:
    return setups.org_describer(get_settings(), get_store(), get_redis(), _config())


def _connections(vendor: str) -> list[dict[str, Any]]:
    with get_store().transaction() as session:
        return [c for c in connections.list_connections(session) if c["vendor"] == vendor]


def _int_or_raw(raw: str | None) -> Any:
    """A posted id: None when blank, an int when digits, else the text (the schema refuses)."""
    raw = (raw or "").strip()
    if not raw:
        return None
    return int(raw) if raw.isdigit() and len(raw) < 11 else raw


def _step_url(setup_id: int, step: str) -> str:
    if step == "finish":
        return url_for("dashboard.wizard_finish", setup_id=setup_id)
    return url_for("dashboard.wizard_step", setup_id=setup_id, step=step)


def _next(step: str) -> str:
    return _SLUGS[_SLUGS.index(step) + 1]


def _wizard(template: str, status: int = 200, /, **context: Any) -> WebResponse:
    context.setdefault("errors", {})
    context.setdefault("notes", [])
    context.setdefault("setup", None)
    return _page(
        f"wizard/{template}",
        status,
        steps=STEPS,
        input_id=forms.input_id,
        value_at=forms.value_at,
        **context,
    )


def _read(notes: list[str], call: Callable[[], Any], default: Any) -> Any:
    """A catalog read for a picker; its refusal becomes a note on the page."""
    try:
        return call()
    except ServiceError as exc:
        notes.append(exc.detail)
        return default


def _active(conn_id: Any, vendor: str) -> int | None:
    """The id when it names an active connection of that vendor (the pickers read through it)."""
    if not isinstance(conn_id, int):
        return None
    active = any(c["id"] == conn_id and c["status"] == "active" for c in _connections(vendor))
    return conn_id if active else None


# --------------------------------------------------------------------------- step 1 (new)


@bp.route("/setups/new", methods=["GET", "POST"])
def wizard_new() -> WebResponse:
    """Step 1 of a new setup: name, Salesforce connection, object type, namespace.

    Checked only; the values go on to step 2 in its address."""
    values: dict[str, Any] = {
        "name": "",
        "object_type": "Contact",
        "salesforce_connection": None,
        "namespace_prefix": None,
    }
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        values = _salesforce_values(request.form, new=True)
        try:
            with get_store().transaction() as session:
                setups.check_setup_draft(session, values)
        except Invalid as exc:
            errors = exc.errors or {"_schema": [exc.detail]}
        except Conflict as exc:
            errors = exc.errors or {"_schema": [exc.detail]}
        else:
            query = {k: v for k, v in values.items() if v is not None}
            return redirect(url_for("dashboard.wizard_new_cc", **query), code=303)
    else:
        sf = [c for c in _connections("salesforce") if c["status"] == "active"]
        if len(sf) == 1:
            values["salesforce_connection"] = sf[0]["id"]
    return _wizard(
        "salesforce.html",
        422 if errors else 200,
        step="salesforce",
        values=values,
        errors=errors,
        sf_connections=_connections("salesforce"),
        object_types=OBJECT_TYPES,
        action=url_for("dashboard.wizard_new"),
    )


def _salesforce_values(form: Any, new: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": (form.get("name") or "").strip(),
        "salesforce_connection": _int_or_raw(form.get("salesforce_connection")),
        "namespace_prefix": (form.get("namespace_prefix") or "").strip() or None,
    }
    if new:
        values["object_type"] = (form.get("object_type") or "").strip()
    return values


# --------------------------------------------------------------------------- step 2 (new)


def _draft(args: Any) -> dict[str, Any]:
    draft = {k: (args.get(k) or "").strip() for k in DRAFT_KEYS}
    draft["salesforce_connection"] = _int_or_raw(draft["salesforce_connection"])
    draft["namespace_prefix"] = draft["namespace_prefix"] or None
    draft["object_type"] = draft["object_type"] or "Contact"
    return draft


def _cc_context(values: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """The Constant Contact connections and, for the chosen active one, its lists."""
    cc = _connections("constantcontact")
    conn_id = _active(values.get("constant_contact_connection"), "constantcontact")
    lists: list[dict[str, Any]] | None = None
    if conn_id is not None:
        lists = _read(
            notes,
            lambda: catalog.cc_lists(get_settings(), get_store(), get_redis(), conn_id, _config()),
            None,
        )
    return {"cc_connections": cc, "lists": lists}


def _main_list(values: dict[str, Any], errors: dict[str, list[str]]) -> None:
    """A new list's name (``new_list``) wins over the picked one; it is made in Constant
    Contact now when the connection is active, else at the first sync."""
    new_list = (request.form.get("new_list") or "").strip()
    if not new_list:
        return
    values["main_list"] = new_list
    conn_id = _active(values.get("constant_contact_connection"), "constantcontact")
    if conn_id is None:
        return
    try:
        catalog.create_cc_list(
            get_settings(), get_store(), get_redis(), conn_id, new_list, _config()
        )
        flash(f"Constant Contact list “{new_list}” created.", "ok")
    except Conflict:
        pass  # it exists: use it
    except ServiceError as exc:
        errors["new_list"] = [exc.detail]


def _cc_values(form: Any) -> dict[str, Any]:
    return {
        "constant_contact_connection": _int_or_raw(form.get("constant_contact_connection")),
        "main_list": (form.get("main_list") or "").strip(),
    }


@bp.route("/setups/new/constant-contact", methods=["GET", "POST"])
def wizard_new_cc() -> WebResponse:
    """Step 2 of a new setup: the Constant Contact connection and main list; creates the
    setup paused and shows its webhook secret once."""
    source = request.form if request.method == "POST" else request.args
    draft = _draft(source)
    notes: list[str] = []
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {"constant_contact_connection": None, "main_list": ""}
    if request.method == "POST":
        values = _cc_values(request.form)
        if request.form.get("action") != "refresh":
            _main_list(values, errors)
            if not errors:
                created = _create(draft, values, errors)
                if created is not None:
                    return created
    else:
        cc = [c for c in _connections("constantcontact") if c["status"] == "active"]
        if len(cc) == 1:
            values["constant_contact_connection"] = cc[0]["id"]
    return _wizard(
        "constant_contact.html",
        422 if errors else 200,
        step="constant-contact",
        draft=draft,
        values=values,
        errors=errors,
        notes=notes,
        action=url_for("dashboard.wizard_new_cc"),
        **_cc_context(values, notes),
    )


def _create(
    draft: dict[str, Any], values: dict[str, Any], errors: dict[str, list[str]]
) -> WebResponse | None:
    data = {k: v for k, v in {**draft, **values}.items() if v is not None}
    try:
        with get_store().transaction() as session:
            view = setups.create_setup(get_settings(), session, data, org=_org())
            setups.pause_setup(get_settings(), session, view["id"], WIZARD_PAUSE)
    except ServiceError as exc:
        errors.update(exc.errors or {"_schema": [exc.detail]})
        return None
    return _wizard(
        "created.html",
        201,
        step="constant-contact",
        setup=view,
        secret=view["webhook_secret"],
        warnings=view.get("warnings") or [],
        next_url=_step_url(view["id"], "fields"),
    )


# --------------------------------------------------------------------------- edit steps


@bp.route("/setups/<int:setup_id>/edit/<step>", methods=["GET", "POST"])
def wizard_step(setup_id: int, step: str) -> WebResponse:
    """One step of an existing setup: GET shows it, POST saves it and goes on."""
    if step not in _SLUGS or step == "finish":
        return _page("message.html", 404, title="Not Found", message=f"No step {step!r}.")
    with get_store().transaction() as session:
        view = setups.show_setup(get_settings(), session, setup_id)
    options = dict(view["options"])
    errors: dict[str, list[str]] = {}
    notes: list[str] = []
    extra: dict[str, Any] = {}
    if request.method == "POST":
        patch, extra = _PATCHES[step](options)
        errors = dict(extra.pop("errors", {}))
        refresh = request.form.get("action") == "refresh"
        if not errors and not refresh:
            try:
                with get_store().transaction() as session:
                    saved = setups.update_setup(
                        get_settings(), session, setup_id, patch, org=_org()
                    )
            except ServiceError as exc:
                errors = exc.errors or {"_schema": [exc.detail]}
            else:
                forget_setup(setup_id)
                for warning in saved.get("warnings") or ():
                    flash(warning, "warn")
                flash(f"{dict(STEPS)[step]}: saved.", "ok")
                return redirect(_step_url(setup_id, _next(step)), code=303)
        options = {**options, **patch}
    context = _CONTEXTS[step](options, notes, extra)
    return _wizard(
        f"{step.replace('-', '_')}.html",
        422 if errors else 200,
        step=step,
        setup=view,
        values=options,
        errors=errors,
        notes=notes,
        action=_step_url(setup_id, step),
        **context,
    )


# Each step: (options) → (patch, extra context for a re-shown page)
def _patch_salesforce(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return _salesforce_values(request.form, new=False), {}


def _patch_cc(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    values = _cc_values(request.form)
    errors: dict[str, list[str]] = {}
    if request.form.get("action") != "refresh":
        _main_list(values, errors)
    return values, {"errors": errors}


def _patch_fields(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    field_map = forms.read_rows(request.form, "field_map", FIELD_MAP_KEYS)
    for row in field_map:
        row["direction"] = row["direction"] or "sf_to_cc"
    emails = forms.read_rows(request.form, "other_email_fields", EMAIL_KEYS)
    return {"field_map": field_map, "other_email_fields": emails}, {}


def _patch_segments(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    flt, builder = forms.read_filter(request.form)
    source = (request.form.get("campaign_lists.source") or "").strip()
    campaign_lists: dict[str, Any] | None = None
    if source:
        selected = [s.strip() for s in request.form.getlist("campaign_lists.selected") if s.strip()]
        selected += forms.lines(request.form.get("campaign_lists.selected_more") or "")
        campaign_lists = {
            "source": source,
            "selected": list(dict.fromkeys(selected)),
            "excluded": forms.lines(request.form.get("campaign_lists.excluded") or ""),
            "record_type_labels": forms.lines(
                request.form.get("campaign_lists.record_type_labels") or ""
            ),
        }
    checkbox_lists = forms.read_rows(request.form, "checkbox_lists", CHECKBOX_KEYS)
    patch = {"filter": flt, "campaign_lists": campaign_lists, "checkbox_lists": checkbox_lists}
    return patch, {"builder": builder}


def _patch_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return forms.read_controls(forms.option_controls(), request.form), {}


def _patch_schedule(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    values = forms.read_controls(forms.schedule_controls(), request.form)
    return {"schedule": values}, {}


def _patch_changes(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    doors = [d for d in request.form.getlist("salesforce_changes") if d]
    event = (request.form.get("webhook.platform_event.name") or "").strip()
    id_field = (request.form.get("webhook.platform_event.id_field") or "").strip()
    webhook: dict[str, Any] = {
        "auth": (request.form.get("webhook.auth") or "").strip() or "shared_secret",
        "platform_event": {"name": event, "id_field": id_field or "Record_Id__c"}
        if event
        else None,
    }
    if webhook["platform_event"] is None and not (options.get("webhook") or {}).get(
        "platform_event"
    ):
        del webhook["platform_event"]  # nothing to remove (a merge patch's null removes)
    return {"salesforce_changes": doors, "webhook": webhook}, {}


_PATCHES: dict[str, Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]] = {
    "salesforce": _patch_salesforce,
    "constant-contact": _patch_cc,
    "fields": _patch_fields,
    "segments": _patch_segments,
    "options": _patch_options,
    "schedule": _patch_schedule,
    "changes": _patch_changes,
}


# Each step's page context: (options, notes, extra) → template variables
def _ctx_salesforce(
    options: dict[str, Any], notes: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    return {"sf_connections": _connections("salesforce"), "object_types": OBJECT_TYPES}


def _ctx_cc(options: dict[str, Any], notes: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    return _cc_context(options, notes)


def _sf_fields(options: Mapping[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    conn_id = _active(options.get("salesforce_connection"), "salesforce")
    if conn_id is None:
        notes.append(
            "No active Salesforce connection on this setup: type field API names "
            "(choose a connection in step 1 to pick from the org's fields)."
        )
        return []
    return list(
        _read(
            notes,
            lambda: catalog.salesforce_fields(
                get_settings(),
                get_store(),
                get_redis(),
                conn_id,
                options.get("object_type") or "Contact",
                _config(),
            ),
            [],
        )
    )


def _ctx_fields(options: dict[str, Any], notes: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    custom: list[dict[str, Any]] = []
    conn_id = _active(options.get("constant_contact_connection"), "constantcontact")
    if conn_id is not None:
        custom = _read(
            notes,
            lambda: catalog.cc_custom_fields(
                get_settings(), get_store(), get_redis(), conn_id, _config()
            ),
            [],
        )
    else:
        notes.append(
            "No active Constant Contact connection on this setup: its custom fields cannot be "
            "listed or created here (type `cf:<name>`)."
        )
    return {
        "sf_fields": _sf_fields(options, notes),
        "cc_standard": catalog.CC_STANDARD_FIELDS,
        "cc_custom": custom,
        "directions": DIRECTIONS,
        "field_rows": forms.with_spares(
            list(options.get("field_map") or []), FIELD_MAP_KEYS, forms.SPARE_ROWS
        ),
        "email_rows": forms.with_spares(
            list(options.get("other_email_fields") or []), EMAIL_KEYS, 1
        ),
        "can_create_field": conn_id is not None,
    }


def _ctx_segments(
    options: dict[str, Any], notes: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    builder = extra.get("builder") or forms.filter_form(options.get("filter"))
    spec = options.get("campaign_lists") or {}
    names: list[str] | None = None
    conn_id = _active(options.get("salesforce_connection"), "salesforce")
    if spec.get("source") and conn_id is not None:
        names = _read(
            notes,
            lambda: catalog.segment_names(
                get_settings(),
                get_store(),
                get_redis(),
                conn_id,
                spec["source"],
                options.get("object_type") or "Contact",
                _config(),
            ),
            None,
        )
    selected = list(spec.get("selected") or [])
    known = set(names or ())
    return {
        "builder": builder,
        "rows": forms.with_spares(builder.rows, forms.FILTER_ROW_KEYS, forms.SPARE_ROWS),
        "ops": forms.OP_WORDS,
        "groups": forms.FILTER_GROUPS,
        "sf_fields": _sf_fields(options, notes),
        "spec": spec,
        "sources": CAMPAIGN_LIST_SOURCES,
        "segment_names": names,
        "selected_more": [s for s in selected if s not in known],
        "checkbox_rows": forms.with_spares(
            list(options.get("checkbox_lists") or []), CHECKBOX_KEYS, 2
        ),
    }


def _ctx_options(
    options: dict[str, Any], notes: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    return {"controls": forms.option_controls()}


def _ctx_schedule(
    options: dict[str, Any], notes: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    return {"controls": forms.schedule_controls(), "timezones": sorted(available_timezones())}


def _ctx_changes(
    options: dict[str, Any], notes: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    return {"doors": SALESFORCE_DOORS, "door_words": DOOR_WORDS, "auths": WEBHOOK_AUTH}


_CONTEXTS: dict[str, Callable[[dict[str, Any], list[str], dict[str, Any]], dict[str, Any]]] = {
    "salesforce": _ctx_salesforce,
    "constant-contact": _ctx_cc,
    "fields": _ctx_fields,
    "segments": _ctx_segments,
    "options": _ctx_options,
    "schedule": _ctx_schedule,
    "changes": _ctx_changes,
}


@bp.post("/setups/<int:setup_id>/edit/fields/custom-field")
def wizard_custom_field(setup_id: int) -> WebResponse:
    """Create a Constant Contact custom field for the mapping, and come back."""
    label = (request.form.get("label") or "").strip()
    back = _step_url(setup_id, "fields")
    try:
        with get_store().transaction() as session:
            view = setups.show_setup(get_settings(), session, setup_id)
        conn_id = view["constant_contact_connection"]
        if conn_id is None:
            raise Conflict("Choose a Constant Contact connection first (step 2).")
        made = catalog.create_cc_custom_field(
            get_settings(), get_store(), get_redis(), conn_id, label, _config()
        )
    except Invalid as exc:
        flash("; ".join(m for ms in (exc.errors or {}).values() for m in ms) or exc.detail, "error")
    except ServiceError as exc:
        flash(exc.detail, "error")
    else:
        flash(f"Custom field “{made['label']}” ready: map it as {made['cc_field']}.", "ok")
    return redirect(back, code=303)


@bp.post("/setups/<int:setup_id>/edit/changes/secret")
def wizard_rotate_secret(setup_id: int) -> WebResponse:
    """A new webhook secret, shown on this answer only (the old one stops working)."""
    with get_store().transaction() as session:
        view = setups.rotate_secret(get_settings(), session, setup_id)
    forget_setup(setup_id)
    return _wizard(
        "changes.html",
        200,
        step="changes",
        setup=view,
        values=view["options"],
        secret=view["webhook_secret"],
        action=_step_url(setup_id, "changes"),
        **_ctx_changes(view["options"], [], {}),
    )


# --------------------------------------------------------------------------- finish


@bp.route("/setups/<int:setup_id>/edit/finish", methods=["GET", "POST"])
def wizard_finish(setup_id: int) -> WebResponse:
    """The setup in words; POST resumes it (it was paused while being set up)."""
    if request.method == "POST":
        try:
            setups.resume_setup(get_settings(), get_store(), get_redis(), setup_id)
        except ServiceError as exc:
            flash(exc.detail, "error")
        else:
            flash(
                "The setup is running: changes sync from now on; "
                "Sync Now brings everything across now.",
                "ok",
            )
        return redirect(url_for("dashboard.wizard_finish", setup_id=setup_id), code=303)
    with get_store().transaction() as session:
        view = setups.show_setup(get_settings(), session, setup_id)
        status = setups.setup_status(session, get_redis(), setup_id)
    return _wizard("finish.html", step="finish", setup=view, status=status, values=view["options"])


# --------------------------------------------------------------------------- delete


@bp.get("/setups/<int:setup_id>/delete")
def delete_confirm(setup_id: int) -> WebResponse:
    """What deleting a setup does, before it is done."""
    with get_store().transaction() as session:
        view = setups.show_setup(get_settings(), session, setup_id)
    return _page("wizard/delete_confirm.html", setup=view)


@bp.post("/setups/<int:setup_id>/delete")
def delete_setup(setup_id: int) -> WebResponse:
    try:
        with get_store().transaction() as session:
            view = setups.show_setup(get_settings(), session, setup_id)
            setups.delete_setup(session, get_redis(), setup_id)
    except ServiceError as exc:
        flash(exc.detail, "error")
        return redirect(url_for("dashboard.setups_page"), code=303)
    forget_setup(setup_id)
    flash(f"Setup “{view['name']}” deleted; Salesforce and Constant Contact are untouched.", "ok")
    return redirect(url_for("dashboard.setups_page"), code=303)
