"""Segmentation: whether a Salesforce record matches a setup's `filter` (seed Step 4), purely.

The filter is evaluated here rather than in SOQL so one re-read serves both questions a batch asks
— "what are its values?" and "does it still belong?" — and a record that stops matching is still
seen (it must leave this setup's lists). Comparisons follow SOQL's:

- text is compared ignoring case (and surrounding spaces); blank and missing are the same;
- numbers compare as numbers: the ordering operators whenever both sides read as numbers, and
  ``equals`` / ``not_equals`` / ``in`` / ``not_in`` when one side is a JSON number (so ``120``
  equals ``120.0``, while the text ``"01234"`` still equals only ``"01234"``);
- a ``YYYY-MM-DD`` value against a datetime compares the datetime's date part (UTC, as Salesforce
  returns datetimes); two datetimes compare as instants (a value without an offset is UTC);
  otherwise ISO dates order correctly as text;
- the ordering operators are false on a blank value, as SOQL's ``>`` is on null; ``not_*``
  operators are true on it (a blank does not contain, start with or equal anything).

A criterion is a condition or a group of criteria (``match`` all / any). :func:`check_filter`
checks the conditions against the org's describe (field exists, operator fits its type, date
values are dates) for the save path; the describe is handed in, so this stays pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from middleware.sync.mapping import apply_namespace, get_field
from middleware.sync.options import Condition, Criterion, Group, SetupOptions

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_ORDERING = {
    "greater_than": lambda c: c > 0,
    "greater_or_equal": lambda c: c >= 0,
    "less_than": lambda c: c < 0,
    "less_or_equal": lambda c: c <= 0,
}


def filter_fields(setup: SetupOptions) -> list[str]:
    """The Salesforce fields the filter reads (namespaced, groups walked), for the SELECT list."""
    ns = setup.namespace_prefix
    return list(dict.fromkeys(apply_namespace(c.field, ns) for c in setup.filter_conditions))


# A compiled filter: record → whether it matches. Compiled once per Filter (the wanted values
# read once, not per record: a Full Sync asks for every record of the org).
Predicate = Callable[[Mapping[str, Any]], bool]
_NUMBER_RE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip().lower()


def _number(value: Any) -> float | None:
    """The value as a number when it is one or reads as one (no exception per record)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _NUMBER_RE.match(value):
        return float(value)
    return None


def _is_json_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _truthy(value: Any) -> bool:
    return value is True or _text(value) in ("true", "1", "yes")


def _instant(text: str) -> datetime | None:
    """An ISO datetime as an aware instant (no offset: UTC), or None."""
    if not _DATETIME_RE.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class _Wanted:
    """A condition's value, read once: as text, as a number, as a date or an instant."""

    __slots__ = ("blank", "date", "instant", "json_number", "number", "text")

    def __init__(self, value: Any) -> None:
        self.blank = _blank(value)
        self.text = _text(value)
        self.number = _number(value)
        self.json_number = _is_json_number(value)
        self.date = bool(_DATE_RE.match(self.text))
        self.instant = None if self.date else _instant(str(value).strip())


def _sign(left: Any, right: Any) -> int:
    return (left > right) - (left < right)


def _cmp(left: Any, w: _Wanted) -> int:
    """-1 / 0 / 1 of a record's (non-blank) value against a wanted one, as the module says."""
    if w.number is not None and (w.json_number or _is_json_number(left)):
        number = _number(left)
        if number is not None:
            return _sign(number, w.number)
    text = _text(left)
    if w.date:
        if _DATETIME_RE.match(text):
            text = text[:10]  # a datetime against a date: its date part
    elif w.instant is not None:
        instant = _instant(str(left).strip())
        if instant is not None:
            return _sign(instant, w.instant)
    return _sign(text, w.text)


