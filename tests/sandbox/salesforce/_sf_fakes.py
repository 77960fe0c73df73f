"""A small in-memory stand-in for the org store, for testing events, bulk and seeding in isolation.

It follows the store.py contract (ChangeRecords per transaction, SalesforceError, lazy QueryResult
rows) with a deliberately tiny SOQL: `SELECT a, b.c FROM X [WHERE f = 'v' | f IN ('v', ...)]`.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask

from sandbox.salesforce import auth, bulk, events, seed
from sandbox.salesforce import store as store_module
from sandbox.salesforce.org import SalesforceSandbox
from sandbox.salesforce.store import ChangeRecord, QueryResult, SalesforceError

INSTANCE_URL = "https://sf.sandbox.test"
PREFIX = {"Contact": "003", "Lead": "00Q", "Account": "001", "Campaign": "701"}
REQUIRED = {"Contact": ["LastName"], "Lead": ["LastName", "Company"], "Account": ["Name"]}
_SELECT = re.compile(
    r"^\s*SELECT\s+(?P<cols>.+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+(?P<field>\w+)\s*(?P<op>=|IN)\s*(?P<val>.+?))?\s*$",
    re.IGNORECASE | re.DOTALL,
)


class FakeStore:
    def __init__(self, clock: Any, user_id: str = "005SB0000000001AAA") -> None:
        self.clock = clock
        self.user_id = user_id
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.deleted: set[str] = set()
        self.listeners: list[Any] = []
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self._tx: list[ChangeRecord] | None = None
        self._tx_key = ""
        self.insert_many_calls = 0

    # -- plumbing ----------------------------------------------------------------------------
    def subscribe(self, listener: Any) -> None:
        self.listeners.append(listener)

    def _stamp(self) -> str:
        now = self.clock.now()
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"

    def _emit(
        self,
        entity: str,
        rid: str,
        ctype: str,
        values: dict,
        changed: list,
        nulled: list,
        origin: str,
    ) -> None:
        in_tx = self._tx is not None
        batch = self._tx if in_tx else []
        key = self._tx_key if in_tx else str(uuid.uuid4())
        assert batch is not None
        batch.append(
            ChangeRecord(
                entity=entity,
                record_id=rid,
                change_type=ctype,
                values=values,
                changed_fields=changed,
                nulled_fields=nulled,
                origin=origin,
                transaction_key=key,
                sequence_number=len(batch) + 1,
                commit_timestamp=int(self.clock.now().timestamp() * 1000),
                commit_user=self.user_id,
            )
        )
        if not in_tx:
            for listener in self.listeners:
                listener(batch)

    @contextlib.contextmanager
    def transaction(self, origin: str = "") -> Iterator[None]:
        with self.lock:
            self._tx, self._tx_key = [], str(uuid.uuid4())
            try:
                yield
                batch = self._tx
            finally:
                self._tx = None
            for listener in self.listeners:
                listener(batch)

    def _new_id(self, sobject: str) -> str:
        return f"{PREFIX.get(sobject, 'a00')}SB{next(self._ids):010d}AAA"

    # -- writes ------------------------------------------------------------------------------
    def create(self, sobject: str, values: dict[str, Any], *, origin: str = "") -> str:
        with self.lock:
            required = REQUIRED.get(sobject, [])
            if sobject == "Account" and values.get("IsPersonAccount"):
                required = ["LastName"]
            missing = [f for f in required if not values.get(f)]
            if missing:
                raise SalesforceError(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            if "Email" in values and values["Email"] and "@" not in str(values["Email"]):
                raise SalesforceError(
                    400,
                    "INVALID_EMAIL_ADDRESS",
                    f"Email: invalid email address: {values['Email']}",
                    ["Email"],
                )
            rid = self._new_id(sobject)
            stamp = self._stamp()
            rec = {k: v for k, v in values.items() if v is not None}
            rec.update(Id=rid, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
            rec.setdefault("OwnerId", self.user_id)
            self.records.setdefault(sobject, {})[rid] = rec
            self._emit(sobject, rid, "CREATE", dict(rec), [], [], origin)
            return rid

    def update(
        self, sobject: str, record_id: str, values: dict[str, Any], *, origin: str = ""
    ) -> None:
        with self.lock:
            rec = self.records.get(sobject, {}).get(record_id)
            if rec is None:
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
            if record_id in self.deleted:
                raise SalesforceError(400, "ENTITY_IS_DELETED", "entity is deleted")
            changed = {k: v for k, v in values.items() if rec.get(k) != v}
            if not changed:
                return
            stamp = self._stamp()
            for k, v in changed.items():
                if v is None:
                    rec.pop(k, None)
                else:
                    rec[k] = v
            rec["LastModifiedDate"] = rec["SystemModstamp"] = stamp
            nulled = [k for k, v in changed.items() if v is None]
            self._emit(
                sobject,
                record_id,
                "UPDATE",
                {**changed, "LastModifiedDate": stamp},
                [*changed, "LastModifiedDate"],
                nulled,
                origin,
            )

    def delete(self, sobject: str, record_id: str, *, origin: str = "") -> None:
        with self.lock:
            if record_id not in self.records.get(sobject, {}) or record_id in self.deleted:
                raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted")
            self.deleted.add(record_id)
            self._emit(sobject, record_id, "DELETE", {}, [], [], origin)

    def hard_delete(self, sobject: str, record_id: str) -> None:
        with self.lock:
            if self.records.get(sobject, {}).pop(record_id, None) is None:
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
            self.deleted.discard(record_id)

    def insert_many(
        self, sobject: str, rows: Iterable[dict[str, Any]], *, events: bool = False
    ) -> int:
        self.insert_many_calls += 1
        n = 0
        with self.lock:
            stamp = self._stamp()
            table = self.records.setdefault(sobject, {})
            for row in rows:
                rid = self._new_id(sobject)
                rec = {k: v for k, v in row.items() if v is not None}
                rec.update(Id=rid, CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp)
                table[rid] = rec
                n += 1
        return n

    # -- reads -------------------------------------------------------------------------------
    def get(
        self,
        sobject: str,
        record_id: str,
        fields: list[str] | None = None,
        *,
        include_deleted: bool = False,
    ) -> dict[str, Any] | None:
        rec = self.records.get(sobject, {}).get(record_id)
        if rec is None or (record_id in self.deleted and not include_deleted):
            return None
        return {f: rec.get(f) for f in fields} if fields else dict(rec)

    def count(self, sobject: str, *, include_deleted: bool = False) -> int:
        table = self.records.get(sobject, {})
        return sum(1 for rid in table if include_deleted or rid not in self.deleted)

    def query(self, soql: str, *, include_deleted: bool = False) -> QueryResult:
        m = _SELECT.match(soql)
        if not m:
            raise SalesforceError(400, "MALFORMED_QUERY", f"unexpected token in: {soql[:40]}")
        cols = [c.strip() for c in m["cols"].split(",")]
        obj = m["obj"]
        if obj not in PREFIX:
            raise SalesforceError(400, "INVALID_TYPE", f"sObject type '{obj}' is not supported.")
        wanted: set[str] | None = None
        if m["field"]:
            wanted = set(re.findall(r"'((?:[^'\\]|\\.)*)'", m["val"]))
        table = self.records.get(obj, {})

        def rows() -> Iterator[dict[str, Any]]:
            for rid, rec in list(table.items()):
                if rid in self.deleted and not include_deleted:
                    continue
                if wanted is not None and str(rec.get(m["field"])) not in wanted:
                    continue
                out: dict[str, Any] = {}
                for col in cols:
                    if "." in col:
                        rel, fld = col.split(".", 1)
                        parent = self.records.get(rel, {}).get(rec.get(f"{rel}Id") or "")
                        out[col] = parent.get(fld) if parent else None
                    elif col == "IsDeleted":
                        out[col] = rid in self.deleted
                    else:
                        out[col] = rec.get(col)
                yield out

        total = sum(1 for _ in rows())
        return QueryResult(total_size=total, rows=rows(), columns=cols)

    def reset(self) -> None:
        self.records.clear()
        self.deleted.clear()


def sf_client(app: Flask, sandbox: SalesforceSandbox, version: str = "64.0") -> Any:
    """simple-salesforce, unmodified, talking to the app in-process with a fresh token."""
    from simple_salesforce import Salesforce

    from sandbox.adapter import in_process_session

    token = sandbox.auth.issue().access_token
    session = in_process_session(INSTANCE_URL, app)
    return Salesforce(session_id=token, instance_url=INSTANCE_URL, version=version, session=session)


def make_app(config: dict[str, Any] | None = None) -> tuple[Flask, SalesforceSandbox, Any]:
    """A Flask app with the events, bulk and seed blueprints over the org store (the real one
    when it is there, else FakeStore)."""
    sandbox = SalesforceSandbox(config)
    store: Any
    try:
        store = store_module.open_store(sandbox)
    except NotImplementedError:  # the real store has not landed in this checkout
        store = FakeStore(sandbox.clock, sandbox.config["USER_ID"])
    sandbox.store = store
    sandbox.auth = auth.TokenRegistry(sandbox)
    sandbox.events = events.EventHub(sandbox)
    sandbox.bulk = bulk.BulkJobs(sandbox)
    store.subscribe(sandbox.events.on_changes)
    app = Flask("test-sf-sandbox")
    app.extensions["sf_sandbox"] = sandbox
    for blueprint in (bulk.bp, events.bp, seed.bp):
        app.register_blueprint(blueprint)
    return app, sandbox, store
