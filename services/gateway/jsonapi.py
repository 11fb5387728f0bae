"""What the admin and portal JSON APIs share: request bodies validated by pydantic, and an OpenAPI 3.1
document generated from the same table of endpoints that mounts the routes, so the two cannot drift."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

import falcon
from pydantic import BaseModel, ConfigDict, ValidationError

from chassis.errors import Invalid, field_errors


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Query:
    name: str
    description: str = ""
    enum: tuple = ()


# Paging a listing: by cursor (keyset; the page starts where the last ended) or by offset.
AFTER = Query("after", "The next_cursor of the previous page: the page after it, however deep (same filters and "
                       "sort); such a page's total is null, the first page's stands")
OFFSET = Query("offset", "Rows to skip, for page numbers; `after` is cheaper for deep pages")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    name: str  # the RPC it calls (admin) or a name for the operation (portal)
    summary: str
    call: Callable[..., object]  # how the resource turns the request into its call; see each API
    body: type[Body] | None = None
    query: tuple[Query, ...] = ()
    status: int = 200
    content_type: str = "application/json"
    problems: tuple[int, ...] = ()  # statuses it may answer beyond those every operation can (e.g. 429)

    @property
    def keyed(self) -> bool:
        """Takes an Idempotency-Key header (see `idempotency_key`)."""
        return False


IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY.pattern},
    "description": "Send the same key again (e.g. after a timeout) and get the first answer back; nothing "
                   "is done twice. Reusing a key for a different request is a 409."}


def idempotency_key(req, namespace: str) -> str | None:
    """The caller's Idempotency-Key, namespaced so two callers' keys never meet; None without one."""
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise falcon.HTTPBadRequest(title="Invalid Idempotency-Key",
                                    description="1 to 100 letters, digits, '.', '_', ':' or '-'.")
    return f"{namespace}:{key}"


def read_body(req, model: type[Body]) -> dict:
    """The JSON body validated against `model`, or a 415/422 problem that names each bad field."""
    if not (req.content_type or "").startswith("application/json"):
        raise falcon.HTTPUnsupportedMediaType(description="Send a JSON body (Content-Type: application/json).")
    raw = req.bounded_stream.read()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise Invalid("The body is not valid JSON.", body="malformed JSON") from None
    bad = dict(unstorable_text(data))
    if bad:
        raise Invalid("Some fields are not valid.", **bad)
    try:
        return model.model_validate(data).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        raise Invalid("Some fields are not valid.", **field_errors(exc)) from None


def unstorable_text(value, path: str = "") -> list[tuple[str, str]]:
    """(field, reason) for each string holding NUL or an unpaired surrogate: both are valid JSON escapes
    (and URL escapes), but no database text column can store them, so they are refused at the door."""
    if isinstance(value, str):
        if "\x00" in value:
            return [(path or "body", "contains a NUL character")]
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [(path or "body", "contains an unpaired surrogate")]
        return []
    if isinstance(value, dict):
        return [found for key, item in value.items()
                for found in unstorable_text(key, path or "body") + unstorable_text(item, f"{path}.{key}".strip("."))]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in unstorable_text(item, f"{path}.{i}".strip("."))]
    return []


PROBLEM = {"description": "Problem details (RFC 9457)", "content": {
    "application/problem+json": {"schema": {"type": "object", "properties": {
        "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}


def openapi_document(endpoints, prefix: str, info: dict, security_schemes: dict) -> dict:
    components: dict = {}
    paths: dict = {}
    security = [{name: []} for name in security_schemes]
    for ep in endpoints:
        slug = ep.path.strip("/").replace("/", "_").replace("{", "").replace("}", "") or "root"
        success = {"description": "Success", "content": {ep.content_type: {"schema": {}}}} if ep.status != 204 \
            else {"description": "Done, nothing to return"}
        operation: dict = {
            "operationId": f"{ep.name}_{ep.method.lower()}_{slug}",
            "summary": ep.summary,
            "security": security,
            "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                           for name in _path_names(ep.path)],
            "responses": {str(ep.status): success, **{str(code): {"$ref": "#/components/responses/Problem"}
                                                      for code in sorted(_problems(ep))}},
        }
        if ep.keyed:
            operation["parameters"].append(IDEMPOTENCY_HEADER)
        for q in ep.query:
            schema = {"type": "string", **({"enum": list(q.enum)} if q.enum else {})}
            operation["parameters"].append({"name": q.name, "in": "query", "required": False, "schema": schema,
                                            "description": q.description})
        if ep.body is not None:
            schema = ep.body.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[ep.body.__name__] = schema
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}}}}
        paths.setdefault(prefix + ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": security_schemes,
                       "responses": {"Problem": PROBLEM}},
    }


def _problems(ep: Endpoint) -> set[int]:
    """The error statuses an operation can answer: bad query or path text (400), no or a bad credential
    (401), not found in the caller's scope (404), a business rule (409), invalid input (422); a change may
    be refused as cross-site or without its CSRF token (403); a body may be too large (413) or not JSON
    (415)."""
    codes = {400, 401, 404, 409, 422, *ep.problems}
    if ep.method != "GET":
        codes.add(403)
    if ep.body is not None:
        codes.update((413, 415))
    return codes


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


class OpenApi:
    public = True

    def __init__(self, document: dict):
        self.document = document

    def on_get(self, req, resp):
        resp.media = self.document
        resp.set_header("Cache-Control", "public, max-age=300")
