"""Store migrations environment: runs Alembic against a connection handed in, or DATABASE_URL."""

from __future__ import annotations

import os
from typing import Any

from alembic import context
from sqlalchemy import Connection

from middleware.settings import DEFAULT_SQLITE_PATH, normalise_database_url
from middleware.store.engine import make_engine
from middleware.store.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations must not import application types: render our UTC wrapper as its column type.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure_kwargs(connection: Connection) -> dict[str, Any]:
    """Options shared by migrations and the models ⇄ migration agreement test."""
    return {
        "connection": connection,
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_item": render_item,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        "render_as_batch": connection.dialect.name == "sqlite",
    }


def run_migrations(connection: Connection) -> None:
    context.configure(**configure_kwargs(connection))
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or normalise_database_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{DEFAULT_SQLITE_PATH}")
    )
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            run_migrations(conn)
    finally:
        engine.dispose()


main()
