"""Wizard forms: setup options as HTML controls and form posts back into setup options.

The options page and the schedule are generated from ``schemas.setup`` (each field's type,
enum, default and description), so a new option shows up with its help text without a template
change. Controls are named by the option's path (``schedule.at``, ``field_map[0].cc_field``),
the keys the schema's 422 uses, so an error finds its field by name. Nothing here calls a
service or a vendor: it only translates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, fields, validate
from werkzeug.datastructures import MultiDict

from schemas.setup import (
    FILTER_OPS,
    CampaignSelectionField,
    CcSourceField,
    SetupSchema,
    StrictBoolean,
)

# Options asked for by a step of their own; the options step shows every other one.
OWN_STEP_OPTIONS = frozenset(
    {
        "name",
        "object_type",
        "salesforce_connection",
        "constant_contact_connection",
        "main_list",
        "namespace_prefix",
        "field_map",
        "other_email_fields",
        "filter",
        "campaign_lists",
        "checkbox_lists",
        "schedule",
        "webhook",
        "salesforce_changes",
    }
)
_WORDS = {"cc": "Constant Contact", "sf": "Salesforce", "npsp": "NPSP", "at": "At"}
# Input types where the schema's String is a richer HTML one.
INPUT_TYPES = {"schedule.at": "time"}
# The filter operators in the seed's words, in the order the builder offers them.
OP_WORDS = {
    "equals": "equals",
    "not_equals": "does not equal",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
    "not_starts_with": "does not start with",
    "in": "is one of (comma-separated)",
    "not_in": "is none of (comma-separated)",
    "greater_than": "greater than",
    "greater_or_equal": "greater or equal",
    "less_than": "less than",
    "less_or_equal": "less or equal",
    "is_blank": "is blank",
    "is_not_blank": "is not blank",
    "is_true": "is true (checkbox)",
    "is_false": "is false (checkbox)",
}
assert set(OP_WORDS) == set(FILTER_OPS)
_VALUELESS = ("is_blank", "is_not_blank", "is_true", "is_false")
_LISTS = ("in", "not_in")
_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?$")
# Blank rows offered under the filled ones (no script adds rows).
SPARE_ROWS = 3
# Groups a filter row may belong to (a group is one level below the filter).
FILTER_GROUPS = (1, 2, 3)


def input_id(path: str) -> str:
    """A control's HTML id from its option path."""
    return "f-" + re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")


