"""Admin API views: connections, setups, runs, sync errors and the queue under /admin/api (JSON).

Every route needs ``Authorization: Bearer <ADMIN_TOKEN>``; every payload is validated by the
schemas in ``schemas/admin.py`` (and ``schemas/setup.py``), and every 4xx is problem+json naming
the offending fields. Views parse the request, call one service (``middleware.services``) and
present its result; the services' exceptions become problems in ``routing``.
"""

from __future__ import annotations

from flask import Response, current_app, jsonify

from middleware.services import connect, connections, errors, runs, setups
from middleware.services import queue as jobs
from middleware.services.lookups import get_connection
from middleware.services.shapes import connection_view
from middleware.web import get_redis, get_settings, get_store
from middleware.web.admin.inputs import json_body, load, query_args
from middleware.web.admin.openapi import build_spec
from middleware.web.admin.presenters import dump, started
from middleware.web.admin.routing import bp, endpoint
from middleware.web.webhooks import forget_setup
from schemas import admin as s
from schemas.setup import SetupSchema

# --------------------------------------------------------------------------- views: connections

_PROBLEM = s.ProblemSchema
_E401 = {401: _PROBLEM}
_E404 = {401: _PROBLEM, 404: _PROBLEM}


@endpoint(
    "/connections",
    "GET",
    summary="List connections",
    tag="connections",
    responses={200: s.ConnectionListSchema, **_E401},
)
def list_connections_view() -> Response:
    with get_store().transaction() as session:
        return dump(s.ConnectionListSchema, {"items": connections.list_connections(session)})


@endpoint(
    "/connections/start",
    "POST",
    summary="Start an OAuth connect flow",
    tag="connections",
    body=s.ConnectionStartRequestSchema,
    responses={201: s.ConnectionStartSchema, 400: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM, **_E401},
)
def start_connection_view() -> Response:
    """Returns a signed start link (open it in a browser) and the vendor consent URL."""
    data = load(s.ConnectionStartRequestSchema, json_body())
    flow = connect.start_connection(
        get_settings(),
        get_store(),
        get_redis(),
        data["vendor"],
        data["label"],
        connection_id=data["connection_id"],
        login_host=data.get("login_host"),
    )
    return dump(s.ConnectionStartSchema, flow.public(), 201)


@endpoint(
    "/connections/<int:connection_id>",
    "GET",
    summary="Show a connection",
    tag="connections",
    responses={200: s.ConnectionSchema, **_E404},
)
def get_connection_view(connection_id: int) -> Response:
    with get_store().transaction() as session:
        row = get_connection(session, connection_id)
        view = connection_view(row, connections.setups_using(session, row.id))
        return dump(s.ConnectionSchema, view)


@endpoint(
    "/connections/<int:connection_id>",
    "DELETE",
    summary="Delete an unused connection",
    tag="connections",
    responses={204: None, 409: _PROBLEM, **_E404},
)
def delete_connection_view(connection_id: int) -> Response:
    """Refused with 409 while a setup uses the connection."""
    with get_store().transaction() as session:
        connections.delete_connection(session, connection_id)
    return Response(status=204)


@endpoint(
    "/connections/<int:connection_id>/check",
    "POST",
    summary="Verify a connection's tokens with a cheap vendor call",
    tag="connections",
    responses={200: s.ConnectionCheckSchema, **_E404},
)
def check_connection_view(connection_id: int) -> Response:
    """Calls the vendor through the real client (refreshing if needed) and records the status."""
    result = connections.check_connection(
        get_settings(), get_store(), get_redis(), connection_id, config=current_app.config
    )
    return dump(s.ConnectionCheckSchema, result)


# --------------------------------------------------------------------------- views: setups


def _org_describer() -> setups.OrgReader:
    """Saves check the filter and the selected Campaigns / List Views against the org
    through the app's vendor session."""
    return setups.org_describer(get_settings(), get_store(), get_redis(), current_app.config)


@endpoint(
    "/setups",
    "GET",
    summary="List setups",
    tag="setups",
    responses={200: s.SetupListSchema, **_E401},
)
def list_setups_view() -> Response:
    with get_store().transaction() as session:
        items = setups.list_setups(get_settings(), session)
    return dump(s.SetupListSchema, {"items": items})


@endpoint(
    "/setups",
    "POST",
    summary="Create a setup",
    tag="setups",
    body=SetupSchema,
    responses={201: s.SetupSecretViewSchema, 400: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM, **_E401},
)
def create_setup_view() -> Response:
    """The answer carries the webhook secret: the only time it is shown besides a rotation."""
    data = json_body()
    with get_store().transaction() as session:
        view = setups.create_setup(get_settings(), session, data, org=_org_describer())
    response = dump(s.SetupSecretViewSchema, view, 201)
    response.headers["Location"] = f"{bp.url_prefix}/setups/{view['id']}"
    return response


