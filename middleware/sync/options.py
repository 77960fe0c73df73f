"""A setup's options, typed: what the rules and the jobs read, built once from a validated setup.

``schemas.setup`` owns the contract and every default: :meth:`SetupOptions.from_validated` takes
its load output (every option present) and reads it without a single default of its own, so a
default changes in one place. ``schemas.setup.setup_options`` validates and builds in one call;
jobs call it where they load a setup from the store. The admin API keeps storing and returning the
plain dict; this type is only how the code reads it.

Derived properties answer the questions several modules used to work out from the raw dict:
which ``field_map`` entries flow which way, which CC custom fields a setup writes or reads, and
which CC lists are its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from middleware.sync.fields import CUSTOM_PREFIX

SF_TO_CC_DIRECTIONS = frozenset({"sf_to_cc", "both"})
CC_TO_SF_DIRECTIONS = frozenset({"cc_to_sf", "both"})

ObjectType = Literal["Contact", "Lead", "Account"]
NewRecordType = Literal["Lead", "Contact"]


def _custom_names(cc_fields: list[str]) -> tuple[str, ...]:
    """The CC custom field names (without ``cf:``) among ``cc_fields``, sorted, no repeats."""
    return tuple(
        sorted({f[len(CUSTOM_PREFIX) :] for f in cc_fields if f.startswith(CUSTOM_PREFIX)})
    )


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """One ``field_map`` entry: a Salesforce field, a CC field, and which way values flow."""

    sf_field: str
    cc_field: str
    direction: str

    @property
    def to_cc(self) -> bool:
        return self.direction in SF_TO_CC_DIRECTIONS

    @property
    def to_sf(self) -> bool:
        return self.direction in CC_TO_SF_DIRECTIONS


@dataclass(frozen=True, slots=True)
class OtherEmailField:
    """An extra Salesforce email field kept in a CC custom text field (always SF → CC)."""

    sf_field: str
    cc_field: str


@dataclass(frozen=True, slots=True)
class CheckboxList:
    """A Salesforce checkbox field that drives membership of a CC list."""

    field: str
    list: str


@dataclass(frozen=True, slots=True)
class CampaignLists:
    """One CC list per Salesforce Campaign (or List View) of the setup's choosing (seed guide)."""

    source: str  # "campaigns" | "list_views"
    selected: tuple[str, ...]  # names; empty = every active one with members
    record_type_labels: tuple[str, ...]  # campaigns only; empty = any record type
    excluded: tuple[str, ...]  # names never synced; wins over `selected`

    @property
    def from_campaigns(self) -> bool:
        return self.source == "campaigns"


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``filter`` condition over a Salesforce field."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Group:
    """A bracketed group of criteria inside a ``filter``: ``all`` or ``any`` of them hold."""

    match: str
    conditions: tuple[Condition | Group, ...]


# A filter criterion: one condition, or a group of criteria (``(A AND B) OR C``).
Criterion = Condition | Group


@dataclass(frozen=True, slots=True)
class Filter:
    """Segmentation criteria: ``match`` is ``all`` or ``any`` of the criteria (conditions or
    groups of them, nested as the schema allows)."""

    match: str
    conditions: tuple[Criterion, ...]


def _criterion(item: Mapping[str, Any]) -> Criterion:
    if "conditions" in item:
        return Group(item["match"], tuple(_criterion(c) for c in item["conditions"]))
    return Condition(item["field"], item["op"], item["value"])


