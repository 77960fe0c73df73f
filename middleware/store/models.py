"""Store models: the tables that outlive a request or a job (connections, setups, links, runs...).

Typed SQLAlchemy 2 declarative models that run unchanged on PostgreSQL (psycopg 3) and SQLite.
Secrets (OAuth tokens, webhook secrets) live only in ``*_encrypted`` columns as Fernet tokens;
read and write them through ``middleware.store.crypto`` helpers, never by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names keep Alembic diffs and SQLite batch migrations stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

VENDORS = ("salesforce", "constantcontact")
CONNECTION_STATUSES = ("active", "needs_reauth", "error", "cancelled")
LINK_STATUSES = ("active", "retired")
RUN_KINDS = ("incremental", "full", "poll", "sync_now", "results")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "paused")
ERROR_STATUSES = ("open", "retrying", "resolved")
DIRECTIONS = ("sf_to_cc", "cc_to_sf")
RESULT_STATES = ("active", "unsupported", "gone", "closed")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind of datetime the store holds)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite as on PostgreSQL.

    SQLite drops the offset; PostgreSQL keeps it. Normalising here means code can compare
    ``expires_at < now`` without caring which database it runs on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Connection(TimestampMixin, Base):
    """One OAuth connection to a Salesforce org or a Constant Contact account."""

    __tablename__ = "connections"
    __table_args__ = (
        CheckConstraint(_in("vendor", VENDORS), name="vendor"),
        CheckConstraint(_in("status", CONNECTION_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(200), default="")
    # Salesforce instance_url, or the Constant Contact API base the tokens are valid for.
    base_url: Mapped[str | None] = mapped_column(String(500))
    # Salesforce org id (00D...) or Constant Contact encoded account id.
    account_id: Mapped[str | None] = mapped_column(String(100), index=True)
    # Salesforce: the login host the connection signed in at (production or sandbox), where its
    # refresh token is honoured; None = the configured SALESFORCE_LOGIN_URL.
    login_url: Mapped[str | None] = mapped_column(String(500))
    access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column()
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="active")
    last_error: Mapped[str | None] = mapped_column(Text)
    refreshed_at: Mapped[datetime | None] = mapped_column()
    # Bumped on every token save; a refresh that read an older version loses (see save_tokens).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.vendor} {self.label!r} {self.status}>"


class Setup(TimestampMixin, Base):
    """A setup: one SF connection, one CC connection, one object type, and its options (§5)."""

    __tablename__ = "setups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The validated setup dict (schemas/setup.py); the store does not interpret it.
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    salesforce_connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="SET NULL"), index=True
    )
    constant_contact_connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="SET NULL"), index=True
    )
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    # Paused when pause_reason is set: until paused_until (quota_exceeded → next 00:00 UTC),
    # or indefinitely when paused_until is empty (account cancelled, paused by a user).
    paused_until: Mapped[datetime | None] = mapped_column()
    pause_reason: Mapped[str | None] = mapped_column(String(200))

    def is_paused(self, now: datetime) -> bool:
        """Whether jobs of this setup must wait at ``now``."""
        if not self.pause_reason:
            return False
        return self.paused_until is None or self.paused_until > now

    def __repr__(self) -> str:
        return f"<Setup {self.id} {self.name!r}>"


class Link(TimestampMixin, Base):
    """What one setup knows about one synced record: SF id ⇄ CC contact, and its last fingerprint.

    Retired links are kept on purpose: an address left behind by an email change, a removed or
    converted record must never look like a new subscriber to the CC → SF direction (§5a).
    """

    __tablename__ = "links"
    __table_args__ = (
        CheckConstraint(_in("status", LINK_STATUSES), name="status"),
        # One *active* link per Salesforce record and setup; retired ones may repeat.
        Index(
            "uq_links_active_sf_id",
            "setup_id",
            "sf_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_links_setup_email", "setup_id", "email"),
        Index("ix_links_setup_cc_contact", "setup_id", "cc_contact_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    setup_id: Mapped[int] = mapped_column(ForeignKey("setups.id", ondelete="CASCADE"))
    sf_object: Mapped[str] = mapped_column(String(40))
    sf_id: Mapped[str] = mapped_column(String(18))
    cc_contact_id: Mapped[str | None] = mapped_column(String(64))
    # Normalised (trimmed, lower-cased): the CC identity.
    email: Mapped[str | None] = mapped_column(String(320))
    fingerprint: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(10), default="active")
    subscribed_when_synced: Mapped[bool] = mapped_column(Boolean, default=True)
    opted_out_propagated: Mapped[bool] = mapped_column(Boolean, default=False)
    # CC list ids this setup added the contact to (so removals touch only our own lists).
    lists: Mapped[list[Any]] = mapped_column(default=list)
    # Off this setup's lists because the record was deleted in Salesforce (remove_on_sf_delete),
    # so an undelete puts it back.
    removed_on_delete: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # The record's CreatedDate: the oldest record of a setup owns a shared email (§5a).
    sf_created: Mapped[str | None] = mapped_column(String(40))

    def __repr__(self) -> str:
        return f"<Link {self.id} {self.sf_id}⇄{self.cc_contact_id} {self.status}>"


class Cursor(Base):
    """A named high-water mark of one setup (last SystemModstamp, last CC poll, replay id...)."""

    __tablename__ = "cursors"

    setup_id: Mapped[int] = mapped_column(
        ForeignKey("setups.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Run(Base):
    """One sync run of a setup: what it did, how far it got, what it cost in API calls."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("kind", RUN_KINDS), name="kind"),
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index("ix_runs_setup_created", "setup_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    setup_id: Mapped[int] = mapped_column(ForeignKey("setups.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    phase: Mapped[str | None] = mapped_column(String(100))
    job_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # {"created": 3, "updated": 10, "skipped": {"no email": 2, "role address": 1}, ...}
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"salesforce": 4, "constantcontact": 7}
    api_calls: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"<Run {self.id} setup={self.setup_id} {self.kind} {self.status}>"