def label_of(name: str) -> str:
    """``sync_to_cc`` → ``Sync to Constant Contact``."""
    words = [_WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


@dataclass
class Control:
    """One generated control (or a fieldset of them, ``children``)."""

    path: str
    label: str
    kind: str  # checkbox, select, number, text, time, fieldset, cc_source, campaign_selection
    help: str = ""
    choices: list[tuple[str, str]] = field(default_factory=list)
    default: Any = None
    children: list[Control] = field(default_factory=list)
    minimum: int | None = None
    maximum: int | None = None

    @property
    def id(self) -> str:
        return input_id(self.path)


def _one_of(f: fields.Field) -> list[str] | None:
    for v in f.validators:
        if isinstance(v, validate.OneOf):
            return [str(c) for c in v.choices]
    return None


def _range(f: fields.Field) -> tuple[int | None, int | None]:
    for v in f.validators:
        if isinstance(v, validate.Range):
            return (
                int(v.min) if v.min is not None else None,
                int(v.max) if v.max is not None else None,
            )
    return None, None


def control_for(name: str, f: fields.Field, prefix: str = "") -> Control:
    """The control for one schema field (a fieldset for a nested schema)."""
    path = f"{prefix}{name}"
    help_text = str(f.metadata.get("description", ""))
    default = f.metadata.get("default")
    label = label_of(name)
    if isinstance(f, fields.Nested) and not f.many and isinstance(f.schema, Schema):
        children = [control_for(n, sub, f"{path}.") for n, sub in f.schema.fields.items()]
        return Control(path, label, "fieldset", help_text, children=children)
    if isinstance(f, StrictBoolean):
        # The schema speaks JSON ("false = don't sync ..."); a box is ticked or not.
        help_text = re.sub(r"^false = ", "Untick: ", re.sub(r"^true = ", "Tick: ", help_text))
        return Control(path, label, "checkbox", help_text, default=default)
    if isinstance(f, CcSourceField):
        choices = [
            ("main_list", "The main list"),
            ("all_active", "Every active contact"),
            ("lists", "The lists named below"),
        ]
        return Control(path, label, "cc_source", help_text, choices, default)
    if isinstance(f, CampaignSelectionField):
        return Control(path, label, "campaign_selection", help_text, default=default)
    enum = _one_of(f)
    if enum is not None:
        choices = [(c, c.replace("_", " ")) for c in enum]
        if f.allow_none:
            choices.insert(0, ("", "Not set (the default)"))
        return Control(path, label, "select", help_text, choices, default)
    if isinstance(f, fields.Integer):
        low, high = _range(f)
        return Control(path, label, "number", help_text, default=default, minimum=low, maximum=high)
    return Control(path, label, INPUT_TYPES.get(path, "text"), help_text, default=default)


def option_controls() -> list[Control]:
    """The options step: every option without a step of its own, in the schema's order."""
    return [
        control_for(name, f)
        for name, f in SetupSchema().fields.items()
        if name not in OWN_STEP_OPTIONS
    ]


def schedule_controls() -> list[Control]:
    """The schedule step: the ``schedule`` option's fields."""
    control = control_for("schedule", SetupSchema().fields["schedule"])
    return control.children


def value_at(options: Mapping[str, Any], path: str) -> Any:
    """An option's current value by dotted path (None when absent)."""
    current: Any = options
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _text(form: MultiDict[str, str], name: str) -> str:
    return (form.get(name) or "").strip()


def lines(text: str) -> list[str]:
    """A textarea's non-blank lines, trimmed (one name a line)."""
    return [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]


def _read(control: Control, form: MultiDict[str, str]) -> Any:
    """A control's posted value as the schema expects it (raw text when it cannot be read,
    so the schema's own message names the problem)."""
    if control.kind == "fieldset":
        return {c.path.rsplit(".", 1)[-1]: _read(c, form) for c in control.children}
    if control.kind == "checkbox":
        return control.path in form
    raw = _text(form, control.path)
    if control.kind == "number":
        return int(raw) if re.fullmatch(r"-?\d+", raw) else raw
    if control.kind == "cc_source":
        if raw == "lists":
            return {"lists": lines(form.get(f"{control.path}.lists") or "")}
        return raw
    if control.kind == "campaign_selection":
        names = lines(form.get(f"{control.path}.names") or "")
        return names if raw == "named" else "all"
    if control.kind == "select" and raw == "":
        return None
    return raw


def read_controls(controls: list[Control], form: MultiDict[str, str]) -> dict[str, Any]:
    """The patch a generated step's form makes (every control of the page, unticked boxes
    meaning false)."""
    return {c.path.rsplit(".", 1)[-1]: _read(c, form) for c in controls}


# --------------------------------------------------------------------------- rows


def read_rows(
    form: MultiDict[str, str], option: str, keys: tuple[str, ...]
) -> list[dict[str, str]]:
    """Posted rows ``option[i].key`` in order, blank rows dropped."""
    indexes = sorted(
        {
            int(m.group(1))
            for name in form
            if (m := re.fullmatch(rf"{re.escape(option)}\[(\d+)\]\.\w+", name))
        }
    )
    rows = []
    for i in indexes:
        row = {k: _text(form, f"{option}[{i}].{k}") for k in keys}
        if any(row[k] for k in keys[:2]):
            rows.append(row)
    return rows


def with_spares(rows: list[dict[str, Any]], keys: tuple[str, ...], spare: int) -> list[Any]:
    """The rows to show: the filled ones and ``spare`` blank ones."""
    return [*rows, *({k: "" for k in keys} for _ in range(spare))]


# --------------------------------------------------------------------------- the filter

FILTER_ROW_KEYS = ("field", "op", "value", "group")


def _value_of(op: str, raw: str) -> Any:
    if op in _VALUELESS:
        return None
    if op in _LISTS:
        items = [v.strip() for v in raw.split(",") if v.strip()]
        return [_scalar(v) for v in items]
    return _scalar(raw, booleans=op in ("equals", "not_equals"))


def _scalar(raw: str, booleans: bool = False) -> Any:
    if booleans and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if _NUMBER.match(raw):
        return float(raw) if "." in raw else int(raw)
    return raw


def _shown_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_shown_value(v) for v in value)
    return str(value)


