"""What the admin and portal JSON APIs share: request bodies validated by pydantic, and an OpenAPI 3.1
document generated from the same table of endpoints that mounts the routes, so the two cannot drift."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Callable
from zoneinfo import available_timezones

import falcon
from babel import localedata
from babel.numbers import list_currencies
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from chassis.errors import Invalid, ServiceError, field_errors
from chassis.fields import COUNTRIES
from chassis.money import check_currency


class Body(BaseModel):
    """A request body: exactly its fields, each of exactly its JSON type (strict: no "1" for 1, no 1 for
    true), so what is stored is what was sent. A field typed `X | None` takes null (it clears the value);
    an optional field typed `X` may be left out but not sent as null."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


NO_NUL = "^[^\\u0000]*$"  # text a database can store: every string field and parameter excludes NUL
NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"  # ...and a required one has a character that is not space
DAY = "^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"  # 1900-01-01 to 2999-12-31
MOMENT = DAY[:-1] + "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"


def Text(max_length: int, *, required: bool = False, **kwargs: Any) -> Any:
    """A text field of at most `max_length` characters; `required` ones may not be blank."""
    at_least: dict[str, Any] = {"min_length": 1} if required else {}
    return Field(max_length=max_length, pattern=NOT_BLANK if required else NO_NUL, **at_least, **kwargs)


PHONE = (
    "A number a phone could dial (libphonenumber): with its country code (+49 30 1234567), or as dialled in "
    "the client's country (else its language's). Kept as typed; a number stored before is not checked again"
)
PHONE_MAX = 50
# A phone number: text as `Text` is, documented as `format: phone`, which the service checks.
Phone = Annotated[
    str,
    Field(max_length=PHONE_MAX, pattern=NO_NUL),
    WithJsonSchema({"type": "string", "maxLength": PHONE_MAX, "pattern": NO_NUL, "format": "phone"}),
]


def _day(value: date) -> date:
    if not 1900 <= value.year <= 2999:
        raise ValueError("a date from 1900-01-01 to 2999-12-31")
    return value


def _moment(value: str) -> str:
    if not re.fullmatch(MOMENT, value):
        raise ValueError("a date and time with its offset, like 2026-11-23T14:30:00Z")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("a date and time with its offset, like 2026-11-23T14:30:00Z") from None
    return value


Day = Annotated[date, AfterValidator(_day), WithJsonSchema({"type": "string", "format": "date", "pattern": DAY})]
Moment = Annotated[
    str, AfterValidator(_moment), WithJsonSchema({"type": "string", "format": "date-time", "pattern": MOMENT})
]


def _known(values, what: str):
    allowed = frozenset(values)

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"a known {what}")
        return value

    return check


def _currencies() -> list[str]:
    found = []
    for code in sorted(list_currencies()):
        try:
            found.append(check_currency(code))
        except Invalid:
            pass
    return found


CURRENCIES = _currencies()
LOCALES = sorted(localedata.locale_identifiers())
TIMEZONES = sorted(available_timezones())
COUNTRY_CODES = ["", *sorted(COUNTRIES)]
Currency = Annotated[
    str, AfterValidator(_known(CURRENCIES, "ISO 4217 currency")), WithJsonSchema({"x-shared": "Currency"})
]
Locale = Annotated[str, AfterValidator(_known(LOCALES, "locale")), WithJsonSchema({"x-shared": "Locale"})]
TimeZone = Annotated[str, AfterValidator(_known(TIMEZONES, "IANA time zone")), WithJsonSchema({"x-shared": "TimeZone"})]
Country = Annotated[
    str, AfterValidator(_known(COUNTRY_CODES, "ISO 3166 country, or empty")), WithJsonSchema({"x-shared": "Country"})
]


def _one_of(values: list[str]) -> str:
    """A pattern matching exactly these values: as exact as an enum, without a list of hundreds of values
    that a client (or a test generator) would walk one by one."""
    return "^(" + "|".join(re.sub(r"([+.])", r"\\\1", value) for value in values) + ")$"


