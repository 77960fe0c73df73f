"""Schemas for the admin API: every request it accepts and every response it gives.

Request schemas (``*RequestSchema``, ``*QuerySchema``) refuse unknown keys so a misspelt option is
named in the 4xx instead of being ignored; response schemas only dump. The setup itself is
``schemas.setup.SetupSchema``. The OpenAPI document (``GET /admin/api/openapi.json``) is generated
from these classes, so a field's ``metadata["description"]`` is its documentation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from middleware.queue import QUEUE_NAMES
from middleware.settings import SALESFORCE_LOGIN_HOSTS
from middleware.store.models import (
    CONNECTION_STATUSES,
    DIRECTIONS,
    ERROR_STATUSES,
    RUN_KINDS,
    RUN_STATUSES,
    VENDORS,
)
from schemas.setup import MAX_ID, WEBHOOK_AUTH, SetupSchema, StrictBoolean

ERROR_STATUS_FILTERS = (*ERROR_STATUSES, "all")
# Where a Salesforce connection signs in (``services.connect.login_url_of``).
LOGIN_HOSTS = SALESFORCE_LOGIN_HOSTS
MAX_PAGE = 500


def _d(text: str, **extra: Any) -> dict[str, Any]:
    return {"description": text, **extra}


class _Request(Schema):
    class Meta:
        unknown = RAISE


# --------------------------------------------------------------------------- problems


class ProblemSchema(Schema):
    """An RFC 9457 problem; ``errors`` names each offending field (``field_map[1].cc_field``)."""

    type = fields.String(metadata=_d("Always `about:blank`."))
    title = fields.String(required=True, metadata=_d("Short summary (the HTTP status phrase)."))
    status = fields.Integer(required=True, metadata=_d("HTTP status code."))
    detail = fields.String(metadata=_d("What went wrong and what to do about it."))
    request_id = fields.String(metadata=_d("Quote it when reporting a problem; it is in the logs."))
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata=_d("Messages per offending field, as a path: `field_map[1].cc_field`."),
    )


# --------------------------------------------------------------------------- connections


class ConnectionSchema(Schema):
    """A stored OAuth connection; tokens are never shown."""

    id = fields.Integer(required=True)
    vendor = fields.String(required=True, metadata=_d("Vendor.", enum=list(VENDORS)))
    label = fields.String(metadata=_d("Human label."))
    base_url = fields.String(
        allow_none=True,
        metadata=_d("Salesforce instance URL, or the Constant Contact API base."),
    )
    account_id = fields.String(
        allow_none=True,
        metadata=_d("Salesforce org id (00D...) or Constant Contact account id, when known."),
    )
    status = fields.String(metadata=_d("Health.", enum=list(CONNECTION_STATUSES)))
    expires_at = fields.AwareDateTime(
        allow_none=True, metadata=_d("When the current access token expires.")
    )
    refreshed_at = fields.AwareDateTime(
        allow_none=True, metadata=_d("When tokens were last issued or refreshed.")
    )
    last_error = fields.String(allow_none=True, metadata=_d("Why the connection needs attention."))
    login_url = fields.String(
        allow_none=True,
        metadata=_d("Salesforce: the login host it signed in at (null: SALESFORCE_LOGIN_URL)."),
    )
    scopes = fields.List(fields.String(), metadata=_d("Granted OAuth scopes."))
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    used_by = fields.List(fields.Integer(), metadata=_d("Ids of the setups using it."))


class ConnectionListSchema(Schema):
    items = fields.List(fields.Nested(ConnectionSchema), required=True)


class ConnectionCheckSchema(Schema):
    """The result of a cheap authenticated vendor call made with the stored tokens."""

    ok = fields.Boolean(required=True, metadata=_d("Whether the vendor accepted the tokens."))
    detail = fields.String(required=True, metadata=_d("What was called and what it answered."))
    connection = fields.Nested(ConnectionSchema, required=True)


class ConnectionStartRequestSchema(_Request):
    """Begin an OAuth connect flow for a vendor (or re-authorise an existing connection)."""

    vendor = fields.String(
        required=True,
        validate=validate.OneOf(VENDORS),
        metadata=_d("Which vendor to connect.", enum=list(VENDORS)),
    )
    label = fields.String(
        load_default="",
        validate=validate.Length(max=200),
        metadata=_d("Human label for the new connection."),
    )
    connection_id = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata=_d("Re-authorise this connection (same vendor) instead of adding a new one."),
    )
    login_host = fields.String(  # left out, not null, when there is no choice to make
        validate=validate.OneOf(LOGIN_HOSTS),
        metadata=_d(
            "Salesforce only: sign in at a production org's login host (SALESFORCE_LOGIN_URL, "
            "the default) or a sandbox's (SALESFORCE_SANDBOX_LOGIN_URL). A reconnect without "
            "it signs in where the connection signed in before.",
            enum=list(LOGIN_HOSTS),
        ),
    )


class ConnectionStartSchema(Schema):
    """Where to send the person who grants access; both links work once, for 10 minutes."""

    vendor = fields.String(required=True)
    label = fields.String()
    start_url = fields.String(
        required=True,
        metadata=_d("Signed link to open in a browser; it redirects to the vendor's consent page."),
    )
    authorize_url = fields.String(
        required=True, metadata=_d("The vendor's consent page for this flow (for scripts).")
    )
    redirect_uri = fields.String(
        required=True, metadata=_d("Callback URI to register in the vendor's app settings.")
    )
    expires_at = fields.AwareDateTime(required=True)


# --------------------------------------------------------------------------- setups


class WebhookViewSchema(Schema):
    """How Salesforce reaches this setup."""

    url = fields.String(required=True, metadata=_d("Endpoint a Flow or Apex callout POSTs to."))
    outbound_url = fields.String(
        required=True,
        metadata=_d(
            "Endpoint an Outbound Message action posts to, with `?secret=<webhook secret>` "
            "appended (taken while `salesforce_changes` names `outbound`)."
        ),
    )
    auth = fields.String(required=True, metadata=_d("Auth mode.", enum=list(WEBHOOK_AUTH)))


class SetupViewSchema(Schema):
    """A stored setup: its options, webhook endpoint and pause state (never its secret)."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    options = fields.Nested(SetupSchema, required=True, metadata=_d("The validated setup."))
    salesforce_connection = fields.Integer(allow_none=True)
    constant_contact_connection = fields.Integer(allow_none=True)
    webhook = fields.Nested(WebhookViewSchema, required=True)
    paused = fields.Boolean(required=True)
    pause_reason = fields.String(allow_none=True)
    paused_until = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    warnings = fields.List(
        fields.String(),
        metadata=_d("Options that contradict each other without harm (only on save)."),
    )


