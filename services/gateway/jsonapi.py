"""What the admin and portal JSON APIs share: request bodies validated by pydantic, and an OpenAPI 3.1
document generated from the same table of endpoints that mounts the routes, so the two cannot drift."""
from __future__ import annotations

import json
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


def read_body(req, model: type[Body]) -> dict:
    """The JSON body validated against `model`, or a 415/422 problem that names each bad field."""
    if not (req.content_type or "").startswith("application/json"):
        raise falcon.HTTPUnsupportedMediaType(description="Send a JSON body (Content-Type: application/json).")
    raw = req.bounded_stream.read()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise Invalid("The body is not valid JSON.", body="malformed JSON") from None
    try:
        return model.model_validate(data).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        raise Invalid("Some fields are not valid.", **field_errors(exc)) from None


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
            "responses": {str(ep.status): success, **{code: {"$ref": "#/components/responses/Problem"}
                                                      for code in ("401", "404", "409", "422")}},
        }
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


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


class OpenApi:
    def __init__(self, document: dict):
        self.document = document

    def on_get(self, req, resp):
        resp.media = self.document
        resp.set_header("Cache-Control", "public, max-age=300")