@endpoint(
    "/setups/<int:setup_id>",
    "GET",
    summary="Show a setup",
    tag="setups",
    responses={200: s.SetupViewSchema, **_E404},
)
def get_setup_view(setup_id: int) -> Response:
    with get_store().transaction() as session:
        view = setups.show_setup(get_settings(), session, setup_id)
    return dump(s.SetupViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>",
    "PATCH",
    summary="Change a setup (JSON merge patch)",
    tag="setups",
    body=SetupSchema(partial=True),
    responses={200: s.SetupViewSchema, 400: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM, **_E404},
)
def patch_setup_view(setup_id: int) -> Response:
    """RFC 7396: send only what changes; `null` resets an option to its default."""
    patch = json_body()
    with get_store().transaction() as session:
        view = setups.update_setup(get_settings(), session, setup_id, patch, org=_org_describer())
    forget_setup(setup_id)
    return dump(s.SetupViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>",
    "DELETE",
    summary="Delete a setup",
    tag="setups",
    responses={204: None, **_E404},
)
def delete_setup_view(setup_id: int) -> Response:
    """Deletes its links, runs, cursors and errors; both vendors are left untouched."""
    with get_store().transaction() as session:
        setups.delete_setup(session, get_redis(), setup_id)
    forget_setup(setup_id)
    return Response(status=204)


@endpoint(
    "/setups/<int:setup_id>/webhook-secret",
    "POST",
    summary="Rotate the webhook secret",
    tag="setups",
    responses={200: s.SetupSecretViewSchema, **_E404},
)
def rotate_secret_view(setup_id: int) -> Response:
    """The old secret stops working at once; the answer shows the new one, once."""
    with get_store().transaction() as session:
        view = setups.rotate_secret(get_settings(), session, setup_id)
    forget_setup(setup_id)
    return dump(s.SetupSecretViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>/pause",
    "POST",
    summary="Pause a setup",
    tag="setups",
    body=s.PauseRequestSchema,
    body_required=False,
    responses={200: s.SetupViewSchema, 400: _PROBLEM, 422: _PROBLEM, **_E404},
)
def pause_setup_view(setup_id: int) -> Response:
    """Changes keep collecting while paused and sync after the setup resumes."""
    data = load(s.PauseRequestSchema, json_body(required=False))
    with get_store().transaction() as session:
        view = setups.pause_setup(get_settings(), session, setup_id, data["reason"], data["until"])
    forget_setup(setup_id)
    return dump(s.SetupViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>/resume",
    "POST",
    summary="Resume a paused setup",
    tag="setups",
    responses={200: s.SetupViewSchema, **_E404},
)
def resume_setup_view(setup_id: int) -> Response:
    """Pending changes are flushed right away; a setup paused by Constant Contact's daily quota
    asks Constant Contact again at once (and pauses again only if it answers `quota_exceeded`)."""
    view = setups.resume_setup(get_settings(), get_store(), get_redis(), setup_id)
    forget_setup(setup_id)
    return dump(s.SetupViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>/status",
    "GET",
    summary="What a setup is doing and what needs attention",
    tag="setups",
    responses={200: s.SetupStatusSchema, **_E404},
)
def setup_status_view(setup_id: int) -> Response:
    with get_store().transaction() as session:
        status = setups.setup_status(session, get_redis(), setup_id)
    return dump(s.SetupStatusSchema, status)


# --------------------------------------------------------------------------- views: runs


@endpoint(
    "/setups/<int:setup_id>/sync",
    "POST",
    summary="Sync Now",
    tag="runs",
    responses={202: s.JobStartedSchema, 409: _PROBLEM, **_E404},
)
def sync_now_view(setup_id: int) -> Response:
    """Pending Salesforce changes and a SystemModstamp catch-up since the last run."""
    with get_store().transaction() as session:
        result = runs.start_sync_now(session, setup_id, get_redis())
    return started(result)


@endpoint(
    "/setups/<int:setup_id>/poll",
    "POST",
    summary="Poll Constant Contact now",
    tag="runs",
    responses={202: s.JobStartedSchema, 409: _PROBLEM, **_E404},
)
def poll_now_view(setup_id: int) -> Response:
    """One Constant Contact poll on its own: CC changes and opt-outs into Salesforce.

    409 while the setup is paused or not connected, or when it syncs nothing to Salesforce
    (`sync_to_sf` and `sync_unsubscribes_to_sf` both off).
    """
    with get_store().transaction() as session:
        result = runs.start_poll(session, setup_id, get_redis())
    return started(result)


@endpoint(
    "/setups/<int:setup_id>/campaign-results",
    "POST",
    summary="Bring campaign results back now",
    tag="runs",
    body=s.CampaignResultsRequestSchema,
    body_required=False,
    responses={202: s.JobStartedSchema, 409: _PROBLEM, 422: _PROBLEM, **_E404},
)
def campaign_results_view(setup_id: int) -> Response:
    """One campaign results run: Constant Contact's sends, opens, clicks, bounces and opt-outs
    into Salesforce Campaigns, members and Tasks, as the setup's `campaign_response_mode` says.

    409 while the setup is paused or not connected, when it brings no results back, or while a
    results run is going.
    """
    data = load(s.CampaignResultsRequestSchema, json_body(required=False))
    with get_store().transaction() as session:
        result = runs.start_campaign_results(session, setup_id, data["reset"], get_redis())
    return started(result)