SHARED_SCHEMAS = {
    "Currency": {
        "type": "string",
        "pattern": _one_of(CURRENCIES),
        "examples": ["EUR", "USD"],
        "description": "An ISO 4217 currency code",
    },
    "Locale": {
        "type": "string",
        "pattern": _one_of(LOCALES),
        "examples": ["en_US", "de_DE"],
        "description": "A locale (CLDR), like en_US or de_DE",
    },
    "TimeZone": {
        "type": "string",
        "pattern": _one_of(TIMEZONES),
        "examples": ["Europe/Paris"],
        "description": "An IANA time zone, like Europe/Paris",
    },
    "Country": {
        "type": "string",
        "pattern": _one_of(COUNTRY_CODES),
        "examples": ["DE", "FR"],
        "description": "An ISO 3166 alpha-2 country code, like DE; empty: not set",
    },
}


class BadQuery(ServiceError):
    """A query parameter the route cannot take (400, services/gateway/app.py)."""

    title = "Invalid query parameter"


@dataclass(frozen=True)
class Query:
    """A query parameter as the document declares it and the gateway parses it: a string (of at most
    `max_length` characters, one of `enum` if given), an integer from `minimum` to `maximum`, or a date.
    Anything else, or the parameter sent twice, is a 400 that names it."""

    name: str
    description: str = ""
    enum: tuple = ()
    kind: str = "string"  # string | integer | date
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    pattern: str | None = None  # a string matching it

    def schema(self) -> dict:
        if self.kind == "integer":
            return {
                "type": "integer",
                **({"minimum": self.minimum} if self.minimum is not None else {}),
                **({"maximum": self.maximum} if self.maximum is not None else {}),
            }
        if self.kind == "date":
            return {"type": "string", "format": "date", "pattern": DAY}
        if self.enum:
            return {"type": "string", "enum": list(self.enum)}
        if self.pattern:
            return {"type": "string", "pattern": self.pattern}
        return {"type": "string", "pattern": NO_NUL, **({"maxLength": self.max_length} if self.max_length else {})}

    def parse(self, raw: str):
        if self.kind == "integer":
            if not re.fullmatch(r"-?[0-9]{1,18}", raw):
                raise BadQuery(f"{self.name} is a whole number.", fields={self.name: "not an integer"})
            value = int(raw)
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise BadQuery(
                    f"{self.name} is from {self.minimum} to {self.maximum}.", fields={self.name: "out of range"}
                )
            return value
        if self.kind == "date":
            try:
                if not re.fullmatch(DAY, raw):
                    raise ValueError
                return date.fromisoformat(raw).isoformat()
            except ValueError:
                raise BadQuery(f"{self.name} is a date like 2026-11-23.", fields={self.name: "not a date"}) from None
        if self.pattern and not re.fullmatch(self.pattern, raw):
            raise BadQuery(f"{self.name} is not one this API knows.", fields={self.name: "unknown value"})
        if self.enum and raw not in self.enum:
            raise BadQuery(f"{self.name} is one of {', '.join(self.enum)}.", fields={self.name: "unknown value"})
        if self.max_length is not None and len(raw) > self.max_length:
            raise BadQuery(f"{self.name} is at most {self.max_length} characters.", fields={self.name: "too long"})
        return raw


def Limit(most: int, default: int) -> Query:
    return Query("limit", f"How many, 1 to {most} (default {default})", kind="integer", minimum=1, maximum=most)


OFFSET = Query(
    "offset",
    "Rows to skip, for page numbers; `after` is cheaper for deep pages",
    kind="integer",
    minimum=0,
    maximum=10**9,
)


def read_query(req, queries: tuple[Query, ...]) -> dict:
    """The declared query parameters, parsed; undeclared ones are ignored."""
    values = {}
    for q in queries:
        raw = req.params.get(q.name)
        if raw is None:
            continue
        if not isinstance(raw, str):
            raise BadQuery(f"Send {q.name} once.", fields={q.name: "sent more than once"})
        values[q.name] = q.parse(raw)
    return values


