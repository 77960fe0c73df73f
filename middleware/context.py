"""The sync context both directions and the Full Sync share: one setup's options, store and clients.

Built once per job by :func:`middleware.runner.build_context`; neither direction imports the other,
both import this. The main list is the one piece of Constant Contact state both need (the
SF → CC direction adds to it, the CC → SF direction reads from it), so its cached id lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from middleware.constantcontact.client import ConstantContactClient
from middleware.salesforce.client import SalesforceClient
from middleware.store import cursors
from middleware.store.db import Store
from middleware.sync.campaigns import ViewQuery
from middleware.sync.options import SetupOptions

CURSOR_MAIN_LIST = "cc_main_list"


@dataclass
class Context:
    """Everything one setup's sync needs, built once per job."""

    setup_id: int
    options: SetupOptions
    store: Store
    sf: SalesforceClient
    cc: ConstantContactClient
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    run_id: int | None = None
    main_list_id: str = ""
    custom_field_ids: dict[str, str] = field(default_factory=dict)
    # Segmentation lists (:mod:`middleware.sf_to_cc.segments`): maintained Campaign id → list id,
    # the lists of Campaigns no longer maintained, checkbox list name → list id.
    campaign_list_ids: dict[str, str] = field(default_factory=dict)
    frozen_list_ids: frozenset[str] = frozenset()
    checkbox_list_ids: dict[str, str] = field(default_factory=dict)
    # With List View lists: each maintained view's query, and the views that cannot be read now.
    list_views: dict[str, ViewQuery] = field(default_factory=dict)
    held_views: tuple[str, ...] = ()
    segments_prepared: bool = False

    @property
    def sf_object(self) -> str:
        return self.options.object_type


def main_list_id(ctx: Context) -> str:
    """The main list's id (created when missing), cached by name; also set on ``ctx``."""
    main = ctx.options.main_list
    with ctx.store.transaction() as session:
        cached = cursors.get_cursor(session, ctx.setup_id, CURSOR_MAIN_LIST)
    name, _, list_id = (cached or "").rpartition("|")
    if name != main or not list_id:
        list_id = str(ctx.cc.get_or_create_list(main)["list_id"])
        with ctx.store.transaction() as session:
            cursors.set_cursor(session, ctx.setup_id, CURSOR_MAIN_LIST, f"{main}|{list_id}")
    ctx.main_list_id = list_id
    return list_id
