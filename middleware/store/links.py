"""Store links: which Salesforce record of a setup is which Constant Contact contact, in bulk.

Every function takes and returns plain ids and rows, and works on thousands of records per call:
reads chunk their ``IN`` lists, ``upsert_links`` is one ``INSERT ... ON CONFLICT`` executemany.
Emails are normalised (trimmed, lower-cased) on the way in, as they are the CC identity.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from middleware.store.bulk import chunked
from middleware.store.models import Link, utcnow

# Columns a caller may set through upsert_links, besides the key (setup_id, sf_id).
UPSERT_COLUMNS = (
    "sf_object",
    "cc_contact_id",
    "email",
    "fingerprint",
    "subscribed_when_synced",
    "opted_out_propagated",
    "lists",
    "removed_on_delete",
    "sf_created",
)
_ACTIVE = text("status = 'active'")


def normalise_email(email: str | None) -> str | None:
    """Trimmed, lower-cased; blank becomes ``None``."""
    if email is None:
        return None
    value = email.strip().lower()
    return value or None


def for_sf_ids(session: Session, setup_id: int, sf_ids: Iterable[str]) -> dict[str, Link]:
    """Active links of a setup by Salesforce id (ids without a link are absent)."""
    found: dict[str, Link] = {}
    for batch in chunked(dict.fromkeys(sf_ids)):
        stmt = select(Link).where(
            Link.setup_id == setup_id, Link.status == "active", Link.sf_id.in_(batch)
        )
        for link in session.scalars(stmt):
            found[link.sf_id] = link
    return found


def for_emails(
    session: Session, setup_id: int, emails: Iterable[str], *, include_retired: bool = True
) -> dict[str, list[Link]]:
    """Links of a setup by normalised email; retired ones included unless told otherwise.

    The CC → SF direction uses this to recognise addresses this setup has *ever* linked.
    """
    keys = [e for e in (normalise_email(x) for x in emails) if e]
    found: dict[str, list[Link]] = defaultdict(list)
    for batch in chunked(dict.fromkeys(keys)):
        stmt = select(Link).where(Link.setup_id == setup_id, Link.email.in_(batch))
        if not include_retired:
            stmt = stmt.where(Link.status == "active")
        for link in session.scalars(stmt.order_by(Link.id)):
            assert link.email is not None
            found[link.email].append(link)
    return dict(found)


def links_for_emails(
    session: Session, setup_id: int, emails: Iterable[str], *, include_retired: bool = True
) -> dict[str, list[Link]]:
    """Alias of ``for_emails``."""
    return for_emails(session, setup_id, emails, include_retired=include_retired)


def for_cc_contact_ids(
    session: Session, setup_id: int, contact_ids: Iterable[str], *, include_retired: bool = True
) -> dict[str, list[Link]]:
    """Links of a setup by Constant Contact contact id."""
    found: dict[str, list[Link]] = defaultdict(list)
    for batch in chunked(dict.fromkeys(contact_ids)):
        stmt = select(Link).where(Link.setup_id == setup_id, Link.cc_contact_id.in_(batch))
        if not include_retired:
            stmt = stmt.where(Link.status == "active")
        for link in session.scalars(stmt.order_by(Link.id)):
            assert link.cc_contact_id is not None
            found[link.cc_contact_id].append(link)
    return dict(found)


def upsert_links(session: Session, setup_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert or update active links keyed by ``sf_id``; return how many rows were written.

    Each row needs ``sf_id`` and ``sf_object``; other keys (``UPSERT_COLUMNS``) are optional and
    only the keys present are changed on an existing link, so a caller refreshing fingerprints
    does not wipe list memberships. Rows are grouped by their key set (one statement per group
    and 5,000 rows); a record given twice keeps its last row.
    """
    groups: dict[tuple[str, ...], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        if "sf_id" not in row or "sf_object" not in row:
            raise ValueError("every link row needs sf_id and sf_object")
        unknown = set(row) - {"sf_id", *UPSERT_COLUMNS}
        if unknown:
            raise ValueError(f"unknown link columns: {sorted(unknown)}")
        values = dict(row)
        if "email" in values:
            values["email"] = normalise_email(values["email"])
        if "lists" in values:
            values["lists"] = list(values["lists"] or [])
        groups[tuple(sorted(row))][values["sf_id"]] = values
    written = 0
    postgres = session.get_bind().dialect.name == "postgresql"
    for keys, by_sf_id in groups.items():
        for batch in chunked(by_sf_id.values(), 5000):
            _upsert_json(session, setup_id, keys, batch, postgres=postgres)
            written += len(batch)
    # The identity map may hold stale copies of the rows just written.
    session.expire_all()
    return written


_INSERT_DEFAULTS: dict[str, Any] = {
    "subscribed_when_synced": True,
    "opted_out_propagated": False,
    "lists": [],
    "removed_on_delete": False,
}
_PG_TYPES = {
    "sf_id": "varchar",
    "sf_object": "varchar",
    "cc_contact_id": "varchar",
    "email": "varchar",
    "fingerprint": "varchar",
    "subscribed_when_synced": "boolean",
    "opted_out_propagated": "boolean",
    "lists": "json",
    "removed_on_delete": "boolean",
    "sf_created": "varchar",
}


def _upsert_json(
    session: Session,
    setup_id: int,
    keys: tuple[str, ...],
    batch: list[dict[str, Any]],
    *,
    postgres: bool,
) -> None:
    # One statement per batch with the rows as one JSON document (PostgreSQL json_to_recordset,
    # SQLite json_each): an executemany costs a round trip or a parameter conversion per row,
    # 5-10x slower for 10,000 links. Raw SQL skips the models' Python defaults, so they are
    # supplied for inserts, while only the keys the caller gave are updated on existing links.
    columns = list(keys) + [c for c in _INSERT_DEFAULTS if c not in keys]
    defaults = {c: v for c, v in _INSERT_DEFAULTS.items() if c not in keys}
    payload = json.dumps([{**defaults, **row} for row in batch])
    updates = ", ".join(f"{col} = excluded.{col}" for col in keys if col != "sf_id")
    if postgres:
        record = ", ".join(f"{col} {_PG_TYPES[col]}" for col in columns)
        now = "now()"
        selects = ", ".join(f"u.{col}" for col in columns)
        source = f"json_to_recordset(CAST(:rows AS json)) AS u({record})"
    else:
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"  # UTC, the format SQLAlchemy reads
        selects = ", ".join(f"json_extract(u.value, '$.{col}')" for col in columns)
        # "WHERE true" keeps SQLite from parsing ON CONFLICT as a join constraint.
        source = "json_each(:rows) AS u WHERE true"
    sql = (
        f"INSERT INTO links (setup_id, status, created_at, updated_at, {', '.join(columns)}) "
        f"SELECT :setup_id, 'active', {now}, {now}, {selects} FROM {source} "
        "ON CONFLICT (setup_id, sf_id) WHERE status = 'active' "
        f"DO UPDATE SET {updates}{', ' if updates else ''}updated_at = excluded.updated_at"
    )
    params = {"setup_id": setup_id, "rows": payload}
    session.connection().execute(text(sql), params)


def fill_contact_ids(session: Session, setup_id: int, rows: Iterable[tuple[str, str]]) -> int:
    """Give active links that know no contact id yet the one found for their address.

    ``rows`` are ``(email, cc_contact_id)`` (Constant Contact holds one contact per address).
    Only links still without a contact id and still at that address are filled, so a link a run
    changed meanwhile is left alone. One statement per 5,000 rows (the rows as one JSON
    document, as :func:`upsert_links`). Returns how many links were filled.
    """
    wanted: dict[str, dict[str, str]] = {}
    for email, contact_id in rows:
        key = normalise_email(email)
        if key and contact_id:
            wanted[key] = {"email": key, "contact_id": contact_id}
    if not wanted:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        sql = (
            "UPDATE links SET cc_contact_id = u.contact_id, updated_at = now() "
            "FROM json_to_recordset(CAST(:rows AS json)) AS u(email varchar, contact_id varchar) "
            "WHERE links.setup_id = :setup_id AND links.status = 'active' "
            "AND links.email = u.email "
            "AND (links.cc_contact_id IS NULL OR links.cc_contact_id = '')"
        )
    else:
        # One statement per address, by the (setup_id, email) index: SQLite joined an
        # UPDATE ... FROM json_each(...) against every link of the setup (minutes for 60,000).
        sql = (
            "UPDATE links SET cc_contact_id = :contact_id, "
            "updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') "
            "WHERE setup_id = :setup_id AND status = 'active' AND email = :email "
            "AND (cc_contact_id IS NULL OR cc_contact_id = '')"
        )
    filled = 0
    for batch in chunked(wanted.values(), 5000):
        if postgres:
            result = session.connection().execute(
                text(sql), {"setup_id": setup_id, "rows": json.dumps(batch)}
            )
        else:
            result = session.connection().execute(
                text(sql), [{"setup_id": setup_id, **row} for row in batch]
            )
        filled += int(getattr(result, "rowcount", 0) or 0)
    session.expire_all()
    return filled


def retire_links(session: Session, setup_id: int, sf_ids: Iterable[str]) -> int:
    """Retire the active links of these records (kept so their addresses stay known)."""
    retired = 0
    for batch in chunked(dict.fromkeys(sf_ids)):
        result = session.execute(
            update(Link)
            .where(Link.setup_id == setup_id, Link.status == "active", Link.sf_id.in_(batch))
            .values(status="retired", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        retired += int(getattr(result, "rowcount", 0) or 0)
    session.expire_all()
    return retired


def relink(
    session: Session,
    setup_id: int,
    *,
    sf_id: str,
    sf_object: str,
    cc_contact_id: str | None,
    email: str | None,
    **fields: Any,
) -> None:
    """Point a record at another contact/address, keeping the old pair as a retired link.

    Used for email changes: the address left behind must still be recognised (§5a).
    """
    retire_links(session, setup_id, [sf_id])
    upsert_links(
        session,
        setup_id,
        [
            {
                "sf_id": sf_id,
                "sf_object": sf_object,
                "cc_contact_id": cc_contact_id,
                "email": email,
                **fields,
            }
        ],
    )


def iter_active(session: Session, setup_id: int, batch_size: int = 1000) -> Iterator[list[Link]]:
    """Active links of a setup in pages ordered by id (keyset paging: constant memory)."""
    last_id = 0
    while True:
        page = list(
            session.scalars(
                select(Link)
                .where(Link.setup_id == setup_id, Link.status == "active", Link.id > last_id)
                .order_by(Link.id)
                .limit(batch_size)
            )
        )
        if not page:
            return
        yield page
        last_id = page[-1].id
        session.expunge_all()


def counts(session: Session, setup_id: int) -> dict[str, int]:
    """Number of links of a setup per status."""
    rows = session.execute(
        select(Link.status, func.count()).where(Link.setup_id == setup_id).group_by(Link.status)
    )
    return {status: int(n) for status, n in rows}
