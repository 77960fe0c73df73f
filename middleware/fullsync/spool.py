"""Full Sync spool: both sides and the store's links on local disk, joined by email and Id.

One temporary SQLite file per run holds the Constant Contact export (one row per address), the
setup's active links, and the Salesforce records of the Bulk 2.0 query, so the run can join a
million records on email and Id while holding only a page in memory. SQLite is the standard
library's, written without a journal (the file is scratch: a run that dies rebuilds it from the
vendors and its checkpoint).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# The Constant Contact side and the links each live in a file of their own, written by their own
# connection, so both can be read while the Salesforce query streams into the main file; the
# main connection attaches them for the joins.
_CC_SCHEMA = """
CREATE TABLE cc (
    email TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL,
    permission TEXT NOT NULL,
    lists TEXT NOT NULL,           -- ';'-separated list ids, as the export writes them
    fields TEXT NOT NULL           -- the exported values (first_name, cf:...), SEP-joined
) WITHOUT ROWID;
"""
_LINKS_SCHEMA = """
CREATE TABLE links (
    sf_id TEXT PRIMARY KEY,
    cc_contact_id TEXT,
    email TEXT,
    fingerprint TEXT,
    opted_out INTEGER NOT NULL,
    lists TEXT NOT NULL,           -- ';'-separated list ids
    removed_on_delete INTEGER NOT NULL,
    sf_created TEXT,
    cc_unsubscribed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""
_SCHEMA = """
CREATE TABLE sf (
    id TEXT PRIMARY KEY,
    email TEXT,
    data TEXT NOT NULL             -- the row's values in column order, SEP-joined
) WITHOUT ROWID;
CREATE TABLE inflight (
    sf_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE activity_rows (
    activity_id TEXT NOT NULL,
    idx INTEGER NOT NULL,          -- the row's index in the import body (import_data[idx])
    sf_id TEXT NOT NULL,
    email TEXT NOT NULL,
    PRIMARY KEY (activity_id, idx)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
"""


# Values are joined with the ASCII unit separator: ten times cheaper than JSON per row, and no
# Salesforce or Constant Contact text value carries it. Blank and null are the same to the sync.
SEP = "\x1f"


def _join(values: Iterable[str | None]) -> str:
    return SEP.join([v or "" for v in values])


def _connect(path: str, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        "journal_mode=OFF",
        "synchronous=OFF",
        "temp_store=FILE",
        "cache_size=-16000",  # 16 MB of page cache, whatever the row count
    ):
        db.execute(f"PRAGMA {pragma}")
    db.executescript(schema)
    return db


def _write(db: sqlite3.Connection, sql: str, chunk: list[Sequence[Any]]) -> None:
    db.execute("BEGIN")
    db.executemany(sql, chunk)
    db.execute("COMMIT")


class CcRow:
    """One exported Constant Contact contact; lists and values are split only when asked for
    (most rows of a run are only checked for their address and consent)."""

    __slots__ = ("_fields", "_lists", "_names", "_raw_fields", "_raw_lists", "contact_id",
                 "email", "permission")  # fmt: skip

    def __init__(
        self,
        contact_id: str,
        email: str,
        permission: str,
        lists: str | tuple[str, ...],
        fields: str | dict[str, str],
        names: tuple[str, ...] = (),
    ) -> None:
        self.contact_id = contact_id
        self.email = email
        self.permission = permission
        self._raw_lists = lists if isinstance(lists, str) else ""
        self._lists: tuple[str, ...] | None = None if isinstance(lists, str) else lists
        self._raw_fields = fields if isinstance(fields, str) else ""
        self._fields: dict[str, str] | None = None if isinstance(fields, str) else fields
        self._names = names

    @property
    def lists(self) -> tuple[str, ...]:
        if self._lists is None:
            self._lists = tuple(x for x in self._raw_lists.split(";") if x)
        return self._lists

    @property
    def fields(self) -> dict[str, str]:
        if self._fields is None:
            self._fields = dict(zip(self._names, self._raw_fields.split(SEP), strict=False))
        return self._fields

    @property
    def unsubscribed(self) -> bool:
        return self.permission == "unsubscribed"

    def __repr__(self) -> str:
        return f"<CcRow {self.contact_id} {self.permission}>"


@dataclass(frozen=True, slots=True)
class LinkRow:
    """One active link of the setup, as the store held it when the run began."""

    sf_id: str
    cc_contact_id: str
    email: str
    fingerprint: str | None
    opted_out: bool
    lists: tuple[str, ...]
    removed_on_delete: bool = False
    sf_created: str | None = None
    cc_unsubscribed: bool = False


class Spool:
    """The run's scratch database. Use as a context manager; the file is removed on close."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = tempfile.mkdtemp(prefix="fullsync-", dir=directory)
        self.path = os.path.join(self.directory, "main.sqlite")
        self.db = _connect(self.path, _SCHEMA)
        self._cc_db = _connect(os.path.join(self.directory, "cc.sqlite"), _CC_SCHEMA)
        self._links_db = _connect(os.path.join(self.directory, "links.sqlite"), _LINKS_SCHEMA)
        self._attached = False
        self._dup_ready = False  # the table of addresses several Salesforce rows share
        self.sf_columns: list[str] = []
        self.cc_fields: tuple[str, ...] = ()

    def attach(self) -> None:
        """After loading: close the side writers and join their files to the main connection."""
        if self._attached:
            return
        self._cc_db.close()
        self._links_db.close()
        _attach_sides(self.db, self.directory)
        for name in _SIDES:
            self.db.execute(f"PRAGMA {name}db.journal_mode=OFF")
        self._attached = True

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._attached:
            self._cc_db.close()
            self._links_db.close()
        self.db.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------------

    def _many(
        self,
        sql: str,
        rows: Iterable[Sequence[Any]],
        batch: int = 20_000,
        db: sqlite3.Connection | None = None,
    ) -> int:
        target = db or self.db
        count = 0
        chunk: list[Sequence[Any]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                _write(target, sql, chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            _write(target, sql, chunk)
            count += len(chunk)
        return count

    def add_cc(
        self, fields: Sequence[str], rows: Iterable[tuple[str, str, str, str, Sequence[Any]]]
    ) -> int:
        """(email, contact_id, permission, lists, values of ``fields``); the first of an address
        wins."""
        self.cc_fields = tuple(fields)
        return self._many(
            "INSERT OR IGNORE INTO cc VALUES (?, ?, ?, ?, ?)",
            ((e, c, p, lst, _join(v)) for e, c, p, lst, v in rows),
            db=self._cc_db,
        )

    def add_links(self, rows: Iterable[LinkRow]) -> int:
        return self._many(
            "INSERT OR REPLACE INTO links VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    r.sf_id,
                    r.cc_contact_id,
                    r.email,
                    r.fingerprint,
                    int(r.opted_out),
                    ";".join(r.lists),
                    int(r.removed_on_delete),
                    r.sf_created,
                    int(r.cc_unsubscribed),
                )
                for r in rows
            ),
            db=self._links_db,
        )

    def add_sf(self, columns: list[str], rows: Iterable[tuple[str, str, list[Any]]]) -> int:
        """(Id, normalised email, values in ``columns`` order, blanks as ``""``); a repeated Id
        keeps its last."""
        self.sf_columns = columns
        return self._many(
            "INSERT OR REPLACE INTO sf VALUES (?, ?, ?)", ((i, e, SEP.join(v)) for i, e, v in rows)
        )

    def add_inflight(self, rows: Iterable[tuple[str, str]]) -> int:
        return self._many("INSERT OR REPLACE INTO inflight VALUES (?, ?)", rows)

    def add_activity_rows(self, activity_id: str, rows: Sequence[tuple[str, str]]) -> int:
        """The (sf_id, email) rows an import activity carries, in body order."""
        return self._many(
            "INSERT OR REPLACE INTO activity_rows VALUES (?, ?, ?, ?)",
            ((activity_id, i, sf_id, email) for i, (sf_id, email) in enumerate(rows)),
        )

    def activity_rows(self, activity_id: str) -> list[tuple[str, str]]:
        return [
            (sf_id, email)
            for sf_id, email in self.db.execute(
                "SELECT sf_id, email FROM activity_rows WHERE activity_id = ? ORDER BY idx",
                (activity_id,),
            )
        ]

    def id_before(self, sf_id: str) -> str:
        """The greatest Salesforce Id in the spool below ``sf_id`` ("" if none)."""
        row = self.db.execute("SELECT max(id) FROM sf WHERE id < ?", (sf_id,)).fetchone()
        return str(row[0] or "")

    def index_emails(self) -> None:
        """Indexes built once after loading (much faster than maintained row by row)."""
        self.attach()
        self.db.execute("CREATE INDEX IF NOT EXISTS sf_email ON sf(email)")
        self.db.execute("CREATE INDEX IF NOT EXISTS linksdb.links_email ON links(email)")
        self.db.execute("CREATE INDEX IF NOT EXISTS ccdb.cc_contact ON cc(contact_id)")

    # -- reading ---------------------------------------------------------------------------------

    def count(self, table: str) -> int:
        if table not in ("cc", "links", "sf", "inflight"):
            raise ValueError(table)
        return int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def count_through(self, last_id: str) -> int:
        """Salesforce rows with an Id up to ``last_id`` (what a resumed run already did)."""
        return int(
            self.db.execute("SELECT count(*) FROM sf WHERE id <= ?", (last_id,)).fetchone()[0]
        )

    def page_bounds(self, after: str = "", page: int = 10_000) -> list[str]:
        """The last Id of each page of Salesforce rows after ``after`` (pages of ``page`` rows,
        duplicates counted), so several processes can read pages by Id range at once."""
        self._ensure_dup()
        bounds: list[str] = []
        count = 0
        last = ""
        for (sf_id,) in self.db.execute("SELECT id FROM sf WHERE id > ? ORDER BY id", (after,)):
            count += 1
            last = sf_id
            if count == page:
                bounds.append(sf_id)
                count = 0
        if count:
            bounds.append(last)
        return bounds

    def joined_page(self, low: str, high: str) -> list[tuple[Any, ...]]:
        """See :func:`joined_page` (on this spool's connection)."""
        self._ensure_dup()
        return joined_page(self.db, low, high)

    def _ensure_dup(self) -> None:
        if self._dup_ready:
            return
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS dup AS "
            "SELECT email FROM sf WHERE email IS NOT NULL AND email != '' "
            "GROUP BY email HAVING count(*) > 1"
        )
        self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS dup_email ON dup(email)")
        self._dup_ready = True

    def duplicate_groups(
        self, page: int = 10_000
    ) -> Iterator[list[tuple[str, str | None, list[Any]]]]:
        """Rows whose email several rows share, whole groups per page, by email."""
        self._ensure_dup()
        batch: list[tuple[str, str | None, list[Any]]] = []
        current = None
        for i, e, d in self.db.execute(
            "SELECT id, email, data FROM sf WHERE email IN (SELECT email FROM dup) "
            "ORDER BY email, id"
        ):
            if len(batch) >= page and e != current:
                yield batch
                batch = []
            batch.append((i, e, d.split(SEP)))
            current = e
        if batch:
            yield batch

    def duplicate_count(self) -> int:
        self._ensure_dup()
        return int(
            self.db.execute(
                "SELECT count(*) FROM sf WHERE email IN (SELECT email FROM dup)"
            ).fetchone()[0]
        )

    def links_for(self, sf_ids: Sequence[str]) -> dict[str, LinkRow]:
        return {row.sf_id: row for row in self._links("sf_id", sf_ids)}

    def links_by_email(self, emails: Sequence[str]) -> list[LinkRow]:
        return list(self._links("email", emails))

    def _links(self, column: str, keys: Sequence[str]) -> Iterator[LinkRow]:
        for start in range(0, len(keys), 900):
            chunk = list(keys[start : start + 900])
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT * FROM links WHERE {column} IN ({marks})", chunk):
                yield LinkRow(row[0], row[1] or "", row[2] or "", row[3], bool(row[4]),
                              tuple(x for x in row[5].split(";") if x), bool(row[6]),
                              row[7], bool(row[8]))  # fmt: skip

    def cc_by_email(self, emails: Sequence[str]) -> dict[str, CcRow]:
        return {row.email: row for row in self._cc("email", emails)}

    def cc_by_id(self, contact_ids: Sequence[str]) -> dict[str, CcRow]:
        return {row.contact_id: row for row in self._cc("contact_id", contact_ids)}

    def _cc(self, column: str, keys: Sequence[str]) -> Iterator[CcRow]:
        names = self.cc_fields
        for start in range(0, len(keys), 900):
            chunk = list(keys[start : start + 900])
            marks = ",".join("?" * len(chunk))
            for e, c, p, lst, f in self.db.execute(
                f"SELECT email, contact_id, permission, lists, fields FROM cc "
                f"WHERE {column} IN ({marks})",
                chunk,
            ):
                yield CcRow(c, e, p, lst, f, names)

    def inflight_for(self, sf_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for start in range(0, len(sf_ids), 900):
            chunk = list(sf_ids[start : start + 900])
            marks = ",".join("?" * len(chunk))
            out.update(
                self.db.execute(
                    f"SELECT sf_id, fingerprint FROM inflight WHERE sf_id IN ({marks})", chunk
                ).fetchall()
            )
        return out

    def unseen_links(self, low: str = "", high: str | None = None) -> Iterator[list[str]]:
        """Ids of links no Salesforce row of the spool has (within an Id range), in pages."""
        sql = "SELECT sf_id FROM links WHERE sf_id NOT IN (SELECT id FROM sf) AND sf_id > ?"
        params: list[Any] = [low]
        if high is not None:
            sql += " AND sf_id <= ?"
            params.append(high)
        batch: list[str] = []
        for (sf_id,) in self.db.execute(sql + " ORDER BY sf_id", params):
            batch.append(sf_id)
            if len(batch) >= 2000:
                yield batch
                batch = []
        if batch:
            yield batch

    def export_contact_ids(self, page: int = 5000) -> Iterator[list[tuple[str, str]]]:
        """``(email, contact_id)`` for the links that know no contact id yet: the contact the
        export holds at the link's address, in pages."""
        batch: list[tuple[str, str]] = []
        for row in self.db.execute(
            "SELECT DISTINCT l.email, c.contact_id FROM links l JOIN cc c ON c.email = l.email"
            " WHERE (l.cc_contact_id IS NULL OR l.cc_contact_id = '') ORDER BY l.email"
        ):
            batch.append(row)
            if len(batch) >= page:
                yield batch
                batch = []
        if batch:
            yield batch

    def unsubscribed_matches(
        self, opted_out_column: int, deleted_column: int | None
    ) -> Iterator[list[tuple[str, str]]]:
        """(Id, email) of Salesforce rows not opted out whose address CC holds unsubscribed."""
        batch: list[tuple[str, str]] = []
        for sf_id, email, data in self.db.execute(
            "SELECT sf.id, sf.email, sf.data FROM sf JOIN cc ON cc.email = sf.email "
            "WHERE cc.permission = 'unsubscribed' ORDER BY sf.id"
        ):
            values = data.split(SEP)
            if _truthy(values[opted_out_column]):
                continue
            if deleted_column is not None and _truthy(values[deleted_column]):
                continue
            batch.append((sf_id, email))
            if len(batch) >= 2000:
                yield batch
                batch = []
        if batch:
            yield batch

    def unsubscribed_emails(self, page: int = 2000) -> Iterator[list[str]]:
        """Every address Constant Contact holds as unsubscribed, in pages (sorted)."""
        batch: list[str] = []
        for (email,) in self.db.execute(
            "SELECT email FROM cc WHERE permission = 'unsubscribed' ORDER BY email"
        ):
            batch.append(email)
            if len(batch) >= page:
                yield batch
                batch = []
        if batch:
            yield batch


_SIDES = ("cc", "links")  # the files beside main.sqlite, attached as ccdb and linksdb


def _attach_sides(db: sqlite3.Connection, directory: str, *, read_only: bool = False) -> None:
    """Attach the side files; read-only needs a connection opened with ``uri=True``."""
    for name in _SIDES:
        path = os.path.join(directory, f"{name}.sqlite")
        db.execute(
            f"ATTACH DATABASE ? AS {name}db", (f"file:{path}?mode=ro" if read_only else path,)
        )


def open_reader(directory: str) -> sqlite3.Connection:
    """A second, read-only connection to a loaded spool (for another process)."""
    db = sqlite3.connect(
        f"file:{os.path.join(directory, 'main.sqlite')}?mode=ro", uri=True, timeout=60.0
    )
    _attach_sides(db, directory, read_only=True)
    return db


def joined_page(db: sqlite3.Connection, low: str, high: str) -> list[tuple[Any, ...]]:
    """Salesforce rows with ``low < Id <= high``, each joined with its link and the contact the
    link names (rows whose address another row shares are left for
    :meth:`Spool.duplicate_groups`, so every address's claimers are planned together):
    ``(id, email, values, link cc_contact_id, link email, link fingerprint, link opted_out,
    link lists, cc email, cc permission, cc lists, cc fields)``, the link and contact columns
    ``None`` when there is none. The contact is the one of the link's contact id, or for a
    link that has none yet (an import's), the one at the link's address. One query per page:
    the join is SQLite's, not Python's.
    """
    rows = db.execute(
        "SELECT sf.id, sf.email, sf.data, l.cc_contact_id, l.email, l.fingerprint, l.opted_out,"
        " l.lists, coalesce(c.email, e.email), coalesce(c.permission, e.permission),"
        " coalesce(c.lists, e.lists), coalesce(c.fields, e.fields) FROM sf"
        " LEFT JOIN links l ON l.sf_id = sf.id"
        " LEFT JOIN cc c ON c.contact_id = l.cc_contact_id AND l.cc_contact_id != ''"
        " LEFT JOIN cc e ON e.email = l.email AND l.cc_contact_id = ''"
        " WHERE sf.id > ? AND sf.id <= ? AND (sf.email IS NULL OR sf.email NOT IN"
        " (SELECT email FROM dup)) ORDER BY sf.id",
        (low, high),
    ).fetchall()
    out: list[tuple[Any, ...]] = []
    last = None
    for row in rows:
        if row[0] == last:  # a contact id the export held twice: the first will do
            continue
        last = row[0]
        out.append((row[0], row[1], row[2].split(SEP), *row[3:]))
    return out


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)