class SetupSecretViewSchema(SetupViewSchema):
    """A setup as answered to its creation or a secret rotation: the only time the secret shows."""

    webhook_secret = fields.String(
        required=True,
        metadata=_d("Shown once: store it in Salesforce (Named Credential); rotate to replace."),
    )


class SetupListSchema(Schema):
    items = fields.List(fields.Nested(SetupViewSchema), required=True)


class PauseRequestSchema(_Request):
    reason = fields.String(
        load_default="paused by an admin",
        validate=validate.Length(1, 200),
        metadata=_d("Why; shown in the status and on /readyz."),
    )
    until = fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        metadata=_d("Resume automatically at this time; empty = until resumed."),
    )

    @validates("until")
    def _storable(self, value: datetime | None, **_: Any) -> None:
        if value is None:
            return
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of range once converted to UTC.") from None


class ProgressSchema(Schema):
    done = fields.Integer(required=True)
    total = fields.Integer(allow_none=True)
    percent = fields.Float(allow_none=True, metadata=_d("0–100, when the total is known."))


class RunSchema(Schema):
    """One sync run: what it did, how far it got, what it cost."""

    id = fields.Integer(required=True)
    setup_id = fields.Integer(required=True)
    kind = fields.String(metadata=_d("Kind.", enum=list(RUN_KINDS)))
    status = fields.String(metadata=_d("Status.", enum=list(RUN_STATUSES)))
    phase = fields.String(allow_none=True)
    job_id = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)
    duration_seconds = fields.Float(
        allow_none=True, metadata=_d("Started to finished (or to now while running).")
    )
    counts = fields.Dict(metadata=_d("Created, updated, skipped by reason, ..."))
    api_calls = fields.Dict(metadata=_d("Calls spent per vendor."))
    message = fields.String(allow_none=True)
    progress = fields.Nested(ProgressSchema)


class RunListSchema(Schema):
    items = fields.List(fields.Nested(RunSchema), required=True)


class RunsQuerySchema(_Request):
    limit = fields.Integer(
        load_default=20, validate=validate.Range(1, 200), metadata=_d("How many, newest first.")
    )


