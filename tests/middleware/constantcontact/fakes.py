"""Hand-built HTTP answers and a scripted session for the Constant Contact client's unit tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from middleware.constantcontact.client import ConstantContactClient, RetryPolicy
from middleware.constantcontact.limiter import NoLimiter
from middleware.constantcontact.oauth import StaticTokenSource

BASE = "https://api.cc.test/v3"
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def response(status: int, body: Any = None, *, content: bytes | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    if content is None:
        content = b"" if body is None else json.dumps(body).encode()
    r._content = content
    r.headers["Content-Type"] = "application/json"
    return r


@dataclass
class Sent:
    method: str
    url: str
    params: dict[str, Any] | None
    data: bytes | None
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path.removeprefix("/v3")

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)

    def json(self) -> Any:
        return json.loads(self.data or b"null")


@dataclass
class ScriptedSession:
    """Answers from a queue (a Response, an exception to raise, or a callable of the request)."""

    answers: list[Any] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        sent = Sent(method, url, kwargs.get("params"), kwargs.get("data"), dict(kwargs["headers"]))
        self.sent.append(sent)
        assert kwargs.get("timeout"), "every call carries a timeout"
        answer = self.answers.pop(0)
        if callable(answer) and not isinstance(answer, requests.Response):
            answer = answer(sent)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(
    session: Any, *, token_source: Any = None, limiter: Any = None, sleep: Callable | None = None
) -> ConstantContactClient:
    import random

    return ConstantContactClient(
        BASE,
        session,
        token_source or StaticTokenSource("tok-1"),
        limiter or NoLimiter(),
        now=lambda: NOW,
        sleep=sleep if sleep is not None else Sleeps(),
        monotonic=lambda: 0.0,
        retry=RetryPolicy(),
        rng=random.Random(7),
    )
