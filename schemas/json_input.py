"""JSON from outside (admin API bodies, webhooks), parsed so nothing but `BadJson` escapes.

`json.loads` alone lets bad input through as something other than a clean `ValueError`: nesting
deep enough to exhaust the parser's recursion limit (`RecursionError`), `NaN`/`Infinity` and
numbers too large for a float (not JSON, though Python's parser takes them; an `Infinity`
timestamp would overflow later), text that is not UTF-8, and strings holding NUL or lone
surrogates (PostgreSQL and UTF-8 cannot store them). `load_json` refuses each, naming it; the web
layer turns `BadJson` into a 400.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_JSON_DEPTH = 32
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class BadJson(ValueError):
    """The document is not JSON we can take; the message says why."""


class _BadNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _BadNumber(f"{name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _BadNumber(f"the number {text[:40]}, too large to represent")
    return value


def load_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, where: str = "body") -> Any:
    """Decode a JSON document; `BadJson` naming the problem for anything that is not plain JSON."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1]
            raise BadJson(f"The {where} is not UTF-8 (byte {exc.start} is {bad!r}).") from None
    else:
        text = raw
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadJson(f"The {where} is nested too deeply (at most {max_depth} levels).") from None
    except _BadNumber as exc:
        raise BadJson(f"The {where} holds {exc}.") from None
    except ValueError as exc:  # JSONDecodeError; integers past Python's digit limit
        raise BadJson(f"The {where} is not valid JSON: {exc}") from None
    clean_text = "\\u" not in text and _UNSTORABLE.search(text) is None
    if not clean_text or text.count("{") + text.count("[") > max_depth:
        check_json(data, max_depth=max_depth, where=where, strings=not clean_text)
    return data


def check_json(
    data: Any, *, max_depth: int = MAX_JSON_DEPTH, where: str = "body", strings: bool = True
) -> None:
    """Walk decoded JSON without recursion: depth, and text a database can store.

    `load_json` skips what the document's text already proves (the webhook's hot path: walking
    every value of a change event cost more than decoding it). Decoded strings can only hold a
    NUL or a lone surrogate if the text does, raw or as a `\\u` escape (the only way to write
    either in valid JSON): without both, `strings=False` walks for depth alone; and a document
    cannot nest deeper than its count of `{` and `[`, so a small one needs no walk at all.
    """
    stack: list[tuple[Any, str, int]] = [(data, where, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if strings:
                check_text(value, path)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > max_depth:
            raise BadJson(f"The {where} is nested too deeply (at most {max_depth} levels).")
        if isinstance(value, dict):
            for key, item in value.items():
                if strings:
                    check_text(key, f"{path}.{key[:40]}")
                if isinstance(item, (dict, list)) or strings:
                    stack.append((item, f"{path}.{key[:40]}", depth + 1))
        elif strings:
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        else:
            stack.extend(
                (item, f"{path}[{i}]", depth + 1)
                for i, item in enumerate(value)
                if isinstance(item, (dict, list))
            )


def check_text(value: str, where: str) -> None:
    """Refuse a NUL character or a lone surrogate (`BadJson` naming where it is)."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate (\\u{ord(char):04x})"
    raise BadJson(f"{where} holds {what}, which cannot be stored.")