def _test(op: str, value: Any) -> Callable[[Any], bool]:
    """A record value → whether the condition ``op value`` holds."""
    if op == "is_blank":
        return _blank
    if op == "is_not_blank":
        return lambda v: not _blank(v)
    if op == "is_true":
        return _truthy
    if op == "is_false":
        return lambda v: not _truthy(v)
    if op in ("in", "not_in"):
        items = tuple(_Wanted(w) for w in value or ())
        inside = op == "in"
        return lambda v: inside is (not _blank(v) and any(_cmp(v, w) == 0 for w in items))
    w = _Wanted(value)
    if op in _ORDERING:
        holds = _ORDERING[op]

        def ordered(v: Any) -> bool:
            if _blank(v):
                return False
            number = _number(v)  # both read as numbers: numeric, text or not
            if number is not None and w.number is not None:
                return bool(holds(_sign(number, w.number)))
            return bool(holds(_cmp(v, w)))

        return ordered
    if op in ("equals", "not_equals"):
        same = op == "equals"
        return lambda v: same is ((_cmp(v, w) == 0) if not _blank(v) else w.blank)
    target = w.text
    if op == "contains":
        return lambda v: target in _text(v)
    if op == "not_contains":
        return lambda v: target not in _text(v)
    if op == "starts_with":
        return lambda v: _text(v).startswith(target)
    if op == "not_starts_with":
        return lambda v: not _text(v).startswith(target)
    raise ValueError(f"unknown filter operator {op!r}")


def _compile(criterion: Criterion, ns: str | None) -> Predicate:
    if isinstance(criterion, Group):
        parts = tuple(_compile(c, ns) for c in criterion.conditions)
        wanted = criterion.match == "any"  # the answer that settles the group at once

        def group(r: Mapping[str, Any]) -> bool:
            for part in parts:
                if part(r) is wanted:
                    return wanted
            return not wanted

        return group
    test = _test(criterion.op, criterion.value)
    path = apply_namespace(criterion.field, ns)
    if "." in path:
        return lambda r: test(get_field(r, path))
    return lambda r: test(r.get(path))


# Compiled filters by the Filter's identity (each kept with its Filter, so the id stays its own);
# a handful of setups per process, cleared past the bound.
_COMPILED: dict[int, tuple[Any, str | None, Predicate]] = {}
_COMPILED_MAX = 64


def filter_predicate(setup: SetupOptions) -> Predicate:
    """The setup's filter compiled (no filter: every record matches)."""
    spec, ns = setup.filter, setup.namespace_prefix
    if spec is None or not spec.conditions:
        return lambda _r: True
    hit = _COMPILED.get(id(spec))
    if hit is not None and hit[0] is spec and hit[1] == ns:
        return hit[2]
    predicate = _compile(Group(spec.match, spec.conditions), ns)
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    _COMPILED[id(spec)] = (spec, ns, predicate)
    return predicate


def matches_filter(setup: SetupOptions, record: Mapping[str, Any]) -> bool:
    """Whether the record belongs to the setup's segment (no filter: every record does)."""
    return filter_predicate(setup)(record)