class SyncError(Base):
    """A record-level problem a user can see, fix and retry; never a failed job for the batch."""

    __tablename__ = "sync_errors"
    __table_args__ = (
        CheckConstraint(_in("status", ERROR_STATUSES), name="status"),
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        Index("ix_sync_errors_setup_status", "setup_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    setup_id: Mapped[int] = mapped_column(ForeignKey("setups.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    sf_id: Mapped[str | None] = mapped_column(String(18))
    cc_contact_id: Mapped[str | None] = mapped_column(String(64))
    # Masked for display (a•••@example.com); the payload keeps what a retry needs.
    email: Mapped[str | None] = mapped_column(String(320))
    direction: Mapped[str] = mapped_column(String(10))
    vendor: Mapped[str | None] = mapped_column(String(20))
    code: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(10), default="open")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<SyncError {self.id} setup={self.setup_id} {self.code} {self.status}>"


class ResultActivity(TimestampMixin, Base):
    """One Constant Contact campaign activity whose results a setup brings back (issue 12).

    ``cursors`` holds each tracking report's read position (see ``middleware.results.read``);
    ``state`` is ``active`` (read while inside the window), ``unsupported`` (A/B tests and the
    like, reported once), ``gone`` (its Salesforce Campaign was deleted: left alone until a
    reset) or ``closed`` (sent before the window).
    """

    __tablename__ = "result_activities"
    __table_args__ = (
        CheckConstraint(_in("state", RESULT_STATES), name="state"),
        Index("uq_result_activities_setup_activity", "setup_id", "activity_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    setup_id: Mapped[int] = mapped_column(ForeignKey("setups.id", ondelete="CASCADE"))
    activity_id: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column()
    state: Mapped[str] = mapped_column(String(12), default="active")
    note: Mapped[str | None] = mapped_column(Text)
    sf_campaign_id: Mapped[str | None] = mapped_column(String(18))
    statuses_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    html_attached: Mapped[bool] = mapped_column(Boolean, default=False)
    # The campaign's updated_at when its activities were last read (a resend changes it).
    campaign_updated: Mapped[str | None] = mapped_column(String(40))
    cursors: Mapped[dict[str, Any]] = mapped_column(default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def __repr__(self) -> str:
        return f"<ResultActivity {self.id} setup={self.setup_id} {self.name!r} {self.state}>"


class ResultRecipient(Base):
    """One recipient of one activity as Salesforce shows it: the idempotency keys (issue 12).

    ``status`` only goes up (Sent < Bounced < Opened < Clicked < Unsubscribed); ``sf_member_id``
    is the CampaignMember, ``open_task_id`` / ``click_tasks`` (url_id → Task id) the Tasks made,
    so a second run over the same reports writes nothing new.
    """

    __tablename__ = "result_recipients"
    __table_args__ = (
        Index("uq_result_recipients_activity_contact", "activity_id", "cc_contact_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("result_activities.id", ondelete="CASCADE"))
    cc_contact_id: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(320), default="")
    sf_person_id: Mapped[str | None] = mapped_column(String(18))
    sf_member_id: Mapped[str | None] = mapped_column(String(18))
    status: Mapped[str | None] = mapped_column(String(20))
    open_task_id: Mapped[str | None] = mapped_column(String(18))
    click_tasks: Mapped[dict[str, Any]] = mapped_column(default=dict)
