"""Tests for the Alembic migrations: they build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from middleware.store.db import Store
from middleware.store.migrate import current_revision, downgrade, head_revision, upgrade
from middleware.store.models import Base


def _diffs(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _check_migration_matches_models(store: Store) -> None:
    assert current_revision(store.engine) is None
    upgrade(store.engine)
    assert current_revision(store.engine) == head_revision()
    assert _diffs(store) == []
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_migration_matches_models_on_sqlite(fernet_key: str) -> None:
    store = Store("sqlite://", (fernet_key,))
    _check_migration_matches_models(store)


@pytest.mark.integration
def test_migration_matches_models_on_postgresql(pg_empty_store: Store) -> None:
    _check_migration_matches_models(pg_empty_store)


def test_models_differ_from_an_empty_database(fernet_key: str) -> None:
    # The agreement check above must be able to fail: an unmigrated database shows diffs.
    store = Store("sqlite://", (fernet_key,))
    assert _diffs(store)


def test_downgrade_to_base_and_back(fernet_key: str) -> None:
    store = Store("sqlite://", (fernet_key,))
    upgrade(store.engine)
    downgrade(store.engine, "base")
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    upgrade(store.engine)
    assert _diffs(store) == []


def test_release_entry_point_migrates_configured_database(
    tmp_path: pytest.TempPathFactory, fernet_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from middleware.store import migrate

    url = f"sqlite:///{tmp_path}/release.sqlite3"
    for name, value in {
        "SECRET_KEY": "s",
        "ADMIN_TOKEN": "a",
        "TOKEN_ENCRYPTION_KEY": fernet_key,
        "DATABASE_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    assert migrate.main([]) == 0
    store = Store(url, (fernet_key,))
    assert current_revision(store.engine) == head_revision()
    store.dispose()


def test_release_entry_point_reads_dotenv_without_overriding_the_environment(
    tmp_path: Path, fernet_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from middleware.store import migrate

    from_file = tmp_path / "from-dotenv.sqlite3"
    real = tmp_path / "from-environment.sqlite3"
    (tmp_path / ".env").write_text(
        f"SECRET_KEY=s\nADMIN_TOKEN=a\nTOKEN_ENCRYPTION_KEY={fernet_key}\n"
        f"DATABASE_URL=sqlite:///{from_file}\n"
    )
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)  # found from the working directory up, as the flask CLI does
    for name in ("SECRET_KEY", "ADMIN_TOKEN", "TOKEN_ENCRYPTION_KEY", "DATABASE_URL"):
        monkeypatch.setenv(name, "")  # so that what .env sets is removed after the test
        monkeypatch.delenv(name)
    assert migrate.main([]) == 0
    store = Store(f"sqlite:///{from_file}", (fernet_key,))
    assert current_revision(store.engine) == head_revision()
    store.dispose()

    from_file.unlink()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{real}")  # the real environment wins
    assert migrate.main([]) == 0
    store = Store(f"sqlite:///{real}", (fernet_key,))
    assert current_revision(store.engine) == head_revision()
    store.dispose()
    assert not from_file.exists()


def test_release_entry_point_refuses_missing_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from middleware.store import migrate

    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("SECRET_KEY", "ADMIN_TOKEN", "TOKEN_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert migrate.main([]) == 2
    assert "TOKEN_ENCRYPTION_KEY" in capsys.readouterr().err