def unmatched(setup: SetupOptions, records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of the live records that fall outside the filter."""
    matches = filter_predicate(setup)
    return [str(r["Id"]) for r in records if not r.get("IsDeleted") and not matches(r)]


# --- checking a filter against the org's describe (the save path) ------------------------------

# Salesforce describe field types, grouped by what a filter can do with them.
TEXT_TYPES = frozenset(
    {
        "string",
        "textarea",
        "picklist",
        "multipicklist",
        "combobox",
        "phone",
        "email",
        "url",
        "encryptedstring",
        "id",
        "reference",
        "anyType",
    }
)
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent", "long"})
# Text types whose alphabetical order means something to a person (not ids, long text or
# multi-select values).
ORDERED_TEXT_TYPES = frozenset({"string", "picklist", "combobox", "phone", "email", "url"})
ORDERED_TYPES = NUMBER_TYPES | ORDERED_TEXT_TYPES | {"date", "datetime", "time"}
# Compound and binary fields hold no single comparable value.
UNCOMPARABLE_TYPES = frozenset({"address", "location", "base64", "complexvalue", "json"})

_TEXT_OPS = ("contains", "not_contains", "starts_with", "not_starts_with")
_EQUALITY_OPS = ("equals", "not_equals", "in", "not_in")

# describe(object name) → its describe result, or None when the org has no such object.
Describe = Callable[[str], Mapping[str, Any] | None]


class UnknownField(LookupError):
    """A filter field the org's describe does not have (the message says which part)."""


def _quote(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower()


def _criterion_text(c: Condition) -> str:
    if c.value is None:
        return f"`{c.field} {c.op}`"
    shown = "[" + ", ".join(map(_quote, c.value)) + "]" if isinstance(c.value, list) else None
    return f"`{c.field} {c.op} {shown or _quote(c.value)}`"


def _find(fields_: Iterable[Mapping[str, Any]], key: str, name: str) -> Mapping[str, Any] | None:
    """The field whose ``key`` is ``name``; else, ignoring case, raise the canonical spelling."""
    folded = None
    for f in fields_:
        given = str(f.get(key) or "")
        if given == name:
            return f
        if given.lower() == name.lower():
            folded = given
    if folded is not None:
        # Records come back keyed by the describe's spelling: another case never matches.
        raise UnknownField(f"is spelt `{folded}` in Salesforce (names are case-sensitive here)")
    return None


def resolve_field(describe: Describe, sobject: str, path: str) -> Mapping[str, Any]:
    """The describe entry of a (dotted, relationship) field path from ``sobject``.

    Raises :class:`UnknownField` saying what is missing; whatever ``describe`` raises passes.
    """
    *relationships, name = path.split(".")
    objects = [sobject]
    for part in relationships:
        hop = _field_on(describe, objects, "relationshipName", part, "relationship")
        objects = [str(o) for o in hop.get("referenceTo") or ()]
        if not objects:
            raise UnknownField(f"`{part}` leads to no object")
    return _field_on(describe, objects, "name", name, "field")


def _field_on(
    describe: Describe, objects: list[str], key: str, name: str, what: str
) -> Mapping[str, Any]:
    """The first of ``objects`` (several: a polymorphic relationship) having the field."""
    for obj in objects:
        described = describe(obj)
        found = _find((described or {}).get("fields") or (), key, name)
        if found is not None:
            return found
    raise UnknownField(f"{' / '.join(objects)} has no {what} `{name}`")


def _value_error(ftype: str, value: Any) -> str | None:
    """Why ``value`` cannot be compared with a field of ``ftype`` (None: it can)."""
    number = _number(value)
    if ftype in NUMBER_TYPES and (number is None or not math.isfinite(number)):
        return f"needs a number for a {ftype} field"
    if ftype == "date" and not (isinstance(value, str) and _is_date(value)):
        return "needs a date as YYYY-MM-DD for a date field"
    if ftype == "datetime" and not (
        isinstance(value, str) and (_is_date(value) or _instant(value.strip()) is not None)
    ):
        return (
            "needs a date as YYYY-MM-DD (compared with the date part) or an ISO datetime, e.g. "
            "2026-01-31T09:00:00Z, for a datetime field"
        )
    if ftype == "boolean" and not (isinstance(value, bool) or _text(value) in ("true", "false")):
        return "needs true or false for a checkbox field"
    return None


def _is_date(text: str) -> bool:
    if not _DATE_RE.match(text.strip()):
        return False
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _op_error(ftype: str, op: str) -> str | None:
    """Why ``op`` does not fit a field of ``ftype`` (None: it does; unknown types are let be)."""
    if ftype in UNCOMPARABLE_TYPES:
        return f"a {ftype} field cannot be compared; use one of its parts (e.g. MailingCity)"
    if op in ("is_true", "is_false"):
        return None if ftype == "boolean" else f"`{op}` is for checkbox fields, not {ftype}"
    if ftype == "boolean":
        if op in ("equals", "not_equals"):
            return None
        return f"a checkbox field takes is_true, is_false, equals or not_equals, not `{op}`"
    known = ftype in TEXT_TYPES | NUMBER_TYPES | {"date", "datetime", "time"}
    if op in _TEXT_OPS and known and ftype not in TEXT_TYPES:
        return f"`{op}` is for text fields, not {ftype}"
    if op in _ORDERING and known and ftype not in ORDERED_TYPES:
        return f"`{op}` does not order a {ftype} field"
    return None


def _check_condition(
    c: Condition, path: str, sobject: str, ns: str | None, describe: Describe
) -> dict[str, list[str]]:
    named = apply_namespace(c.field, ns)
    shown = _criterion_text(c)
    try:
        field = resolve_field(describe, sobject, named)
    except UnknownField as exc:
        extra = f" (`{c.field}` with namespace_prefix applied)" if named != c.field else ""
        return {f"{path}.field": [f"{shown}: `{named}`{extra}: {exc}."]}
    ftype = str(field.get("type") or "")
    problem = _op_error(ftype, c.op)
    if problem is not None:
        return {f"{path}.op": [f"{shown}: {problem}."]}
    if c.value is None or c.op in _TEXT_OPS:
        return {}
    values = c.value if isinstance(c.value, list) else [c.value]
    for v in values:
        problem = _value_error(ftype, v)
        if problem is not None:
            return {f"{path}.value": [f"{shown}: {_quote(v)} {problem} (`{named}`)."]}
    return {}


def check_mapped_fields(setup: SetupOptions, describe: Describe) -> dict[str, list[str]]:
    """The extra mappings' Salesforce fields the object lacks (``field_map`` and
    ``other_email_fields``; namespace applied, a relationship's own name checked), keyed like
    the schema's (``field_map[1].sf_field``). Every read of the object SELECTs them, so one
    missing field would fail every run; ``describe`` as for :func:`check_filter`. Empty: nothing
    wrong."""
    errors: dict[str, list[str]] = {}
    ns = setup.namespace_prefix
    rows: list[tuple[str, str]] = [
        *((f"field_map[{i}].sf_field", e.sf_field) for i, e in enumerate(setup.field_map)),
        *(
            (f"other_email_fields[{i}].sf_field", e.sf_field)
            for i, e in enumerate(setup.other_email_fields)
        ),
    ]
    for path, given in rows:
        named = apply_namespace(given, ns)
        try:
            if "." in named:
                # A relationship's own object may be one the org does not describe (User): the
                # relationship is checked, the field across it is left to the run.
                first = named.split(".", 1)[0]
                _field_on(describe, [setup.object_type], "relationshipName", first, "relationship")
            else:
                resolve_field(describe, setup.object_type, named)
        except UnknownField as exc:
            extra = f" (`{given}` with namespace_prefix applied)" if named != given else ""
            errors[path] = [f"`{named}`{extra}: {exc}."]
    return errors


def check_filter(setup: SetupOptions, describe: Describe) -> dict[str, list[str]]:
    """The filter's problems against the org, keyed like the schema's (``filter.conditions[2]
    .field``): a field the object lacks (namespace applied, relationships followed), an operator
    that does not fit the field's type, a date or datetime value that is not one. ``describe``
    answers an object's describe (None: no such object) and may raise; empty: nothing wrong."""
    errors: dict[str, list[str]] = {}
    if setup.filter is None:
        return errors

    def walk(criteria: tuple[Criterion, ...], prefix: str) -> None:
        for i, c in enumerate(criteria):
            path = f"{prefix}.conditions[{i}]"
            if isinstance(c, Group):
                walk(c.conditions, path)
                continue
            for key, texts in _check_condition(
                c, path, setup.object_type, setup.namespace_prefix, describe
            ).items():
                errors.setdefault(key, []).extend(texts)

    walk(setup.filter.conditions, "filter")
    return errors
