"""Segmentation: whether a Salesforce record matches a setup's `filter` (seed Step 4), purely.

The filter is evaluated here rather than in SOQL so one re-read serves both questions a batch asks
— "what are its values?" and "does it still belong?" — and a record that stops matching is still
seen (it must leave this setup's lists). Comparisons follow SOQL's: text is compared ignoring
case, blank and missing are the same, numbers compare as numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from middleware.sync.mapping import apply_namespace, get_field
from middleware.sync.options import SetupOptions


def filter_fields(setup: SetupOptions) -> list[str]:
    """The Salesforce fields the filter reads (namespaced), for the job's SELECT list."""
    ns = setup.namespace_prefix
    return list(dict.fromkeys(apply_namespace(c.field, ns) for c in setup.filter_conditions))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip().lower()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _truthy(value: Any) -> bool:
    return value is True or _text(value) in ("true", "1", "yes")


def _compare(value: Any, op: str, wanted: Any) -> bool:
    if op == "is_blank":
        return _blank(value)
    if op == "is_not_blank":
        return not _blank(value)
    if op == "is_true":
        return _truthy(value)
    if op == "is_false":
        return not _truthy(value)
    if op in ("in", "not_in"):
        found = _text(value) in {_text(w) for w in wanted or ()}
        return found if op == "in" else not found
    if op in ("greater_than", "less_than"):
        left, right = _number(value), _number(wanted)
        if left is None or right is None:
            # Dates and datetimes compare as ISO text, which orders them correctly.
            if _blank(value):
                return False
            left_t, right_t = _text(value), _text(wanted)
            return left_t > right_t if op == "greater_than" else left_t < right_t
        return left > right if op == "greater_than" else left < right
    text, target = _text(value), _text(wanted)
    if op == "equals":
        return text == target
    if op == "not_equals":
        return text != target
    if op == "contains":
        return target in text
    if op == "not_contains":
        return target not in text
    if op == "starts_with":
        return text.startswith(target)
    raise ValueError(f"unknown filter operator {op!r}")


def matches_filter(setup: SetupOptions, record: Mapping[str, Any]) -> bool:
    """Whether the record belongs to the setup's segment (no filter: every record does)."""
    spec = setup.filter
    if spec is None or not spec.conditions:
        return True
    ns = setup.namespace_prefix
    results = (
        _compare(get_field(record, apply_namespace(c.field, ns)), c.op, c.value)
        for c in spec.conditions
    )
    return any(results) if spec.match == "any" else all(results)


def unmatched(setup: SetupOptions, records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of the live records that fall outside the filter."""
    return [
        str(r["Id"]) for r in records if not r.get("IsDeleted") and not matches_filter(setup, r)
    ]
