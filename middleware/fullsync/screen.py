"""The Full Sync's per-record work, done by the screening processes ahead of the planner.

A page of Salesforce records, each joined in the spool with its link and the contact the link
names (:func:`spool.joined_page`), is classified here (the record's segmentation, whether it
claims its address, its mapped values and fingerprint) and screened: the records already in
step are counted out, the rest go back to the planner (:class:`engine.FullSync`).

Deliberately light (the pure sync rules and the spool, nothing of the service): the screening
processes are started from a fork server that preloads this module only.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from middleware.fullsync.spool import SEP, joined_page, open_reader
from middleware.sync.campaigns import in_campaign_scope, member_key, segment_lists
from middleware.sync.mapping import fingerprint, map_record, object_fields
from middleware.sync.options import SetupOptions
from middleware.sync.segments import matches_filter
from middleware.sync.sf_to_cc import claims_address

# A segmentation hook (filter, campaign / list-view / checkbox lists, a later issue): for a record,
# whether it matches the setup's segmentation and, if known, the segmentation lists it belongs on.
Segmenter = Callable[[Mapping[str, Any]], tuple[bool, tuple[str, ...] | None]]


def filter_segmenter(options: SetupOptions) -> Segmenter:
    """The setup's ``filter`` (seed Step 4); deleted records are left to the delete rules."""
    return FilterSegmenter(options)


@dataclass(frozen=True)
class FilterSegmenter:
    """:func:`filter_segmenter`'s segmenter: a class, not a closure, so it pickles (the
    screening processes receive it)."""

    options: SetupOptions

    def __call__(self, record: Mapping[str, Any]) -> tuple[bool, tuple[str, ...] | None]:
        return bool(record.get("IsDeleted")) or matches_filter(self.options, record), None


@dataclass(frozen=True)
class ListsSegmenter:
    """The filter, and the segmentation lists: Campaign lists (``memberships``: member key →
    maintained Campaign ids, read once per run) and checkbox lists. A record outside every
    maintained Campaign does not match (with ``campaign_lists``). Pickles, like
    :class:`FilterSegmenter`."""

    options: SetupOptions
    memberships: Mapping[str, tuple[str, ...]]
    campaign_list_ids: Mapping[str, str]
    checkbox_list_ids: Mapping[str, str]
    by_record_id: bool = False  # List Views key their members by record id

    def __call__(self, record: Mapping[str, Any]) -> tuple[bool, tuple[str, ...] | None]:
        if record.get("IsDeleted"):
            return True, None
        key = str(record["Id"]) if self.by_record_id else member_key(self.options, record)
        member_of = self.memberships.get(key, ()) if key else ()
        if not (
            matches_filter(self.options, record)
            and in_campaign_scope(self.options, member_of, self.campaign_list_ids)
        ):
            return False, None
        lists = segment_lists(
            self.options,
            record,
            memberships=member_of,
            campaign_list_ids=self.campaign_list_ids,
            checkbox_list_ids=self.checkbox_list_ids,
        )
        return True, lists


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


# What the sync phase needs to know of one record before it looks at the spool: whether it
# matches the segmentation, its segmentation lists, and — when it claims its address — its mapped
# values and their fingerprint.
Classified = tuple[bool, tuple[str, ...] | None, dict[str, str] | None, str | None]