class SetupStatusSchema(Schema):
    """What a setup is doing and what needs attention."""

    setup_id = fields.Integer(required=True)
    paused = fields.Boolean(required=True)
    pause_reason = fields.String(allow_none=True)
    paused_until = fields.AwareDateTime(allow_none=True)
    pending = fields.Integer(required=True, metadata=_d("Salesforce records waiting to sync."))
    catch_ups = fields.List(
        fields.String(), metadata=_d("Objects waiting for a SystemModstamp catch-up.")
    )
    active_run = fields.Nested(RunSchema, allow_none=True)
    last_runs = fields.List(fields.Nested(RunSchema))
    open_errors = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata=_d("Unresolved sync errors per code."),
    )
    open_errors_total = fields.Integer()
    links = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata=_d("Linked records per status.")
    )
    connections = fields.Dict(
        keys=fields.String(),
        values=fields.String(allow_none=True),
        metadata=_d("Status of the Salesforce and Constant Contact connections."),
    )


class JobStartedSchema(Schema):
    setup_id = fields.Integer(required=True)
    job_id = fields.String(required=True, metadata=_d("RQ job id; its run carries this job id."))
    queue = fields.String(required=True)
    runs_url = fields.String(metadata=_d("Where the run will show."))


class FullSyncRequestSchema(_Request):
    reset = StrictBoolean(
        load_default=False,
        metadata=_d("Ignore fingerprints and cursors and re-match both sides by email."),
    )
    partitions = fields.Integer(
        load_default=1,
        validate=validate.Range(1, 32),
        metadata=_d("Split the run into this many Id ranges synced by parallel jobs."),
    )


class CampaignResultsRequestSchema(_Request):
    reset = StrictBoolean(
        load_default=False,
        metadata=_d("Make again the Campaigns deleted in Salesforce (their results rewritten)."),
    )


# --------------------------------------------------------------------------- sync errors


class SyncErrorSchema(Schema):
    """A record-level problem; ``email`` is masked."""

    id = fields.Integer(required=True)
    setup_id = fields.Integer()
    run_id = fields.Integer(allow_none=True)
    sf_id = fields.String(allow_none=True)
    cc_contact_id = fields.String(allow_none=True)
    email = fields.String(allow_none=True, metadata=_d("Masked address."))
    direction = fields.String(metadata=_d("Direction.", enum=list(DIRECTIONS)))
    vendor = fields.String(allow_none=True, metadata=_d("Which side refused it."))
    code = fields.String(required=True)
    message = fields.String()
    status = fields.String(metadata=_d("Status.", enum=list(ERROR_STATUSES)))
    attempts = fields.Integer()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class ErrorListSchema(Schema):
    items = fields.List(fields.Nested(SyncErrorSchema), required=True)
    total = fields.Integer(required=True, metadata=_d("Matching errors, all pages."))
    limit = fields.Integer()
    offset = fields.Integer()


class ErrorsQuerySchema(_Request):
    status = fields.String(
        load_default="open",
        validate=validate.OneOf(ERROR_STATUS_FILTERS),
        metadata=_d("Filter by status.", enum=list(ERROR_STATUS_FILTERS)),
    )
    code = fields.String(load_default=None, metadata=_d("Only this error code."))
    direction = fields.String(
        load_default=None,
        validate=validate.OneOf(DIRECTIONS),
        metadata=_d("Only this direction.", enum=list(DIRECTIONS)),
    )
    search = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata=_d(
            "Only errors whose email, Salesforce id, Constant Contact contact id or message "
            "contains this text (case-insensitive)."
        ),
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(1, MAX_PAGE))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, MAX_ID))


class ErrorSelectionRequestSchema(_Request):
    """Either ``ids`` or ``all: true`` (optionally narrowed by ``code``)."""

    ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(1, MAX_ID)),
        validate=validate.Length(1, 10_000),
        metadata=_d("Sync error ids."),
    )
    all = StrictBoolean(metadata=_d("Every unresolved error of the setup."))
    code = fields.String(metadata=_d("With `all`: only errors with this code."))
    direction = fields.String(
        validate=validate.OneOf(DIRECTIONS),
        metadata=_d("With `all`: only errors of this direction.", enum=list(DIRECTIONS)),
    )
    search = fields.String(
        validate=validate.Length(1, 200),
        metadata=_d("With `all`: only errors whose email, ids or message contain this text."),
    )

    @validates_schema
    def _one_selection(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("ids")) == bool(data.get("all")):
            raise ValidationError('Give either "ids": [...] or "all": true.', "_schema")
        for narrowing in ("code", "direction", "search"):
            if data.get(narrowing) and not data.get("all"):
                raise ValidationError(f'"{narrowing}" narrows "all": true only.', narrowing)


