"""`load_json` skips the walk the text already proves needless; its answers must not change."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import json_input
from schemas.json_input import BadJson, check_json, load_json


def walked(raw: str) -> Any:
    """The answer of decoding and always walking everything (what load_json did before)."""
    data = json.loads(raw)
    check_json(data, max_depth=4)
    return data


DOCUMENTS = [
    '{"a": [1, {"b": "c"}]}',  # small and clean: no walk at all
    '{"a": [[[{"b": 1}]]]}',  # five levels: too deep
    '[[[["x"]]]]',  # four levels: fine
    '{"a": "\\u0000"}',  # a NUL, escaped
    '{"\\u0000": 1}',  # in a key
    '{"a": "\\ud800"}',  # a lone surrogate, escaped
    '{"a": "\\ud83d\\ude00"}',  # a surrogate pair: fine
    '{"a": "\\u00e9"}',  # an escape that is fine
    '[{"a": 1}, {"b": 2}, {"c": [3]}, {"d": "\\u0000"}]',  # many brackets, a NUL deep inside
    '[{"a": 1}, {"b": 2}, {"c": [3]}, {"d": "e"}]',  # many brackets, clean, shallow
    '[{"a": 1}, {"b": [[[{"c": "\\u0000"}]]]}]',  # both too deep and a NUL: the walk's order
    '"\\u0000"',  # a bare string
    "3",
]


@pytest.mark.parametrize("raw", DOCUMENTS)
def test_load_json_answers_as_a_full_walk_does(raw: str) -> None:
    try:
        expected: Any = walked(raw)
    except BadJson as exc:
        expected = str(exc)
    try:
        got: Any = load_json(raw.encode(), max_depth=4)
    except BadJson as exc:
        got = str(exc)
    assert got == expected


def test_a_raw_lone_surrogate_in_a_str_document_is_refused() -> None:
    with pytest.raises(BadJson, match="lone surrogate"):
        load_json('{"a": "\ud800"}')


def test_a_small_clean_document_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(json_input, "check_json", lambda *a, **k: calls.append(k["strings"]))
    load_json(b'{"a": [1, {"b": "c"}]}', max_depth=4)
    assert calls == []
    load_json(b'[{"a": 1}, {"b": 2}, {"c": [3]}]', max_depth=4)  # many brackets: depth only
    assert calls == [False]
    load_json(b'{"a": "\\u00e9"}', max_depth=4)  # an escape: strings too
    assert calls == [False, True]
