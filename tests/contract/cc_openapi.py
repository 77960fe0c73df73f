"""Contract harness: checks Constant Contact V3 traffic against the official OpenAPI spec.

Use it wherever our code talks to Constant Contact (the sandbox tests, the client's tests):

    from tests.contract.cc_openapi import ValidatingSession, validate

    session = ValidatingSession()            # a requests.Session; mount the sandbox on it
    session.get(f"{base}/v3/contacts", ...)  # request and response are both checked

    with session.allow_invalid_request():    # for tests that send a bad request on purpose
        session.get(f"{base}/v3/contacts", params={"limit": 501})

    validate(prepared_request, response)     # the same check, for one exchange

A violation raises `AssertionError` naming the operation (method, spec path, operationId) and the
spec's complaint. Only `/v3/...` traffic is checked: `/_sandbox/...`, `/oauth2/...` and any other
host path are skipped. A `/v3` path the spec does not declare is itself a violation.

The spec is `shared/reference/constantcontact/v3-openapi3.json` (OpenAPI 3.0 conversion of the
official swagger 3.0.178), loaded once per process with these in-memory patches for its known faults
(none of them loosens what a correct client or server may send):

- `servers` becomes the relative `/v3`, so any host (sandbox, api.cc.email) matches.
- csv query parameters (`include`, `status`, `sms_status`, `extra_fields`) are typed as one enum
  value; they take a comma-separated list, so each becomes a string pattern of enum values joined
  by commas.
- `maxItems: 0` (remove_list_memberships ids, tag_ids) is dropped: descriptions say 50/500.
- the integer `choice_id` carries a non-integer example; examples that contradict their type go.
- `readOnly` on `list_memberships`/`taggings` items of POST/PUT contact bodies is dropped: the API
  documents writing them there, and readOnly would make every such request "invalid".
- `JsonImportContact` accepts extra string properties (≤ 255): the `cf:<custom field name>` keys.
- `ListInput`/`ContactList`/`ContactListPutPost` gain `description` (≤ 255), which the developer
  guide documents (lists_post) and the schema forgot.
- OAuth2 security schemes become HTTP bearer, so a request without `Authorization: Bearer` fails
  (openapi-core cannot check OAuth2 schemes).

Strictness decisions:
- Undeclared properties are violations (openapi-core `additional_properties_default_policy=forbid`):
  a typo in a client's body, or a field the sandbox invents, is caught rather than silently ignored.
- Nothing in the spec is nullable, so `null` anywhere in a request or response body is a violation.
  Constant Contact omits unset properties; clients must omit rather than send null.
- Error responses (status >= 400) have no schema in the spec. The status must be one the operation
  declares, or one the gateway can send anywhere (401, 403, 429, 500, 503); the body must be
  Constant Contact's envelope: one `{error_key, error_message}` object for 401 and 429, an array of
  such objects otherwise.
- `text/csv` bodies (contact export files) are checked for content type only.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.templating.paths.exceptions import PathNotFound, PathsNotFound

# The official spec is third-party data, not kept in the repository: it lives in the team's
# shared reference folder. CC_OPENAPI_SPEC names it; otherwise the first `shared/` folder that
# holds it, looking up from the repository (a clone beside the folder, or anywhere below the
# folder's parent), then this machine's /work/shared.
_SHARED_SPEC = Path("shared") / "reference" / "constantcontact" / "v3-openapi3.json"


def _spec_path() -> Path:
    named = os.environ.get("CC_OPENAPI_SPEC")
    if named:
        return Path(named)
    repo = Path(__file__).resolve().parents[2]
    candidates = [parent / _SHARED_SPEC for parent in repo.parents]
    candidates.append(Path("/work") / _SHARED_SPEC)
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        looked = ", ".join(str(path) for path in candidates)
        raise FileNotFoundError(
            "the Constant Contact V3 spec is not beside the repository nor in /work/shared; "
            f"set CC_OPENAPI_SPEC (looked in: {looked})"
        )
    return found


GATEWAY_STATUSES = frozenset({401, 403, 429, 500, 503})
OBJECT_ERROR_STATUSES = frozenset({401, 429})
CSV_PARAMS = ("include", "status", "sms_status", "extra_fields")
WRITABLE_ID_ARRAYS = ("list_memberships", "taggings")


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _example_fits(schema: dict[str, Any]) -> bool:
    example = schema["example"]
    kind = schema.get("type")
    if kind == "integer":
        return isinstance(example, int) and not isinstance(example, bool)
    if kind == "number":
        return isinstance(example, int | float) and not isinstance(example, bool)
    if kind == "boolean":
        return isinstance(example, bool)
    if kind == "string":
        return isinstance(example, str)
    return True


def patch_spec(raw: dict[str, Any]) -> dict[str, Any]:
    """The spec with its known faults fixed (see the module docstring); `raw` is not modified."""
    spec = copy.deepcopy(raw)
    spec["servers"] = [{"url": "/v3"}]
    schemas = spec["components"]["schemas"]

    for item in _walk(spec["paths"]):
        if item.get("in") == "query" and item.get("name") in CSV_PARAMS:
            schema = item.get("schema", {})
            if schema.get("format") == "csv" and "enum" in schema:
                one = "|".join(re.escape(v) for v in schema.pop("enum"))
                schema.pop("format")
                schema["pattern"] = f"^({one})(,({one}))*$"

    for node in _walk(spec):
        if node.get("maxItems") == 0:
            del node["maxItems"]
        if "example" in node and "type" in node and not _example_fits(node):
            del node["example"]

    for name in ("ContactPostRequest", "ContactPutRequest"):
        for prop in WRITABLE_ID_ARRAYS:
            schemas[name]["properties"][prop]["items"].pop("readOnly", None)

    schemas["JsonImportContact"]["additionalProperties"] = {"type": "string", "maxLength": 255}
    for name in ("ListInput", "ContactList", "ContactListPutPost"):
        schemas[name]["properties"]["description"] = {"type": "string", "maxLength": 255}

    for scheme in spec["components"]["securitySchemes"].values():
        if scheme.get("type") == "oauth2":
            scheme.clear()
            scheme.update(type="http", scheme="bearer")
    return spec


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    """The patched spec as a dict (read once per process). Do not modify it."""
    return patch_spec(json.loads(_spec_path().read_text()))


@lru_cache(maxsize=1)
def openapi() -> OpenAPI:
    """The patched spec as an openapi-core app (built once per process)."""
    config = Config(spec_validator_cls=None, additional_properties_default_policy="forbid")
    return OpenAPI.from_dict(spec(), config=config)


def _v3_path(url: str) -> str | None:
    path = urlparse(url).path
    return path if path == "/v3" or path.startswith("/v3/") else None


def _operation(method: str, path: str) -> tuple[str, str, dict[str, Any]] | None:
    """(spec path, operationId, operation) for a `/v3/...` request path, or None if undeclared."""
    short = path[3:] or "/"
    paths = spec()["paths"]
    candidates = []
    for template in paths:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, short):
            candidates.append(template)
    # A literal path (/contacts/sign_up_form) wins over a template (/contacts/{contact_id}).
    candidates.sort(key=lambda t: t.count("{"))
    for template in candidates:
        op = paths[template].get(method.lower())
        if op is not None:
            return template, str(op.get("operationId", "?")), op
    return None


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None:
        parts.append(f"{type(cause).__name__}: {cause}")
        for err in getattr(cause, "schema_errors", []) or []:
            where = "/".join(str(p) for p in err.absolute_path) or "(root)"
            parts.append(f"  at {where}: {err.message}")
        cause = cause.__cause__
    return "\n".join(parts)


def _check_nulls(body: Any, where: str, name: str) -> None:
    if body is None:
        return
    for node in _walk(body):
        for key, value in node.items():
            if value is None:
                raise AssertionError(
                    f"{name}: {where} body has null at {key!r} (nothing is nullable)"
                )
    if isinstance(body, list):
        for item in body:
            if item is None:
                raise AssertionError(
                    f"{name}: {where} body holds a null item (nothing is nullable)"
                )


def _json_or_none(raw: bytes | str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _check_error_envelope(name: str, status: int, op: dict[str, Any], body: bytes) -> None:
    declared = {str(k) for k in op.get("responses", {})}
    if str(status) not in declared and "default" not in declared and status not in GATEWAY_STATUSES:
        raise AssertionError(
            f"{name}: status {status} is not declared for this operation (declares "
            f"{sorted(declared)}); answer with a declared status"
        )
    parsed = _json_or_none(body)

    def is_error(item: Any) -> bool:
        return (
            isinstance(item, dict)
            and isinstance(item.get("error_key"), str)
            and isinstance(item.get("error_message"), str)
        )

    if status in OBJECT_ERROR_STATUSES:
        if not is_error(parsed):
            raise AssertionError(
                f"{name}: a {status} body must be one {{error_key, error_message}} object, "
                f"got {body[:200]!r}"
            )
    elif status != 405 and not (
        isinstance(parsed, list) and parsed and all(is_error(i) for i in parsed)
    ):
        raise AssertionError(
            f"{name}: a {status} body must be an array of {{error_key, error_message}} objects, "
            f"got {body[:200]!r}"
        )


def validate(
    request: requests.PreparedRequest,
    response: requests.Response | None = None,
    *,
    check_request: bool = True,
) -> None:
    """Check one exchange against the spec; AssertionError names the operation and the complaint.

    Requests outside `/v3` are ignored. `response` may be None to check a request alone.
    """
    path = _v3_path(request.url or "")
    if path is None:
        return
    method = (request.method or "GET").upper()
    found = _operation(method, path)
    if found is None:
        raise AssertionError(f"{method} {path}: no such operation in the Constant Contact V3 spec")
    template, op_id, op = found
    name = f"{method} {template} ({op_id})"
    api = openapi()
    if check_request:
        _check_nulls(_json_or_none(request.body), "request", name)
        try:
            api.validate_request(RequestsOpenAPIRequest(request))
        except (PathNotFound, PathsNotFound) as exc:
            raise AssertionError(f"{name}: request path not matched: {exc}") from None
        except Exception as exc:
            raise AssertionError(f"{name}: request violates the spec:\n{_describe(exc)}") from None
    if response is None:
        return
    status = response.status_code
    where = f"{name} -> {status}"
    if status >= 400:
        _check_error_envelope(where, status, op, response.content)
        return
    declared = op.get("responses", {})
    if str(status) not in declared:
        raise AssertionError(f"{where}: status not declared (declares {sorted(declared)})")
    content = declared[str(status)].get("content") or {}
    if not content:
        if response.content:
            raise AssertionError(
                f"{where}: the spec declares no body, got {response.content[:200]!r}"
            )
        return
    mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
    if mimetype not in content:
        raise AssertionError(f"{where}: content type {mimetype!r} not in {sorted(content)}")
    if mimetype != "application/json":
        return
    _check_nulls(_json_or_none(response.content), "response", where)
    try:
        api.validate_response(RequestsOpenAPIRequest(request), RequestsOpenAPIResponse(response))
    except Exception as exc:
        raise AssertionError(f"{where}: response violates the spec:\n{_describe(exc)}") from None


class ValidatingSession(requests.Session):
    """A `requests.Session` that validates every `/v3` request it sends and response it receives.

    `exchanges` counts validated exchanges, so a test can assert the harness actually saw traffic.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # proxies and CA bundles from the environment must not leak in
        self.check_requests = True
        self.exchanges = 0

    @contextmanager
    def allow_invalid_request(self) -> Iterator[None]:
        """Within the block requests may break the spec (responses are still checked)."""
        previous, self.check_requests = self.check_requests, False
        try:
            yield
        finally:
            self.check_requests = previous

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        if _v3_path(request.url or "") is not None:
            validate(request, response, check_request=self.check_requests)
            self.exchanges += 1
        return response


@pytest.fixture
def cc_validating_session() -> Iterator[ValidatingSession]:
    """Pytest fixture: a ValidatingSession (import it into a conftest.py to use it)."""
    session = ValidatingSession()
    yield session
    session.close()
