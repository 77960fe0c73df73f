"""App factory: builds the Flask app, its store, Redis and queue handles, blueprints and CLI.

Nothing connects at import: gunicorn runs ``app:create_app()``, the CLI ``flask --app app ...``.
``create_app(config)`` takes a dict for tests and tools: keys named like environment variables
(``DATABASE_URL``, ``REDIS_URL``...) build the ``Settings`` *instead of* the process environment
(so tests are hermetic); ``SETTINGS`` may carry a ready ``Settings``; ``STORE`` and ``REDIS`` may
carry ready handles; every other key goes to ``app.config`` (``TESTING``, ``AUTO_MIGRATE``...).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import click
from flask import Flask, Request, Response, g, has_request_context, request
from flask.cli import AppGroup
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError, StatementError
from werkzeug.exceptions import HTTPException

from middleware import embedded_worker, queue
from middleware.extension import EXTENSION, handles
from middleware.listener import embedded as embedded_listener
from middleware.logging import configure_logging, request_id_var
from middleware.settings import ConfigError, Settings, env_names
from middleware.store import connections, migrate
from middleware.store.db import Store
from middleware.web import BadInput, problem, request_id_for
from middleware.web.webhook_fast_path import WebhookFastPath

log = logging.getLogger("app")

# Blueprints by module; each module exposes ``bp`` (or ``blueprint``). Adding one is one line.
BLUEPRINT_MODULES = (
    "middleware.web.health",
    "middleware.web.webhooks",
    "middleware.web.outbound",
    "middleware.web.cc_webhooks",
    "middleware.web.admin",
    "middleware.web.oauth",
    "middleware.web.dashboard",
)
# CLI groups (and single commands) by "module:attribute", registered when importable.
CLI_GROUPS = (
    "sandbox.cli:sandbox_cli",
    "middleware.cli:setups_cli",
    "middleware.cli:connections_cli",
    "middleware.cli:sync_cli",
    "middleware.cli:listen_command",
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; ``config`` (tests, tools) overrides the environment, see module docstring."""
    overrides = dict(config or {})
    try:
        settings = _settings(overrides)
    except ConfigError as exc:
        if config is None and os.environ.get("FLASK_RUN_FROM_CLI") == "true":
            # `flask --app app sandbox serve` must work before any secret is set: the sandbox
            # commands need no settings; every other command says what is missing.
            return _unconfigured_cli_app(exc)
        raise
    configure_logging(settings.log_level)

    app = Flask(__name__, instance_relative_config=True)
    app.session_interface = CookieSessions()
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.webhook_max_bytes,
        # A demo on SQLite migrates itself; production runs the release phase instead.
        AUTO_MIGRATE=settings.database_url.startswith("sqlite"),
    )
    app.config.update(
        {
            k: v
            for k, v in overrides.items()
            if k not in ("SETTINGS", "STORE", "REDIS") and k not in _ENV_NAMES
        }
    )

    store = overrides.get("STORE") or Store(settings.database_url, settings.token_encryption_keys)
    if app.config["AUTO_MIGRATE"]:
        store.upgrade()
    app.extensions[EXTENSION] = {"settings": settings, "store": store}
    _init_queue(app, settings, overrides.get("REDIS"))

    _install_request_ids(app)
    _install_error_handlers(app)
    register_blueprints(app)
    register_cli(app)
    # The Salesforce webhook's hot path skips Flask's request machinery (see its module).
    app.wsgi_app = WebhookFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
    return app


_ENV_NAMES = frozenset(env_names())


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signing serializer (keys, salt, HMAC
    set-up) for a request that sends no session cookie — every webhook and API call, since no
    route keeps a session; that cost a webhook more than its dedupe check."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure whenever the browser reached us over https (directly or as ``PUBLIC_URL``
        says), so a dashboard session cookie never travels in clear."""
        if super().get_cookie_secure(app):
            return True
        settings = app.extensions.get(EXTENSION, {}).get("settings")
        public_https = bool(settings) and settings.public_url.startswith("https://")
        return public_https or (has_request_context() and request.is_secure)


def _settings(overrides: dict[str, Any]) -> Settings:
    ready = overrides.get("SETTINGS")
    if isinstance(ready, Settings):
        return ready
    if not overrides:
        return Settings.from_env()
    environ = {k: _env_value(v) for k, v in overrides.items() if k in _ENV_NAMES}
    return Settings.from_env(environ)


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def _init_queue(app: Flask, settings: Settings, redis_client: Any) -> None:
    redis = redis_client if redis_client is not None else queue.get_redis(settings)
    ext = handles(app)
    runtime = queue.Runtime(settings=settings, store=ext["store"], redis=redis)
    ext["redis"] = redis
    ext["runtime"] = runtime
    ext["queues"] = queue.get_queues(redis)
    ext["worker"] = None
    if settings.embedded_worker:
        ext["worker"] = embedded_worker.start_embedded_worker(redis, runtime=runtime)
    ext["listener"] = None
    if settings.embedded and settings.embedded_listener:
        # No `listen` process can reach an in-process Redis: this process runs the listener.
        ext["listener"] = embedded_listener.start_embedded_listener(settings, ext["store"], redis)

    # Views that enqueue (queue.enqueue / ensure_scheduled) find this app's Redis through it.
    @app.before_request
    def _use_runtime() -> None:
        g.runtime_token = queue.set_runtime(runtime)

    @app.teardown_request
    def _drop_runtime(_exc: BaseException | None) -> None:
        token = g.pop("runtime_token", None)
        if token is not None:
            queue.reset_runtime(token)


def stop_background(app: Flask) -> None:
    """Stop the app's embedded threads: the listener first (its last events still reach the
    intake), then the worker. For whoever owns the process: the demo, tests, gunicorn's exit."""
    ext = handles(app)
    for name in ("listener", "worker"):
        thread = ext.get(name)
        if thread is not None:
            thread.stop()