@endpoint(
    "/setups/<int:setup_id>/full-sync",
    "POST",
    summary="Full Sync",
    tag="runs",
    body=s.FullSyncRequestSchema,
    body_required=False,
    responses={202: s.JobStartedSchema, 409: _PROBLEM, 422: _PROBLEM, 501: _PROBLEM, **_E404},
)
def full_sync_view(setup_id: int) -> Response:
    """Repairs drift on both sides; 409 while one runs (501 where the job is not installed)."""
    data = load(s.FullSyncRequestSchema, json_body(required=False))
    with get_store().transaction() as session:
        result = runs.start_full_sync(
            session, setup_id, data["reset"], get_redis(), partitions=data["partitions"]
        )
    return started(result)


@endpoint(
    "/setups/<int:setup_id>/runs",
    "GET",
    summary="A setup's runs, newest first",
    tag="runs",
    query=s.RunsQuerySchema,
    responses={200: s.RunListSchema, 400: _PROBLEM, **_E404},
)
def list_runs_view(setup_id: int) -> Response:
    args = query_args(s.RunsQuerySchema)
    with get_store().transaction() as session:
        items = runs.list_runs(session, setup_id, args["limit"])
    return dump(s.RunListSchema, {"items": items})


@endpoint(
    "/runs/<int:run_id>",
    "GET",
    summary="Show a run",
    tag="runs",
    responses={200: s.RunSchema, **_E404},
)
def get_run_view(run_id: int) -> Response:
    with get_store().transaction() as session:
        return dump(s.RunSchema, runs.show_run(session, run_id))


# --------------------------------------------------------------------------- views: errors


@endpoint(
    "/setups/<int:setup_id>/errors",
    "GET",
    summary="A setup's sync errors",
    tag="errors",
    query=s.ErrorsQuerySchema,
    responses={200: s.ErrorListSchema, 400: _PROBLEM, **_E404},
)
def list_errors_view(setup_id: int) -> Response:
    args = query_args(s.ErrorsQuerySchema)
    with get_store().transaction() as session:
        result = errors.list_errors(session, setup_id, **args)
    return dump(s.ErrorListSchema, result)


@endpoint(
    "/setups/<int:setup_id>/errors/retry",
    "POST",
    summary="Retry sync errors",
    tag="errors",
    body=s.ErrorSelectionRequestSchema,
    responses={200: s.RetryResultSchema, 400: _PROBLEM, 422: _PROBLEM, **_E404},
)
def retry_errors_view(setup_id: int) -> Response:
    """Marks the records dirty again and schedules a flush; errors show `retrying` meanwhile."""
    selection = load(s.ErrorSelectionRequestSchema, json_body())
    with get_store().transaction() as session:
        result = errors.retry_errors(session, get_redis(), setup_id, selection)
    return dump(s.RetryResultSchema, result)


@endpoint(
    "/setups/<int:setup_id>/errors/resolve",
    "POST",
    summary="Mark sync errors resolved",
    tag="errors",
    body=s.ErrorSelectionRequestSchema,
    responses={200: s.ResolveResultSchema, 400: _PROBLEM, 422: _PROBLEM, **_E404},
)
def resolve_errors_view(setup_id: int) -> Response:
    selection = load(s.ErrorSelectionRequestSchema, json_body())
    with get_store().transaction() as session:
        result = errors.resolve_errors(session, setup_id, selection)
    return dump(s.ResolveResultSchema, result)


# --------------------------------------------------------------------------- views: queue


@endpoint(
    "/queue",
    "GET",
    summary="Queue depths, registries and workers",
    tag="queue",
    responses={200: s.QueueStateSchema, **_E401},
)
def queue_view() -> Response:
    return dump(s.QueueStateSchema, jobs.queue_state(get_redis()))


@endpoint(
    "/queue/failed",
    "GET",
    summary="Failed jobs",
    tag="queue",
    query=s.FailedQuerySchema,
    responses={200: s.FailedJobListSchema, 400: _PROBLEM, **_E401},
)
def failed_jobs_view() -> Response:
    args = query_args(s.FailedQuerySchema)
    return dump(s.FailedJobListSchema, jobs.failed_jobs(get_redis(), args["queue"], args["limit"]))


@endpoint(
    "/queue/failed/requeue",
    "POST",
    summary="Requeue failed jobs",
    tag="queue",
    body=s.RequeueRequestSchema,
    responses={200: s.RequeueResultSchema, 400: _PROBLEM, 422: _PROBLEM, **_E401},
)
def requeue_view() -> Response:
    selection = load(s.RequeueRequestSchema, json_body())
    return dump(s.RequeueResultSchema, jobs.requeue_failed(get_redis(), selection))


# --------------------------------------------------------------------------- views: meta


@endpoint(
    "/openapi.json",
    "GET",
    summary="This API's OpenAPI 3 document",
    tag="meta",
    responses={200: None, **_E401},
)
def openapi_document() -> Response:
    """Generated from the same schemas that validate the requests."""
    return jsonify(build_spec(get_settings().public_url))