# Paging a listing: by cursor (keyset; the page starts where the last ended) or by offset.
AFTER = Query(
    "after",
    "The next_cursor of the previous page: the page after it, however deep (same filters and "
    "sort), and with an offset that many rows further; such a page's total is null, the first page's stands; a "
    "cursor no page of this listing gave is a 404",
    max_length=500,
)


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
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY.pattern},
    "description": "Send the same key again (e.g. after a timeout) and get the first answer back; nothing "
    "is done twice. Reusing a key for a different request is a 409.",
}


def idempotency_key(req, namespace: str) -> str | None:
    """The caller's Idempotency-Key, namespaced so two callers' keys never meet; None without one."""
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise falcon.HTTPBadRequest(
            title="Invalid Idempotency-Key", description="1 to 100 letters, digits, '.', '_', ':' or '-'."
        )
    return f"{namespace}:{key}"


def read_body(req, model: type[Body]) -> dict:
    """The JSON body validated against `model`, or a 415/422 problem that names each bad field."""
    if not (req.content_type or "").startswith("application/json"):
        raise falcon.HTTPUnsupportedMediaType(description="Send a JSON body (Content-Type: application/json).")
    raw = req.bounded_stream.read() or b"{}"
    try:  # 2.0 is the integer 2, as JSON Schema counts numbers; 2.5 stays a number no integer field takes
        data = json.loads(raw, parse_float=_number)
    except ValueError:
        raise Invalid("The body is not valid JSON.", body="malformed JSON") from None
    bad = dict(unstorable_text(data))
    if bad:
        raise Invalid("Some fields are not valid.", fields=bad)
    try:
        return model.model_validate_json(json.dumps(data)).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        raise Invalid("Some fields are not valid.", fields=field_errors(exc) | worded_patterns(exc)) from None


# What each of our text patterns asks for, in words: pydantic's own message quotes the regular expression.
PATTERN_WORDS = {NOT_BLANK: "must not be empty or only spaces", NO_NUL: "must not contain a NUL character"}


