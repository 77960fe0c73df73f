"""JSON bodies of webhooks, parsed so that no body can raise anything but `BadJson` (a 400).

`json.loads` alone lets three kinds of bad input through as something other than a clean
`ValueError`: nesting deep enough to exhaust the parser's recursion limit (`RecursionError`),
`NaN`/`Infinity` (not JSON, though Python's parser takes them; an `Infinity` timestamp would
overflow later), and text that is not UTF-8. `load_json` names each.
"""

from __future__ import annotations

import json
from typing import Any


class BadJson(ValueError):
    """The body is not a JSON document we can take; the message says why."""


def _no_constants(name: str) -> Any:
    raise BadJson(f"{name} is not valid JSON")


def load_json(body: bytes | str) -> Any:
    """Parse a JSON body; `BadJson` naming the problem for anything that is not plain JSON."""
    try:
        return json.loads(body, parse_constant=_no_constants)
    except BadJson:
        raise
    except RecursionError:
        raise BadJson("nested too deeply") from None
    except UnicodeDecodeError:
        raise BadJson("not UTF-8 text") from None
    except ValueError as exc:  # JSONDecodeError; integers past Python's digit limit
        raise BadJson(str(exc)) from None