def _install_request_ids(app: Flask) -> None:
    @app.before_request
    def _take_request_id() -> None:
        rid = request_id_for(request.headers.get("X-Request-ID", ""))
        g.request_id = rid
        g.request_id_token = request_id_var.set(rid)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        rid = g.get("request_id")
        if rid:
            response.headers["X-Request-ID"] = rid
        return response

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = problem(exc.code or 500, exc.name, exc.description)
        if exc.code == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(BadInput)
    def _bad_input(exc: BadInput) -> Response:
        return problem(exc.status, exc.title, exc.detail)

    @app.errorhandler(OverflowError)
    def _overflow(exc: OverflowError) -> Response:
        # A number or date beyond what Python, the database or a vendor can hold came in.
        log.info("refused out-of-range input on %s %s: %s", request.method, request.path, exc)
        detail = f"A number or date in the request is out of range: {exc}"
        return problem(400, "Bad Request", detail)

    @app.errorhandler(StatementError)
    def _statement_error(exc: StatementError) -> Response:
        # Values the database cannot take (PostgreSQL INTEGER overflow, a date out of range) are
        # the caller's; an unreachable database is an outage; anything else is our bug.
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return _unavailable("The database is unreachable")
        if isinstance(exc.orig, OverflowError) or isinstance(exc, DataError):
            log.info("database refused a value on %s %s: %s", request.method, request.path, exc)
            detail = "A value in the request is out of range for the database."
            return problem(400, "Bad Request", detail)
        if isinstance(exc, OperationalError):
            log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
            return _unavailable("The database is unavailable")
        return _unexpected(exc)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _redis_down(exc: Exception) -> Response:
        log.warning("Redis unavailable on %s %s: %s", request.method, request.path, exc)
        return _unavailable("Redis is unavailable")

    def _unavailable(what: str) -> Response:
        response = problem(503, "Service Unavailable", f"{what}; try again shortly.")
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error", "The error was logged with this request id.")


def _import_optional(module_name: str) -> Any | None:
    # Guard only for modules not written yet (other engineers are building webhooks, admin,
    # oauth and the sandbox CLI now); an import error *inside* an existing module still raises.
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            log.debug("optional module %s is not present", module_name)
            return None
        raise


def register_blueprints(app: Flask) -> list[str]:
    """Register every blueprint module that exists; return the names registered."""
    registered = []
    for module_name in BLUEPRINT_MODULES:
        module = _import_optional(module_name)
        if module is None:
            continue
        bp = getattr(module, "bp", None) or getattr(module, "blueprint", None)
        if bp is None:
            raise RuntimeError(f"{module_name} defines no `bp` blueprint")
        app.register_blueprint(bp)
        registered.append(bp.name)
    return registered


def _unconfigured_cli_app(problem: ConfigError) -> Flask:
    """A CLI-only app for an unconfigured environment: sandbox commands work, others explain."""
    app = Flask(__name__)
    for group in [db_cli, *_cli_groups()]:
        if group.name == "sandbox":
            app.cli.add_command(group)
            continue

        @click.command(
            group.name,
            help=group.help,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )
        @click.argument("args", nargs=-1, type=click.UNPROCESSED)
        def unconfigured(args: tuple[str, ...]) -> None:
            raise click.ClickException(str(problem))

        app.cli.add_command(unconfigured)
    return app


def _cli_groups() -> list[click.Command]:
    groups = []
    for target in CLI_GROUPS:
        module_name, _, attr = target.partition(":")
        module = _import_optional(module_name)
        if module is not None:
            groups.append(getattr(module, attr))
    return groups


def register_cli(app: Flask) -> None:
    """Add the ``db`` group and every optional CLI group that exists."""
    app.cli.add_command(db_cli)
    for group in _cli_groups():
        app.cli.add_command(group)


db_cli = AppGroup("db", help="Database migrations and maintenance.")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations (the release phase runs this)."""
    store: Store = handles()["store"]
    store.upgrade(revision)
    click.echo(f"database at revision {migrate.current_revision(store.engine)}")


@db_cli.command("current")
def db_current() -> None:
    """Show the database revision and the newest one this code ships."""
    store: Store = handles()["store"]
    current = migrate.current_revision(store.engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else "needs `flask --app app db upgrade`"
    click.echo(f"current: {current or 'empty'}  head: {head}  ({state})")


@db_cli.command("rotate-keys")
def db_rotate_keys() -> None:
    """Re-encrypt stored tokens and secrets with the first TOKEN_ENCRYPTION_KEY."""
    store: Store = handles()["store"]
    with store.transaction() as session:
        changed = connections.rotate_keys(session)
    click.echo(f"re-encrypted {changed} secrets with the newest key; older keys can now go")