class RetryResultSchema(Schema):
    retrying = fields.Integer(required=True, metadata=_d("Errors flagged `retrying`."))
    marked_dirty = fields.Integer(
        required=True, metadata=_d("Salesforce records queued to sync again.")
    )
    awaiting_poll = fields.Integer(
        required=True,
        metadata=_d("Errors with no Salesforce record: retried by the next Constant Contact poll."),
    )
    flush_job_id = fields.String(
        allow_none=True, metadata=_d("The flush job that will sync them (new or already pending).")
    )


class ResolveResultSchema(Schema):
    resolved = fields.Integer(required=True)


# --------------------------------------------------------------------------- queue


class QueueCountsSchema(Schema):
    queued = fields.Integer()
    started = fields.Integer()
    scheduled = fields.Integer()
    deferred = fields.Integer()
    failed = fields.Integer()
    finished = fields.Integer()


class WorkerSchema(Schema):
    name = fields.String()
    state = fields.String()
    queues = fields.List(fields.String())
    current_job = fields.String(allow_none=True)
    successful_jobs = fields.Integer()
    failed_jobs = fields.Integer()


class QueueStateSchema(Schema):
    queues = fields.Dict(keys=fields.String(), values=fields.Nested(QueueCountsSchema))
    backlog = fields.Integer()
    failed = fields.Integer()
    scheduled = fields.Integer()
    started = fields.Integer()
    workers = fields.List(fields.Nested(WorkerSchema))


class FailedJobSchema(Schema):
    id = fields.String(required=True)
    queue = fields.String(required=True)
    func = fields.String(allow_none=True)
    args = fields.List(fields.Raw())
    description = fields.String(allow_none=True)
    enqueued_at = fields.AwareDateTime(allow_none=True)
    ended_at = fields.AwareDateTime(allow_none=True)
    exc_type = fields.String(allow_none=True, metadata=_d("Exception class."))
    exc_message = fields.String(allow_none=True, metadata=_d("Last line of the traceback."))


class FailedJobListSchema(Schema):
    items = fields.List(fields.Nested(FailedJobSchema), required=True)
    total = fields.Integer(required=True)


class FailedQuerySchema(_Request):
    queue = fields.String(
        load_default=None,
        validate=validate.OneOf(QUEUE_NAMES),
        metadata=_d("Only this queue.", enum=list(QUEUE_NAMES)),
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(1, MAX_PAGE))


class RequeueRequestSchema(_Request):
    """Either ``ids`` or ``all: true``."""

    ids = fields.List(
        fields.String(validate=validate.Length(1, 200)),
        validate=validate.Length(1, 1_000),
        metadata=_d("Failed job ids (at most 1,000; `all` requeues every one)."),
    )
    all = StrictBoolean(metadata=_d("Every failed job of every queue."))

    @validates_schema
    def _one_selection(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("ids")) == bool(data.get("all")):
            raise ValidationError('Give either "ids": [...] or "all": true.', "_schema")


class RequeueResultSchema(Schema):
    requeued = fields.List(fields.String(), required=True)
    missing = fields.List(
        fields.String(), required=True, metadata=_d("Ids not in any failed registry.")
    )


# --------------------------------------------------------------------------- OAuth connect


class ConnectionCreatedSchema(Schema):
    """The JSON answer of an OAuth callback (``Accept: application/json``)."""

    connection = fields.Nested(ConnectionSchema, required=True)
    reused = fields.Boolean(
        metadata=_d(
            "True when the signed-in org/account already had a connection: it got the new "
            "tokens (no second connection)."
        )
    )


class StartQuerySchema(_Request):
    flow = fields.String(
        required=True,
        validate=validate.Length(min=1),
        metadata=_d("The signed flow token from `POST /connections/start`."),
    )


class CallbackQuerySchema(Schema):
    code = fields.String(metadata=_d("Authorization code (on success)."))
    state = fields.String(metadata=_d("The flow's state, echoed by the vendor."))
    error = fields.String(metadata=_d("Set by the vendor when access was not granted."))
    error_description = fields.String()
