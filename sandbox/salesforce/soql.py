"""SOQL: a tokenizer, a recursive-descent parser, and a compiler to SQLite over the org's tables.

Supported (the subset the product and its users need, with Salesforce's errors for the rest):
`SELECT field, Parent.Field, Parent.Parent.Field, MailingAddress | COUNT() FROM Object [alias]
[WHERE cond] [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]`, where `cond`
combines comparisons `= != <> < > <= >=`, `[NOT] IN (...)` with literals or a semi-join
`(SELECT IdField FROM Object WHERE ...)`, `[NOT] LIKE`, `INCLUDES/EXCLUDES` (multi-select
picklists), with `AND`/`OR`/`NOT` and parentheses.

Semantics, checked against Salesforce's documentation and kept on purpose:
- Keywords, object and field names are case-insensitive; results use canonical API names.
- String comparisons (=, !=, IN, LIKE, ORDER BY) ignore case, as Salesforce's collation does;
  SQLite's NOCASE folds ASCII only, so non-ASCII letters compare exactly.
- Nulls: `x = null` / `x != null` test for null (on a checkbox they mean false / true, as
  Salesforce documents). `x != 'a'` also matches records whose x is null; `x NOT IN ('a')` does
  not (a reported SOQL gotcha; Salesforce's reference is silent), nor does a NOT IN semi-join.
  `<`, `>`, `LIKE` never match null. `NOT (...)` is two-valued: it matches exactly the records
  its operand does not match, nulls included. A filter on a parent field treats a missing parent
  as nulls (`Account.Name = null` matches contacts without an account), as documented.
- `AND` and `OR` cannot be mixed at one level without parentheses (MALFORMED_QUERY), as in SOQL.
- Date constants (TODAY, LAST_N_DAYS:n, THIS_MONTH, ...) are ranges in the org's time zone, which
  for the sandbox is UTC; weeks start on Sunday. Dates compare with date literals only and
  datetimes with datetime literals only (INVALID_FIELD otherwise), as in Salesforce.
- 15-character ids in filters are accepted and widened to 18; malformed ids give
  INVALID_QUERY_FILTER_OPERATOR "invalid ID field".
- OFFSET is capped at 2,000 (NUMBER_OUTSIDE_VALID_RANGE).
- A base64 field (ContentVersion.VersionData) reads as the REST path of its bytes,
  `/services/data/vNN.N/sobjects/<Object>/<Id>/<Field>`, never as the content; it can be neither
  filtered nor sorted.
- ContentDocumentLink must be filtered (in a top-level AND) by `=` on one Id, or `IN` a list or
  semi-join, on ContentDocumentId, LinkedEntityId or Id: Salesforce's implementation restriction.
- Polymorphic relationships (Task.Who, Task.What, ...) are not traversed (INVALID_FIELD); select
  the id field instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.salesforce.schema import ID_TYPES, NUMBER_TYPES, FieldDef, OrgSchema, SObject

MAX_OFFSET = 2000
DEFAULT_API_VERSION = "66.0"  # the version base64 paths name when the caller gives none
LINK_RESTRICTION = (
    "Implementation restriction: ContentDocumentLink requires a filter by a single Id on "
    "ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using the IN "
    "operator."
)
_LINK_FILTER_FIELDS = frozenset({"contentdocumentid", "linkedentityid", "id"})


class SoqlError(Exception):
    """A query Salesforce would refuse: the REST layer turns it into a 400 with this code."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


# --------------------------------------------------------------------------- tokens

KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "INCLUDES",
        "EXCLUDES",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "NULL",
        "TRUE",
        "FALSE",
        "GROUP",
        "HAVING",
        "WITH",
        "FOR",
        "USING",
        "TYPEOF",
    }
)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\dT])
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+))
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),.:])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Token:
    kind: str  # ident, keyword, string, number, date, datetime, op, punct, eof
    text: str
    pos: int
    value: Any = None


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == "'":
                raise _error_at(text, pos, "MALFORMED_QUERY", "unterminated string literal")
            raise _error_at(text, pos, "MALFORMED_QUERY", f"unexpected token: '{text[pos]}'")
        kind = m.lastgroup or ""
        raw = m.group()
        if kind != "ws":
            if kind == "ident" and raw.upper() in KEYWORDS:
                tokens.append(Token("keyword", raw.upper(), pos))
            elif kind == "string":
                tokens.append(Token("string", raw, pos, _unescape(text, pos, raw[1:-1])))
            else:
                tokens.append(Token(kind, raw, pos))
        pos = m.end()
    tokens.append(Token("eof", "<EOF>", len(text)))
    return tokens


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _unescape(text: str, pos: int, body: str) -> str:
    # LIKE's \_ and \% survive as escapes (marked \x00) so the pattern step can tell them apart.
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt in ("_", "%"):
                out.append("\x00" + nxt)
            else:
                raise _error_at(
                    text,
                    pos,
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{body}'. Illegal character sequence "
                    f"'\\{nxt}' in string literal.",
                )
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _error_at(text: str, pos: int, code: str, detail: str) -> SoqlError:
    """Salesforce's query error layout: the offending line, a caret, Row/Column, then the detail."""
    line_no = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start : end if end != -1 else len(text)]
    col = pos - start + 1
    caret = " " * (col - 1) + "^"
    return SoqlError(code, f"\n{line}\n{caret}\nERROR at Row:{line_no}:Column:{col}\n{detail}")