class Classifier:
    """The pure, per-record part of the sync phase (most of its CPU): a Bulk row as a record,
    its segmentation, whether it claims its address, its mapped values and fingerprint.

    Plain data and functions only, so a second process can run it on the next page while the
    first plans and writes this one.
    """

    def __init__(
        self,
        options: SetupOptions,
        columns: list[str],
        segmenter: Segmenter,
        dropped: frozenset[str],
        compiled: Any,
    ) -> None:
        self.options = options
        self.columns = columns
        self.segmenter = segmenter
        self.dropped = dropped
        self.compiled = compiled
        self.spec = object_fields(options)
        bools = {"IsDeleted", "IsConverted", "IsPersonAccount", self.spec.opted_out}
        bools.update(e.field for e in options.checkbox_lists)
        self.plain: list[tuple[int, str]] = []
        self.booleans: list[tuple[int, str]] = []
        self.nested: list[tuple[int, str, str]] = []
        for i, name in enumerate(columns):
            if "." in name:
                head, _, rest = name.partition(".")
                self.nested.append((i, head, rest))
            elif name in bools:
                self.booleans.append((i, name))
            else:
                self.plain.append((i, name))

    def record(self, values: Sequence[Any]) -> dict[str, Any]:
        """A Bulk CSV row as SOQL JSON would give it: relationships nested, booleans typed."""
        out: dict[str, Any] = {name: values[i] for i, name in self.plain}
        for i, name in self.booleans:
            out[name] = _flag(values[i])
        for i, head, rest in self.nested:
            node = out.get(head)
            if not isinstance(node, dict):
                node = out[head] = {}
            node[rest] = values[i]
        return out

    def claims(self, record: Mapping[str, Any], email: str | None) -> bool:
        """Whether the record would claim its address in the planner (the ordinary case)."""
        return claims_address(self.options, record, email or "")

    def map(self, record: Mapping[str, Any]) -> dict[str, str]:
        """The record's values as the planner writes them (custom fields CC lacks left out)."""
        values = map_record(self.options, record, self.compiled)
        for key in self.dropped:
            values.pop(key, None)
        return values

    def classify(self, email: str | None, values: Sequence[Any]) -> Classified:
        record = self.record(values)
        matches, lists = self.segmenter(record)
        if not (matches and self.claims(record, email)):
            return matches, lists, None, None
        mapped = self.map(record)
        return matches, lists, mapped, fingerprint(mapped)

    def screen(
        self,
        rows: Sequence[tuple[Any, ...]],
        last_id: str,
        main_list_id: str,
        cc_fields: Sequence[str],
        settle: bool,
    ) -> Screened:
        """Classify a page of joined rows (:func:`spool.joined_page`) and, when ``settle``,
        count out the records already in step: linked, fingerprint unchanged, the linked
        contact at the same address, subscribed, on the link's and the wanted lists, and
        showing the mapped values. What :meth:`FullSync._page` would find unchanged, decided
        here so only the rest goes back to the planner (most of a drift run is in step)."""
        compare = list(enumerate(cc_fields))
        rest: list[tuple[str, str | None, list[Any]]] = []
        classified: list[Classified] = []
        unchanged = 0
        for row in rows:
            sf_id, email, values, _, l_email, l_fp, l_out, l_lists = row[:8]
            c_email, c_perm, c_lists, c_fields = row[8:]
            done = self.classify(email, values)
            _, lists, mapped, fp = done
            if (
                settle
                and mapped is not None
                and l_fp is not None
                and fp == l_fp
                and l_email == email
                and not l_out
                and c_email == email
                and c_perm != "unsubscribed"
            ):
                held = c_lists.split(";")
                linked = [x for x in l_lists.split(";") if x]
                wanted = (main_list_id, *lists) if lists else (main_list_id,)
                parts = c_fields.split(SEP)
                if (
                    all(lid in held for lid in linked)
                    and all(lid in held for lid in wanted)
                    and (lists is None or set(linked) <= set(wanted))
                    and all(
                        (parts[i] if i < len(parts) else "") == mapped[key]
                        for i, key in compare
                        if key in mapped
                    )
                ):
                    unchanged += 1
                    continue
            rest.append((sf_id, email, values))
            classified.append(done)
        return Screened(last_id, len(rows), unchanged, rest, classified, os.getpid())


@dataclass
class Screened:
    """One page of the sync phase after :meth:`Classifier.screen`."""

    last_id: str  # the page's upper Id bound: the checkpoint once the page is done
    count: int  # records in the page
    unchanged: int  # of them, found in step and settled
    rows: list[tuple[str, str | None, list[Any]]]  # the others, for the planner
    classified: list[Classified]  # and their classification, in the same order
    pid: int  # the process that screened the page


# The classifier and spool of a screening process (handed over when it starts).
_FORKED: tuple[Classifier, str] | None = None
_FORKED_DB: sqlite3.Connection | None = None


def adopt_classifier(classifier: Classifier, spool_dir: str) -> None:
    global _FORKED, _FORKED_DB
    _FORKED, _FORKED_DB = (classifier, spool_dir), None


def screen_in_child(
    low: str, high: str, main_list_id: str, cc_fields: Sequence[str], settle: bool
) -> Screened:
    global _FORKED_DB
    assert _FORKED is not None
    classifier, spool_dir = _FORKED
    if _FORKED_DB is None:
        _FORKED_DB = open_reader(spool_dir)
    rows = joined_page(_FORKED_DB, low, high)
    return classifier.screen(rows, high, main_list_id, cc_fields, settle)