def _leaves(criteria: tuple[Criterion, ...]) -> tuple[Condition, ...]:
    out: list[Condition] = []
    for c in criteria:
        out.extend(_leaves(c.conditions) if isinstance(c, Group) else (c,))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Full Sync schedule and the polling / catch-up intervals."""

    full_sync: str
    at: str
    timezone: str
    weekday: str | None
    poll_minutes: int
    catch_up_minutes: int


@dataclass(frozen=True, slots=True)
class CampaignResults:
    """How campaign results are read: the window of sends re-read, a run's Constant Contact call
    ceiling, and the hours between scheduled runs."""

    window_days: int = 90
    max_cc_calls: int = 1_000
    every_hours: int = 24


@dataclass(frozen=True, slots=True)
class PlatformEvent:
    """The Platform Event a Flow or Apex publishes instead of CDC."""

    name: str
    id_field: str


@dataclass(frozen=True, slots=True)
class Webhook:
    """How the setup's Salesforce webhook authenticates."""

    auth: str
    platform_event: PlatformEvent | None


@dataclass(frozen=True, slots=True)
class SetupOptions:
    """Every option of a setup (DESIGN §5), with the schema's defaults already applied."""

    name: str
    object_type: ObjectType
    salesforce_connection: int | None
    constant_contact_connection: int | None
    main_list: str
    field_map: tuple[FieldMapping, ...]
    filter: Filter | None
    schedule: Schedule
    sync_to_cc: bool
    sync_to_sf: bool
    campaign_lists: CampaignLists | None
    checkbox_lists: tuple[CheckboxList, ...]
    new_cc_contact_on_email_change: bool
    unsubscribe_on_sf_opt_out: bool
    remove_on_sf_delete: bool
    remove_converted_leads: bool
    delete_cc_on_blank_email: bool
    other_email_fields: tuple[OtherEmailField, ...]
    namespace_prefix: str | None
    sync_role_addresses: bool
    sync_address: bool
    sync_company: bool
    state_names: bool
    cc_source: str | tuple[str, ...]
    new_record_object_type: NewRecordType
    match_same_type_only: bool
    create_missing_accounts: bool
    allow_blank_first_name: bool
    allow_blank_last_name: bool
    npsp_alternate_emails: bool
    npsp_affiliations: bool
    sync_unsubscribes_to_sf: bool
    sync_all_campaign_recipients: bool
    campaign_response_mode: str
    campaign_selection: str | tuple[str, ...]
    campaign_results: CampaignResults
    remove_unmatched_from_all_lists: bool
    webhook: Webhook
    salesforce_changes: tuple[str, ...] = ("webhook",)

    @classmethod
    def from_validated(cls, setup: Mapping[str, Any]) -> SetupOptions:
        """The options of a setup as ``schemas.setup`` loads it (every option present).

        A missing option is a ``KeyError`` on purpose: defaults belong to the schema, so a
        dict that did not go through it is refused rather than completed here.
        """
        flt = setup["filter"]
        sched = setup["schedule"]
        hook = setup["webhook"]
        event = hook["platform_event"]
        source = setup["cc_source"]
        selection = setup["campaign_selection"]
        return cls(
            name=setup["name"],
            object_type=setup["object_type"],
            salesforce_connection=setup["salesforce_connection"],
            constant_contact_connection=setup["constant_contact_connection"],
            main_list=setup["main_list"],
            field_map=tuple(
                FieldMapping(e["sf_field"], e["cc_field"], e["direction"])
                for e in setup["field_map"]
            ),
            filter=None
            if flt is None
            else Filter(flt["match"], tuple(_criterion(c) for c in flt["conditions"])),
            schedule=Schedule(
                full_sync=sched["full_sync"],
                at=sched["at"],
                timezone=sched["timezone"],
                # The schema's default schedule leaves out ``weekday`` (its JSON shape is part of
                # the admin API); absent means none, as ScheduleSchema's own default says.
                weekday=sched.get("weekday"),
                poll_minutes=sched["poll_minutes"],
                catch_up_minutes=sched["catch_up_minutes"],
            ),
            sync_to_cc=setup["sync_to_cc"],
            sync_to_sf=setup["sync_to_sf"],
            campaign_lists=None
            if setup["campaign_lists"] is None
            else CampaignLists(
                source=setup["campaign_lists"]["source"],
                selected=tuple(setup["campaign_lists"]["selected"]),
                record_type_labels=tuple(setup["campaign_lists"]["record_type_labels"]),
                excluded=tuple(setup["campaign_lists"]["excluded"]),
            ),
            checkbox_lists=tuple(
                CheckboxList(e["field"], e["list"]) for e in setup["checkbox_lists"]
            ),
            new_cc_contact_on_email_change=setup["new_cc_contact_on_email_change"],
            unsubscribe_on_sf_opt_out=setup["unsubscribe_on_sf_opt_out"],
            remove_on_sf_delete=setup["remove_on_sf_delete"],
            remove_converted_leads=setup["remove_converted_leads"],
            delete_cc_on_blank_email=setup["delete_cc_on_blank_email"],
            other_email_fields=tuple(
                OtherEmailField(e["sf_field"], e["cc_field"]) for e in setup["other_email_fields"]
            ),
            namespace_prefix=setup["namespace_prefix"],
            sync_role_addresses=setup["sync_role_addresses"],
            sync_address=setup["sync_address"],
            sync_company=setup["sync_company"],
            state_names=setup["state_names"],
            cc_source=source if isinstance(source, str) else tuple(source["lists"]),
            new_record_object_type=setup["new_record_object_type"],
            match_same_type_only=setup["match_same_type_only"],
            create_missing_accounts=setup["create_missing_accounts"],
            allow_blank_first_name=setup["allow_blank_first_name"],
            allow_blank_last_name=setup["allow_blank_last_name"],
            npsp_alternate_emails=setup["npsp_alternate_emails"],
            npsp_affiliations=setup["npsp_affiliations"],
            sync_unsubscribes_to_sf=setup["sync_unsubscribes_to_sf"],
            sync_all_campaign_recipients=setup["sync_all_campaign_recipients"],
            campaign_response_mode=setup["campaign_response_mode"],
            campaign_selection=selection if isinstance(selection, str) else tuple(selection),
            campaign_results=CampaignResults(**setup["campaign_results"]),
            remove_unmatched_from_all_lists=setup["remove_unmatched_from_all_lists"],
            salesforce_changes=tuple(setup["salesforce_changes"]),
            webhook=Webhook(
                auth=hook["auth"],
                platform_event=None
                if event is None
                else PlatformEvent(event["name"], event["id_field"]),
            ),
        )

    # --- the field map's parts ------------------------------------------------------------

    @property
    def fields_to_cc(self) -> tuple[FieldMapping, ...]:
        """``field_map`` entries whose values Salesforce writes into Constant Contact."""
        return tuple(e for e in self.field_map if e.to_cc)

    @property
    def fields_to_sf(self) -> tuple[FieldMapping, ...]:
        """``field_map`` entries whose values Constant Contact writes into Salesforce."""
        return tuple(e for e in self.field_map if e.to_sf)

    @property
    def custom_fields_to_cc(self) -> tuple[str, ...]:
        """CC custom field names (no ``cf:``) the SF → CC direction writes, sorted."""
        written = [e.cc_field for e in self.fields_to_cc]
        written += [e.cc_field for e in self.other_email_fields]
        return _custom_names(written)

    @property
    def custom_fields_from_cc(self) -> tuple[str, ...]:
        """CC custom field names (no ``cf:``) the CC → SF direction reads, sorted."""
        return _custom_names([e.cc_field for e in self.fields_to_sf])

    # --- other derived answers ------------------------------------------------------------

    @property
    def filter_conditions(self) -> tuple[Condition, ...]:
        """Every condition of the filter, groups walked (depth first, in order)."""
        return _leaves(self.filter.conditions) if self.filter is not None else ()

    @property
    def source_lists(self) -> tuple[str, ...] | None:
        """The named CC lists of ``cc_source: {"lists": [...]}``; ``None`` for the other modes."""
        return self.cc_source if isinstance(self.cc_source, tuple) else None

    @property
    def polls(self) -> bool:
        """Whether the CC → SF poll has anything to do (records to create or opt-outs to carry)."""
        return self.sync_to_sf or self.sync_unsubscribes_to_sf