# --------------------------------------------------------------------------- syntax tree


@dataclass
class Path:
    parts: list[str]
    pos: int


@dataclass
class Literal:
    kind: str  # string, number, null, boolean, date, datetime, dateconst
    value: Any
    pos: int
    n: int | None = None  # LAST_N_DAYS:n


@dataclass
class Comparison:
    path: Path
    op: str  # = != < > <= >= LIKE INCLUDES EXCLUDES
    value: Literal


@dataclass
class InList:
    path: Path
    negate: bool
    values: list[Literal]


@dataclass
class SemiJoin:
    path: Path
    negate: bool
    query: Query


@dataclass
class BoolOp:
    op: str  # AND / OR
    items: list[Any]


@dataclass
class NotOp:
    item: Any


@dataclass
class OrderItem:
    path: Path
    descending: bool
    nulls: str | None  # FIRST / LAST / None (default)


@dataclass
class Query:
    sobject: str
    sobject_pos: int
    alias: str | None
    fields: list[Path]
    count: bool
    where: Any
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_kw(self, *words: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.text in words

    def unexpected(self, tok: Token | None = None) -> SoqlError:
        tok = tok or self.tok
        return _error_at(self.text, tok.pos, "MALFORMED_QUERY", f"unexpected token: '{tok.text}'")

    def expect_kw(self, word: str) -> Token:
        if not self.at_kw(word):
            raise self.unexpected()
        return self.next()

    def expect_punct(self, ch: str) -> Token:
        if not (self.tok.kind == "punct" and self.tok.text == ch):
            raise self.unexpected()
        return self.next()

    def at_punct(self, ch: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == ch

    # grammar
    def parse(self) -> Query:
        query = self.query()
        if self.tok.kind != "eof":
            raise self.unexpected()
        return query

    def query(self) -> Query:
        self.expect_kw("SELECT")
        fields: list[Path] = []
        count = False
        if self.tok.kind == "ident" and self.tok.text.upper() == "COUNT" and self._peek_punct("("):
            self.next()
            self.expect_punct("(")
            if not self.at_punct(")"):
                raise _error_at(
                    self.text,
                    self.tok.pos,
                    "MALFORMED_QUERY",
                    "the sandbox supports COUNT() only, not COUNT(field) or other aggregates",
                )
            self.expect_punct(")")
            count = True
        else:
            fields.append(self.path())
            while self.at_punct(","):
                self.next()
                fields.append(self.path())
        self.expect_kw("FROM")
        if self.tok.kind != "ident":
            raise self.unexpected()
        obj = self.next()
        alias = None
        if self.tok.kind == "ident":
            alias = self.next().text
        where = None
        if self.at_kw("WHERE"):
            self.next()
            where = self.condition()
        order: list[OrderItem] = []
        if self.at_kw("ORDER"):
            self.next()
            self.expect_kw("BY")
            order.append(self.order_item())
            while self.at_punct(","):
                self.next()
                order.append(self.order_item())
        limit = offset = None
        if self.at_kw("LIMIT"):
            self.next()
            limit = self.integer()
        if self.at_kw("OFFSET"):
            self.next()
            offset = self.integer()
        if self.at_kw("LIMIT") and limit is None:
            self.next()
            limit = self.integer()
        return Query(obj.text, obj.pos, alias, fields, count, where, order, limit, offset)

    def _peek_punct(self, ch: str) -> bool:
        nxt = self.tokens[self.i + 1]
        return nxt.kind == "punct" and nxt.text == ch

    def integer(self) -> int:
        tok = self.tok
        if tok.kind != "number" or not tok.text.isdigit():
            raise self.unexpected()
        self.next()
        return int(tok.text)

    def path(self) -> Path:
        tok = self.tok
        if tok.kind != "ident":
            raise self.unexpected()
        self.next()
        parts = [tok.text]
        while self.at_punct("."):
            self.next()
            if self.tok.kind != "ident":
                raise self.unexpected()
            parts.append(self.next().text)
        return Path(parts, tok.pos)

    def order_item(self) -> OrderItem:
        path = self.path()
        desc = False
        if self.at_kw("ASC", "DESC"):
            desc = self.next().text == "DESC"
        nulls = None
        if self.at_kw("NULLS"):
            self.next()
            if not self.at_kw("FIRST", "LAST"):
                raise self.unexpected()
            nulls = self.next().text
        return OrderItem(path, desc, nulls)

    def condition(self) -> Any:
        items = [self.unary()]
        op: str | None = None
        while self.at_kw("AND", "OR"):
            tok = self.tok
            if op is not None and tok.text != op:
                # SOQL refuses `a AND b OR c`: the grouping must be spelled out.
                raise self.unexpected(tok)
            op = tok.text
            self.next()
            items.append(self.unary())
        return items[0] if op is None else BoolOp(op, items)

    def unary(self) -> Any:
        if self.at_kw("NOT"):
            self.next()
            return NotOp(self.unary())
        if self.at_punct("("):
            self.next()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Any:
        path = self.path()
        tok = self.tok
        if tok.kind == "op":
            self.next()
            op = "!=" if tok.text == "<>" else tok.text
            return Comparison(path, op, self.literal())
        negate = False
        if self.at_kw("NOT"):
            self.next()
            negate = True
            if not self.at_kw("IN", "LIKE"):
                raise self.unexpected()
        if self.at_kw("IN"):
            self.next()
            self.expect_punct("(")
            if self.at_kw("SELECT"):
                sub = self.query()
                self.expect_punct(")")
                return SemiJoin(path, negate, sub)
            values = [self.literal()]
            while self.at_punct(","):
                self.next()
                values.append(self.literal())
            self.expect_punct(")")
            return InList(path, negate, values)
        if self.at_kw("LIKE"):
            self.next()
            cmp = Comparison(path, "LIKE", self.literal())
            return NotOp(cmp) if negate else cmp
        if self.at_kw("INCLUDES", "EXCLUDES"):
            op = self.next().text
            self.expect_punct("(")
            values = [self.literal()]
            while self.at_punct(","):
                self.next()
                values.append(self.literal())
            self.expect_punct(")")
            return Comparison(path, op, Literal("list", values, values[0].pos))
        raise self.unexpected()

    def literal(self) -> Literal:
        tok = self.tok
        if tok.kind == "string":
            self.next()
            return Literal("string", tok.value, tok.pos)
        if tok.kind == "number":
            self.next()
            text = tok.text
            num: int | float = float(text) if "." in text else int(text)
            return Literal("number", num, tok.pos)
        if tok.kind == "date":
            self.next()
            try:
                day = date.fromisoformat(tok.text)
            except ValueError as exc:
                raise _error_at(self.text, tok.pos, "MALFORMED_QUERY", str(exc)) from None
            return Literal("date", day, tok.pos)
        if tok.kind == "datetime":
            self.next()
            try:
                when = datetime.fromisoformat(tok.text.replace("Z", "+00:00"))
            except ValueError as exc:
                raise _error_at(self.text, tok.pos, "MALFORMED_QUERY", str(exc)) from None
            return Literal("datetime", when.astimezone(UTC), tok.pos)
        if tok.kind == "keyword" and tok.text in ("NULL", "TRUE", "FALSE"):
            self.next()
            if tok.text == "NULL":
                return Literal("null", None, tok.pos)
            return Literal("boolean", tok.text == "TRUE", tok.pos)
        if tok.kind == "ident":
            name = tok.text.upper()
            self.next()
            n = None
            if self.at_punct(":"):
                self.next()
                n = self.integer()
            known = name in N_CONSTANTS if n is not None else name in DATE_CONSTANTS
            if not known:
                raise self.unexpected(tok)
            return Literal("dateconst", name, tok.pos, n)
        raise self.unexpected()


def parse(text: str) -> Query:
    """Parse one SOQL statement; SoqlError MALFORMED_QUERY when it is not one."""
    if len(text) > 100_000:
        raise SoqlError("MALFORMED_QUERY", "Query is too long: more than 100000 characters")
    return Parser(text).parse()


# --------------------------------------------------------------------------- date constants

DATE_CONSTANTS = frozenset(
    {
        "YESTERDAY",
        "TODAY",
        "TOMORROW",
        "LAST_WEEK",
        "THIS_WEEK",
        "NEXT_WEEK",
        "LAST_MONTH",
        "THIS_MONTH",
        "NEXT_MONTH",
        "LAST_90_DAYS",
        "NEXT_90_DAYS",
        "THIS_QUARTER",
        "LAST_QUARTER",
        "NEXT_QUARTER",
        "THIS_YEAR",
        "LAST_YEAR",
        "NEXT_YEAR",
    }
)
N_CONSTANTS = frozenset(
    {
        "LAST_N_DAYS",
        "NEXT_N_DAYS",
        "N_DAYS_AGO",
        "LAST_N_WEEKS",
        "NEXT_N_WEEKS",
        "LAST_N_MONTHS",
        "NEXT_N_MONTHS",
        "LAST_N_YEARS",
        "NEXT_N_YEARS",
    }
)


def _month_start(day: date, shift: int) -> date:
    index = day.year * 12 + day.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


def date_range(name: str, n: int | None, now: datetime) -> tuple[date, date]:
    """The [start, end) days a date constant covers, for `now` in the org's time zone (UTC)."""
    today = now.astimezone(UTC).date()
    day = timedelta(days=1)
    week_start = today - timedelta(days=(today.weekday() + 1) % 7)  # Sunday
    month = _month_start(today, 0)
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year = date(today.year, 1, 1)
    k = n or 0
    table: dict[str, tuple[date, date]] = {
        "YESTERDAY": (today - day, today),
        "TODAY": (today, today + day),
        "TOMORROW": (today + day, today + 2 * day),
        "LAST_WEEK": (week_start - 7 * day, week_start),
        "THIS_WEEK": (week_start, week_start + 7 * day),
        "NEXT_WEEK": (week_start + 7 * day, week_start + 14 * day),
        "LAST_MONTH": (_month_start(today, -1), month),
        "THIS_MONTH": (month, _month_start(today, 1)),
        "NEXT_MONTH": (_month_start(today, 1), _month_start(today, 2)),
        "LAST_90_DAYS": (today - 90 * day, today + day),
        "NEXT_90_DAYS": (today + day, today + 91 * day),
        "THIS_QUARTER": (quarter, _month_start(quarter, 3)),
        "LAST_QUARTER": (_month_start(quarter, -3), quarter),
        "NEXT_QUARTER": (_month_start(quarter, 3), _month_start(quarter, 6)),
        "THIS_YEAR": (year, date(today.year + 1, 1, 1)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), year),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
        "LAST_N_DAYS": (today - k * day, today + day),
        "NEXT_N_DAYS": (today + day, today + (k + 1) * day),
        "N_DAYS_AGO": (today - k * day, today - (k - 1) * day),
        "LAST_N_WEEKS": (week_start - 7 * k * day, week_start),
        "NEXT_N_WEEKS": (week_start + 7 * day, week_start + 7 * (k + 1) * day),
        "LAST_N_MONTHS": (_month_start(today, -k), month),
        "NEXT_N_MONTHS": (_month_start(today, 1), _month_start(today, k + 1)),
        "LAST_N_YEARS": (date(today.year - k, 1, 1), year),
        "NEXT_N_YEARS": (date(today.year + 1, 1, 1), date(today.year + k + 1, 1, 1)),
    }
    return table[name]


# ------------------------------------------------------------------ values shared with the store


def format_datetime(when: datetime) -> str:
    """Salesforce's printed UTC form, which also sorts correctly as text."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_B62_LOWER_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_RE = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


_CASE_BITS = str.maketrans(
    {**{c: "1" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}, **{c: "0" for c in _B62_LOWER_DIGITS}}
)


def id_suffix(id15: str) -> str:
    """Salesforce's case-safe 3-character checksum of a 15-character id.

    Each 5-character chunk gives 5 bits (bit i set when character i is an upper-case letter),
    and each 5-bit number picks one character of A-Z0-5.
    """
    bits = id15.translate(_CASE_BITS)
    return (
        _ID_CHARS[int(bits[4::-1], 2)]
        + _ID_CHARS[int(bits[9:4:-1], 2)]
        + _ID_CHARS[int(bits[14:9:-1], 2)]
    )


@functools.lru_cache(maxsize=65536)
def normalize_id(value: str) -> str | None:
    """An 18-character id from a 15- or 18-character one; None when the text is not a valid id."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    if len(value) == 15:
        return value + id_suffix(value)
    if value[15:].upper() != id_suffix(value[:15]):
        return None
    return value[:15] + id_suffix(value[:15])


# --------------------------------------------------------------------------- compiling


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class _Join:
    alias: str
    sql: str
    parent: str | None  # alias it hangs from (None: the base table)


@dataclass
class Compiled:
    """A query ready to run: SQL for the rows, SQL for the count, and a row builder."""

    sobject: str
    columns: list[str]
    sql: str
    params: list[Any]
    count_sql: str
    count_params: list[Any]
    is_count: bool
    limit: int | None
    offset: int
    build: Callable[[tuple[Any, ...]], dict[str, Any]]

    def total(self, matched: int) -> int:
        size = max(0, matched - self.offset)
        return size if self.limit is None else min(size, self.limit)


class _Node:
    """How to assemble one (possibly nested) record dict from a flat SQL row."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []  # (key, spec)
        self.keys: dict[str, int] = {}
        self.null_index: int | None = None  # index of the parent's Id: None row → whole node None

    def child(self, key: str) -> _Node:
        if key in self.keys:
            spec = self.entries[self.keys[key]][1]
            assert isinstance(spec, _Node)
            return spec
        node = _Node()
        self.keys[key] = len(self.entries)
        self.entries.append((key, node))
        return node

    def add(self, key: str, spec: Any) -> bool:
        if key in self.keys:
            return False
        self.keys[key] = len(self.entries)
        self.entries.append((key, spec))
        return True

    def compile(self) -> Callable[[tuple[Any, ...]], Any]:
        parts: list[tuple[str, Callable[[tuple[Any, ...]], Any]]] = []
        for key, spec in self.entries:
            if isinstance(spec, _Node):
                parts.append((key, spec.compile()))
            elif isinstance(spec, tuple) and spec[0] == "col":
                idx, conv = spec[1], spec[2]
                if conv is None:
                    parts.append((key, _getter(idx)))
                else:
                    parts.append((key, _conv_getter(idx, conv)))
            else:  # ("address", [(key, idx, conv)])
                parts.append((key, _address_getter(spec[1])))
        null_index = self.null_index

        cols = [spec for _k, spec in self.entries if isinstance(spec, tuple) and spec[0] == "col"]
        if null_index is None and len(cols) == len(self.entries) and cols:
            # The common flat select: one zip over a contiguous slice of the row, then booleans.
            keys = [k for k, _ in self.entries]
            lo = cols[0][1]
            hi = lo + len(cols)
            if [spec[1] for spec in cols] == list(range(lo, hi)):
                fixes = [(k, spec[1], spec[2]) for k, spec in self.entries if spec[2] is not None]
                if not fixes:
                    return lambda row: dict(zip(keys, row[lo:hi], strict=True))

                def build_flat(row: tuple[Any, ...]) -> Any:
                    rec = dict(zip(keys, row[lo:hi], strict=True))
                    for key, idx, conv in fixes:
                        value = row[idx]
                        if value is not None:
                            rec[key] = conv(value)
                    return rec

                return build_flat

        def build(row: tuple[Any, ...]) -> Any:
            if null_index is not None and row[null_index] is None:
                return None
            return {key: get(row) for key, get in parts}

        return build


def _getter(idx: int) -> Callable[[tuple[Any, ...]], Any]:
    return lambda row: row[idx]


def _conv_getter(idx: int, conv: Callable[[Any], Any]) -> Callable[[tuple[Any, ...]], Any]:
    def get(row: tuple[Any, ...]) -> Any:
        value = row[idx]
        return None if value is None else conv(value)

    return get


def _address_getter(
    parts: list[tuple[str, int, Callable[[Any], Any] | None]],
) -> Callable[[tuple[Any, ...]], Any]:
    def get(row: tuple[Any, ...]) -> Any:
        values = {key: row[idx] for key, idx, _ in parts}
        if all(v is None for v in values.values()):
            return None
        return values

    return get


def converter(fd: FieldDef) -> Callable[[Any], Any] | None:
    # SQLite already hands back int and float; only booleans (stored 0/1) need converting.
    return bool if fd.type == "boolean" else None


class Compiler:
    """Turns a parsed Query into SQLite SQL against the store's one-table-per-sObject layout."""

    def __init__(
        self,
        schema: OrgSchema,
        now: datetime,
        query_text: str,
        include_deleted: bool = False,
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        self.schema = schema
        self.now = now
        self.text = query_text
        self.include_deleted = include_deleted
        self.api_version = api_version
        self._alias_seq = 0

    def error(self, pos: int, code: str, detail: str) -> SoqlError:
        return _error_at(self.text, pos, code, detail)

    def compile(self, query: Query) -> Compiled:
        obj = self._object(query)
        self._check_restrictions(obj, query)
        scope = _Scope(self, obj, query.alias)
        columns: list[str] = []
        select_sql: list[str] = []
        root = _Node()
        seen: set[str] = set()
        for path in query.fields:
            fd, alias, owner, canon = scope.resolve(path)
            key = ".".join(canon).lower()
            if key in seen:
                raise self.error(
                    path.pos, "MALFORMED_QUERY", f"duplicate field selected: {'.'.join(canon)}"
                )
            seen.add(key)
            columns.append(".".join(canon))
            node = root
            rel_alias = "t0"
            for rel_name, rel_join in zip(canon[:-1], scope.chain(path), strict=True):
                node = node.child(rel_name)
                rel_alias = rel_join
                if node.null_index is None:
                    node.null_index = len(select_sql)
                    select_sql.append(f'{rel_alias}."Id"')
            del rel_alias
            if fd.type == "address":
                parts = []
                for comp_name, comp_key in zip(fd.components, fd.component_keys, strict=True):
                    comp = owner.fields[comp_name]
                    parts.append((comp_key, len(select_sql), converter(comp)))
                    select_sql.append(scope.column_sql(comp, alias))
                node.add(canon[-1], ("address", parts))
            else:
                node.add(canon[-1], ("col", len(select_sql), converter(fd)))
                select_sql.append(scope.column_sql(fd, alias))

        params: list[Any] = []
        where_parts: list[str] = []
        if not self.include_deleted:
            where_parts.append('t0."IsDeleted" = 0')
        if query.where is not None:
            where_parts.append(self._cond(scope, query.where, False, params))
        where_sql = (" WHERE " + " AND ".join(where_parts)) if where_parts else ""
        where_joins = scope.joins_sql(scope.used_in_where)

        order_sql = ""
        if query.order:
            items = []
            for item in query.order:
                fd, alias, _owner, _canon = scope.resolve(item.path)
                if not fd.sortable:
                    raise self.error(
                        item.path.pos,
                        "INVALID_FIELD",
                        f"field '{fd.name}' can not be sorted in a query call",
                    )
                col = scope.column_sql(fd, alias)
                if fd.is_text:
                    col += " COLLATE NOCASE"  # computed columns carry no collation of their own
                nulls = item.nulls or ("LAST" if item.descending else "FIRST")
                items.append(f"{col} {'DESC' if item.descending else 'ASC'} NULLS {nulls}")
            order_sql = " ORDER BY " + ", ".join(items)

        offset = query.offset or 0
        if offset > MAX_OFFSET:
            raise SoqlError(
                "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}"
            )
        limit_sql = ""
        if query.limit is not None or offset:
            limit_sql = f" LIMIT {query.limit if query.limit is not None else -1} OFFSET {offset}"

        table = f"{q(obj.name)} AS t0"
        count_sql = f"SELECT COUNT(*) FROM {table}{where_joins}{where_sql}"
        if query.count:
            return Compiled(
                obj.name, [], "", [], count_sql, params, True, query.limit, offset, lambda r: {}
            )
        all_joins = scope.joins_sql(None)
        sql = (
            f"SELECT {', '.join(select_sql)} FROM {table}{all_joins}{where_sql}{order_sql}"
            f"{limit_sql}"
        )
        return Compiled(
            obj.name,
            columns,
            sql,
            list(params),
            count_sql,
            params,
            False,
            query.limit,
            offset,
            root.compile(),
        )

    def _object(self, query: Query) -> SObject:
        obj = self.schema.sobject(query.sobject)
        if obj is None:
            raise self.error(
                query.sobject_pos,
                "INVALID_TYPE",
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name. Please "
                "reference "
                "your WSDL or the describe call for the appropriate names.",
            )
        return obj

    def _check_restrictions(self, obj: SObject, query: Query) -> None:
        """Queries Salesforce refuses for one object whatever their syntax."""
        if obj.name != "ContentDocumentLink":
            return
        where = query.where
        conjuncts = where.items if isinstance(where, BoolOp) and where.op == "AND" else [where]
        names = {obj.name.lower(), *([query.alias.lower()] if query.alias else [])}
        for node in conjuncts:
            if not isinstance(node, Comparison | InList | SemiJoin):
                continue
            parts = [p.lower() for p in node.path.parts]
            if parts[-1] not in _LINK_FILTER_FIELDS or (len(parts) == 2 and parts[0] not in names):
                continue
            if len(parts) > 2:
                continue
            if isinstance(node, Comparison):
                if node.op == "=" and node.value.kind == "string":
                    return
            elif not node.negate:
                return
        raise SoqlError("MALFORMED_QUERY", LINK_RESTRICTION)

    # conditions ---------------------------------------------------------------
    def _cond(self, scope: _Scope, node: Any, neg: bool, params: list[Any]) -> str:
        if isinstance(node, BoolOp):
            joiner = node.op
            if neg:
                joiner = "OR" if joiner == "AND" else "AND"
            return (
                "("
                + f" {joiner} ".join(self._cond(scope, i, neg, params) for i in node.items)
                + ")"
            )
        if isinstance(node, NotOp):
            return self._cond(scope, node.item, not neg, params)
        sql, includes_null, col = self._leaf(scope, node, params)
        if not neg:
            return sql
        if includes_null:
            return f"({col} IS NOT NULL AND NOT {sql})"
        return f"({col} IS NULL OR NOT {sql})"

    def _leaf(self, scope: _Scope, node: Any, params: list[Any]) -> tuple[str, bool, str]:
        """SQL for one predicate, whether it matches nulls, and the column expression."""
        fd, alias, _owner, _canon = scope.resolve(node.path, where=True)
        if not fd.filterable:
            raise self.error(
                node.path.pos,
                "INVALID_FIELD",
                f"field '{fd.name}' can not be filtered in a query call",
            )
        col = scope.column_sql(fd, alias)
        nocase = " COLLATE NOCASE" if fd.is_text else ""

        if isinstance(node, SemiJoin):
            return self._semi_join(scope, node, fd, col, params)
        if isinstance(node, InList):
            values = [self._value(fd, lit) for lit in node.values]
            has_null = any(v is None for v in values)
            concrete = [v for v in values if v is not None]
            pieces = []
            if concrete:
                params.extend(concrete)
                pieces.append(f"{col}{nocase} IN ({', '.join('?' * len(concrete))})")
            if has_null:
                pieces.append(f"{col} IS NULL")
            sql = "(" + " OR ".join(pieces) + ")" if pieces else "0"
            if node.negate:
                # Unlike != and NOT (...), NOT IN never matches a null field.
                return f"({col} IS NOT NULL AND NOT {sql})", False, col
            return sql, has_null, col

        op = node.op
        lit = node.value
        if op in ("INCLUDES", "EXCLUDES"):
            if fd.type != "multipicklist":
                raise self.error(
                    node.path.pos,
                    "INVALID_FIELD",
                    f"{op.lower()} operator is only valid on multipicklist fields",
                )
            pieces = []
            for item in lit.value:
                for option in str(item.value).split(";"):
                    params.append(option.strip())
                    pieces.append(f"(';' || {col} || ';') LIKE ('%;' || ? || ';%')")
            sql = "(" + " OR ".join(pieces) + ")"
            if op == "EXCLUDES":
                return f"({col} IS NULL OR NOT {sql})", True, col
            return sql, False, col
        if op == "LIKE":
            if lit.kind != "string" or not (fd.is_text or fd.type in ID_TYPES):
                raise self.error(
                    lit.pos,
                    "INVALID_FIELD",
                    f"invalid operator on field '{fd.name}' or value of filter criterion for "
                    "LIKE must be a string",
                )
            params.append(_like_pattern(lit.value))
            return f"{col} LIKE ? ESCAPE '\\'", False, col
        if lit.kind == "dateconst":
            return self._date_range(fd, lit, op, col, params)
        value = self._value(fd, lit)
        if value is None and fd.type == "boolean":
            value = 0  # Salesforce reads `Checkbox = null` as `= false`, and `!= null` as `= true`
        if value is None:
            if op == "=":
                return f"{col} IS NULL", True, col
            if op == "!=":
                return f"{col} IS NOT NULL", False, col
            return "0", False, col
        params.append(value)
        if op == "=":
            return f"{col} = ?{nocase}", False, col
        if op == "!=":
            return f"{col} IS NOT ?{nocase}", True, col
        return f"{col} {op} ?{nocase}", False, col

    def _semi_join(
        self, scope: _Scope, node: SemiJoin, fd: FieldDef, col: str, params: list[Any]
    ) -> tuple[str, bool, str]:
        if fd.type not in ID_TYPES:
            raise self.error(
                node.path.pos,
                "INVALID_FIELD",
                f"The left operand of a semi join must be an ID or reference field: '{fd.name}'",
            )
        sub = node.query
        if sub.count or len(sub.fields) != 1 or sub.order or sub.limit is not None or sub.offset:
            raise self.error(
                node.path.pos,
                "MALFORMED_QUERY",
                "a semi join sub-select must select exactly one Id or reference field, with no "
                "ORDER BY, LIMIT or OFFSET",
            )
        if isinstance(sub.where, SemiJoin) or _has_semi_join(sub.where):
            raise self.error(
                node.path.pos,
                "MALFORMED_QUERY",
                "Nesting of semi join sub-selects is not supported",
            )
        inner_obj = self._object(sub)
        self._check_restrictions(inner_obj, sub)
        inner = Compiler(
            self.schema, self.now, self.text, include_deleted=False, api_version=self.api_version
        )
        inner._alias_seq = self._alias_seq + 100
        inner_scope = _Scope(inner, inner_obj, sub.alias, alias_base="s")
        ifd, ialias, _o, _c = inner_scope.resolve(sub.fields[0])
        if ifd.type not in ID_TYPES:
            raise self.error(
                sub.fields[0].pos,
                "INVALID_FIELD",
                f"The selected field '{ifd.name}' in a semi join sub-select must be an Id or "
                "reference field",
            )
        icol = inner_scope.column_sql(ifd, ialias)
        where = [f'{inner_scope.base}."IsDeleted" = 0', f"{icol} IS NOT NULL"]
        if sub.where is not None:
            where.append(inner._cond(inner_scope, sub.where, False, params))
        sql = (
            f"SELECT {icol} FROM {q(inner_obj.name)} AS {inner_scope.base}"
            f"{inner_scope.joins_sql(None)} WHERE {' AND '.join(where)}"
        )
        if node.negate:
            return f"({col} IS NOT NULL AND {col} NOT IN ({sql}))", False, col
        return f"{col} IN ({sql})", False, col

    def _date_range(
        self, fd: FieldDef, lit: Literal, op: str, col: str, params: list[Any]
    ) -> tuple[str, bool, str]:
        if fd.type not in ("date", "datetime"):
            raise self.error(
                lit.pos,
                "INVALID_FIELD",
                f"value of filter criterion for field '{fd.name}' must be of type "
                f"{_type_word(fd)} and should not be enclosed in quotes",
            )
        lo_day, hi_day = date_range(lit.value, lit.n, self.now)
        if fd.type == "date":
            lo, hi = lo_day.isoformat(), hi_day.isoformat()
        else:
            lo = format_datetime(datetime(lo_day.year, lo_day.month, lo_day.day, tzinfo=UTC))
            hi = format_datetime(datetime(hi_day.year, hi_day.month, hi_day.day, tzinfo=UTC))
        if op == "=":
            params.extend([lo, hi])
            return f"({col} >= ? AND {col} < ?)", False, col
        if op == "!=":
            params.extend([lo, hi])
            return f"({col} IS NULL OR {col} < ? OR {col} >= ?)", True, col
        bound = {"<": lo, "<=": hi, ">": hi, ">=": lo}[op]
        sql_op = {"<": "<", "<=": "<", ">": ">=", ">=": ">="}[op]
        params.append(bound)
        return f"{col} {sql_op} ?", False, col

    def _value(self, fd: FieldDef, lit: Literal) -> Any:
        """The SQL parameter for a literal compared with `fd`, or INVALID_FIELD on a type clash."""
        if lit.kind == "null":
            return None
        kind = fd.type
        if kind in ID_TYPES:
            if lit.kind != "string":
                raise self._type_error(fd, lit)
            norm = normalize_id(lit.value)
            if norm is None:
                raise self.error(
                    lit.pos, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}"
                )
            return norm
        if kind == "boolean":
            if lit.kind != "boolean":
                raise self._type_error(fd, lit)
            return 1 if lit.value else 0
        if kind in NUMBER_TYPES:
            if lit.kind != "number":
                raise self._type_error(fd, lit)
            return lit.value
        if kind == "date":
            if lit.kind != "date":
                raise self._type_error(fd, lit)
            return lit.value.isoformat()
        if kind == "datetime":
            if lit.kind != "datetime":
                raise self._type_error(fd, lit)
            return format_datetime(lit.value)
        if lit.kind != "string":
            raise self._type_error(fd, lit)
        return lit.value.replace("\x00", "\\")

    def _type_error(self, fd: FieldDef, lit: Literal) -> SoqlError:
        quoted = (
            " and should not be enclosed in quotes"
            if fd.type
            not in (
                "string",
                "textarea",
                "picklist",
                "email",
                "phone",
                "url",
                "id",
                "reference",
                "multipicklist",
            )
            else ""
        )
        return self.error(
            lit.pos,
            "INVALID_FIELD",
            f"value of filter criterion for field '{fd.name}' must be of type {_type_word(fd)}"
            f"{quoted}",
        )


def _type_word(fd: FieldDef) -> str:
    return {
        "datetime": "dateTime",
        "date": "date",
        "boolean": "boolean",
        "int": "integer",
        "double": "double",
        "currency": "double",
        "percent": "double",
        "id": "id",
        "reference": "id",
    }.get(fd.type, "string")


def _has_semi_join(node: Any) -> bool:
    if isinstance(node, SemiJoin):
        return True
    if isinstance(node, BoolOp):
        return any(_has_semi_join(i) for i in node.items)
    if isinstance(node, NotOp):
        return _has_semi_join(node.item)
    return False


def _like_pattern(value: str) -> str:
    """SOQL LIKE → SQLite LIKE with `\\` as the escape for literal % and _."""
    out = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\x00":
            out.append("\\" + value[i + 1])
            i += 2
            continue
        if ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


class _Scope:
    """Resolves field paths against one FROM object, adding a LEFT JOIN per parent relationship."""

    def __init__(
        self, compiler: Compiler, obj: SObject, alias: str | None, alias_base: str = "t"
    ) -> None:
        self.c = compiler
        self.obj = obj
        self.alias = alias.lower() if alias else None
        self.base = f"{alias_base}0"
        self.alias_base = alias_base
        self.joins: dict[tuple[str, ...], _Join] = {}
        self.objects: dict[str, str] = {self.base: obj.name}  # table alias -> sObject
        self.used_in_where: set[str] = set()
        self._chains: dict[int, list[str]] = {}

    def resolve(self, path: Path, where: bool = False) -> tuple[FieldDef, str, SObject, list[str]]:
        parts = list(path.parts)
        if len(parts) > 1 and (
            (self.alias and parts[0].lower() == self.alias)
            or (
                parts[0].lower() == self.obj.name.lower()
                and self.obj.relationship(parts[0]) is None
            )
        ):
            parts = parts[1:]
        obj = self.obj
        alias = self.base
        canon: list[str] = []
        chain: list[str] = []
        key: tuple[str, ...] = ()
        for rel in parts[:-1]:
            ref = obj.relationship(rel)
            if ref is None or ref.expr is not None:
                raise self.c.error(
                    path.pos,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{rel}' in field path. If you are attempting "
                    "to use a custom relationship, be sure to append the '__r' after the custom "
                    "relationship name. Please reference your WSDL or the describe call for the "
                    "appropriate names.",
                )
            if len(ref.reference_to) > 1:
                raise self.c.error(
                    path.pos,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{rel}' in field path: the sandbox does not "
                    f"follow polymorphic relationships ({'/'.join(ref.reference_to)}); select "
                    f"{ref.name} and query the parent by its id.",
                )
            parent = self.c.schema.sobject(ref.reference_to[0])
            if parent is None:
                raise self.c.error(
                    path.pos,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{rel}' in field path: the sandbox org has "
                    f"no {'/'.join(ref.reference_to)} records to join.",
                )
            key = (*key, ref.relationship_name or rel)
            join = self.joins.get(key)
            if join is None:
                self.c._alias_seq += 1
                jalias = f"{self.alias_base}j{self.c._alias_seq}"
                join = _Join(
                    jalias,
                    f" LEFT JOIN {q(parent.name)} AS {jalias}"
                    f' ON {jalias}."Id" = {alias}.{q(ref.name)}',
                    alias if alias != self.base else None,
                )
                self.joins[key] = join
                self.objects[jalias] = parent.name
            alias = join.alias
            chain.append(alias)
            if where:
                self.used_in_where.add(alias)
            canon.append(ref.relationship_name or rel)
            obj = parent
        fd = obj.field(parts[-1])
        if fd is None:
            raise self.c.error(
                path.pos,
                "INVALID_FIELD",
                f"No such column '{parts[-1]}' on entity '{obj.name}'. If you are attempting to "
                "use a custom field, be sure to append the '__c' after the custom field name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
            )
        if where and fd.type == "address":
            raise self.c.error(
                path.pos, "INVALID_FIELD", f"field '{fd.name}' can not be filtered in a query call"
            )
        canon.append(fd.name)
        self._chains[id(path)] = chain
        return fd, alias, obj, canon

    def chain(self, path: Path) -> list[str]:
        return self._chains.get(id(path), [])

    def column_sql(self, fd: FieldDef, alias: str) -> str:
        if fd.type == "base64":
            # Salesforce answers with where to fetch the bytes, not with the bytes.
            prefix = f"/services/data/v{self.c.api_version}/sobjects/{self.objects[alias]}/"
            column = f"{alias}.{q(fd.name)}"
            return (
                f"(CASE WHEN {column} IS NULL THEN NULL ELSE '{prefix}' || {alias}.\"Id\""
                f" || '/{fd.name}' END)"
            )
        if fd.expr is not None:
            return "(" + fd.expr.replace("{t}", alias) + ")"
        return f"{alias}.{q(fd.name)}"

    def joins_sql(self, only: set[str] | None) -> str:
        wanted: set[str] = set()
        by_alias = {j.alias: j for j in self.joins.values()}
        for j in self.joins.values():
            if only is None or j.alias in only:
                cur: _Join | None = j
                while cur is not None:
                    wanted.add(cur.alias)
                    cur = by_alias.get(cur.parent) if cur.parent else None
        return "".join(j.sql for j in self.joins.values() if j.alias in wanted)


def compile_query(
    schema: OrgSchema,
    text: str,
    now: datetime,
    include_deleted: bool = False,
    api_version: str = DEFAULT_API_VERSION,
) -> Compiled:
    """Parse and compile a SOQL statement; SoqlError with Salesforce's code when it is refused.

    `api_version` is the version named in the paths base64 fields read as.
    """
    query = parse(text)
    return Compiler(schema, now, text, include_deleted, api_version).compile(query)