@dataclass
class FilterForm:
    """The filter builder's state: top-level match, group matches, rows (each knowing the
    option path its errors come back under), or the filter as JSON when it nests deeper."""

    match: str = "all"
    group_match: dict[int, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    as_json: str = ""


def filter_form(flt: Mapping[str, Any] | None) -> FilterForm:
    """The builder for a stored filter; JSON when it has a group inside a group."""
    if not flt:
        return FilterForm()
    form = FilterForm(match=str(flt.get("match", "all")))
    group = 0
    for i, item in enumerate(flt.get("conditions") or ()):
        if "conditions" in item:
            group += 1
            inner = item.get("conditions") or ()
            if group > len(FILTER_GROUPS) or any("conditions" in c for c in inner):
                return FilterForm(as_json=json.dumps(flt, indent=2))
            form.group_match[group] = str(item.get("match", "all"))
            for j, cond in enumerate(inner):
                form.rows.append(_row(cond, str(group), f"filter.conditions[{i}].conditions[{j}]"))
        else:
            form.rows.append(_row(item, "", f"filter.conditions[{i}]"))
    return form


def _row(cond: Mapping[str, Any], group: str, path: str) -> dict[str, Any]:
    return {
        "field": str(cond.get("field", "")),
        "op": str(cond.get("op", "")),
        "value": _shown_value(cond.get("value")),
        "group": group,
        "path": path,
    }


def read_filter(form: MultiDict[str, str]) -> tuple[dict[str, Any] | None, FilterForm]:
    """The posted filter (None: no rows, every record syncs) and the builder to show again
    with each row's error path. ``filter_json``, when posted and not blank, wins."""
    as_json = (form.get("filter_json") or "").strip()
    if as_json:
        try:
            loaded = json.loads(as_json)
        except ValueError:
            loaded = as_json  # the schema says it is not an object
        return loaded, FilterForm(as_json=as_json)
    built = FilterForm(match=_text(form, "filter.match") or "all")
    for g in FILTER_GROUPS:
        built.group_match[g] = _text(form, f"filter_groups[{g}].match") or "all"
    posted = read_rows(form, "filter_rows", FILTER_ROW_KEYS)
    if not posted:
        return None, built
    top: list[Any] = []
    groups: dict[str, tuple[int, list[Any]]] = {}
    for row in posted:
        cond: dict[str, Any] = {"field": row["field"], "op": row["op"]}
        if row["op"] not in _VALUELESS:  # a value beside is_blank & co is not asked for
            cond["value"] = _value_of(row["op"], row["value"]) if row["value"] else None
        if row["group"] and row["group"] in {str(g) for g in FILTER_GROUPS}:
            if row["group"] not in groups:
                groups[row["group"]] = (len(top), [])
                top.append({"match": built.group_match[int(row["group"])], "conditions": []})
            at, members = groups[row["group"]]
            path = f"filter.conditions[{at}].conditions[{len(members)}]"
            members.append(cond)
            top[at]["conditions"].append(cond)
        else:
            path = f"filter.conditions[{len(top)}]"
            top.append(cond)
        built.rows.append({**row, "path": path})
    return {"match": built.match, "conditions": top}, built