def worded_patterns(exc: ValidationError) -> dict[str, str]:
    return {
        ".".join(str(p) for p in err["loc"]) or "body": PATTERN_WORDS[err["ctx"]["pattern"]]
        for err in exc.errors()
        if err["type"] == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") in PATTERN_WORDS
    }


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def valid_email(value: str) -> str:
    """An address email can be sent to, as email_validator writes it; special-use domains (.test, .local)
    are addresses too (they never leave a test mail server)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        ).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


Email = Annotated[
    str, AfterValidator(valid_email), WithJsonSchema({"type": "string", "format": "email", "maxLength": 254})
]


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
        return [
            found
            for key, item in value.items()
            for found in unstorable_text(key, path or "body") + unstorable_text(item, f"{path}.{key}".strip("."))
        ]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in unstorable_text(item, f"{path}.{i}".strip("."))]
    return []


PROBLEM = {
    "description": "Problem details (RFC 9457)",
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
        }
    },
}


PATH_ID = {"type": "string", "minLength": 1, "pattern": NO_NUL}


def openapi_document(endpoints, prefix: str, info: dict, security_schemes: dict) -> dict:
    components: dict = {}
    paths: dict = {}
    security: list[dict[str, list[str]]] = [{name: []} for name in security_schemes]
    for ep in endpoints:
        slug = ep.path.strip("/").replace("/", "_").replace("{", "").replace("}", "") or "root"
        success = (
            {"description": "Success", "content": {ep.content_type: {"schema": {}}}}
            if ep.status != 204
            else {"description": "Done, nothing to return"}
        )
        operation: dict = {
            "operationId": f"{ep.name}_{ep.method.lower()}_{slug}",
            "summary": ep.summary,
            "security": [] if getattr(ep, "public", False) else security,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": dict(PATH_ID)} for name in _path_names(ep.path)
            ],
            "responses": {
                str(ep.status): success,
                **{str(code): {"$ref": "#/components/responses/Problem"} for code in sorted(_problems(ep))},
            },
        }
        if ep.keyed:
            operation["parameters"].append(IDEMPOTENCY_HEADER)
        for q in ep.query:
            operation["parameters"].append(
                {"name": q.name, "in": "query", "required": False, "schema": q.schema(), "description": q.description}
            )
        if ep.body is not None:
            schema = ep.body.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[ep.body.__name__] = schema
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}}},
            }
        paths.setdefault(prefix + ep.path, {})[ep.method.lower()] = operation
    if any(ep.body is not None for ep in endpoints):
        components.update({name: schema for name, schema in SHARED_SCHEMAS.items() if _uses(components, name)})
    return {
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {
            "schemas": {name: exact(schema) for name, schema in components.items()},
            "securitySchemes": security_schemes,
            "responses": {"Problem": PROBLEM},
        },
    }


def _uses(components: dict, name: str) -> bool:
    return f'"x-shared": "{name}"' in json.dumps(components)


def exact(schema):
    """A pydantic JSON schema as the server enforces it: `X | None` as a type list with "null" (pydantic
    writes an anyOf), no `default: null` on a field that does not take null, no titles."""
    if isinstance(schema, list):
        return [exact(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "x-shared" in schema:  # one of SHARED_SCHEMAS (pydantic cannot point at a schema it did not make)
        return {"$ref": f"#/components/schemas/{schema['x-shared']}"}
    schema = {
        key: exact(value) if key not in ("enum", "const", "default", "examples") else value
        for key, value in schema.items()
        if key != "title"
    }
    branches = schema.get("anyOf")
    if isinstance(branches, list) and {"type": "null"} in branches and len(branches) == 2:
        other = next(branch for branch in branches if branch != {"type": "null"})
        if isinstance(other.get("type"), str) and "$ref" not in other and "x-shared" not in other:
            del schema["anyOf"]
            schema = {**other, **schema, "type": [other["type"], "null"]}
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
    if "default" in schema and schema["default"] is None:
        del schema["default"]  # left out is not null: a field left out is left as it is (or its default)
    return schema


def _problems(ep: Endpoint) -> set[int]:
    """The error statuses an operation can answer: bad query or path text (400), no or a bad credential
    (401), not found in the caller's scope (404), a business rule (409), invalid input (422); a change may
    be refused as cross-site or without its CSRF token (403); a body may be too large (413) or not JSON
    (415); a service that is down, crashed or slow is a 503, 502 or 504, anything unforeseen a 500."""
    codes = {400, 401, 404, 409, 422, 500, 502, 503, 504, *ep.problems}
    if ep.method != "GET":
        codes.add(403)
    if ep.body is not None:
        codes.update((413, 415))
    return codes


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


class Routed:
    """A resource serving some methods of one path: any other method is a 405 whose Allow header lists
    exactly the methods the document has for the path (OPTIONS answers with the same list)."""

    methods: tuple[str, ...] = ()

    def on_options(self, req, resp, **params):
        resp.status = 204
        resp.set_header("Allow", ", ".join([*self.methods, "OPTIONS"]))

    def not_allowed(self, req, resp, **params):
        raise falcon.HTTPMethodNotAllowed(list(self.methods))


for _method in falcon.COMBINED_METHODS:  # falcon's own 405 would list every responder a class has
    if _method not in ("OPTIONS", "WEBSOCKET"):
        setattr(Routed, f"on_{_method.lower()}", Routed.not_allowed)


class OpenApi:
    public = True

    def __init__(self, document: dict):
        self.document = document

    def on_get(self, req, resp):
        resp.media = self.document
        resp.set_header("Cache-Control", "public, max-age=300")
