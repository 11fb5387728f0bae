"""The published events as a contract: docs/events.asyncapi.yaml says, for every (type, version), what
an event's envelope and data look like. `validate(event)` checks one event against it, so tests can
prove that what the services really publish is what the document promises.

Plain Python: the AsyncAPI document is read as YAML, and each message's payload (JSON Schema draft-07,
the AsyncAPI schema format) is checked with the `jsonschema` library; `$ref`s resolve inside the
document itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "events.asyncapi.yaml"
_BASE = "urn:billing-portal:events"  # the document's own id: local "#/components/..." refs resolve against it


@dataclass(frozen=True)
class Message:
    """One documented event type and version."""

    type: str
    version: int
    service: str  # the publisher: its exchange is <service>.events
    message: str  # the name under components/messages, e.g. InvoicePaidV1
    validator: Draft7Validator


class EventContract:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        registry = Registry().with_resource(_BASE, Resource.from_contents(document, default_specification=DRAFT7))
        messages = document.get("components", {}).get("messages", {})
        self.messages: dict[tuple[str, int], Message] = {}
        for channel in document.get("channels", {}).values():
            exchange = channel["bindings"]["$ref"]
            exchange = _resolve(document, exchange)["amqp"]["exchange"]["name"]
            service = exchange.removesuffix(".events")
            for ref in channel.get("messages", {}).values():
                name = ref["$ref"].rsplit("/", 1)[-1]
                event_type, version = pinned(messages[name])
                if (event_type, version) in self.messages:
                    raise ValueError(f"{event_type} v{version} is documented twice")
                validator = Draft7Validator(
                    {"$ref": f"{_BASE}#/components/messages/{name}/payload"},
                    registry=registry,
                    format_checker=Draft7Validator.FORMAT_CHECKER,
                )
                self.messages[(event_type, version)] = Message(event_type, version, service, name, validator)

    def documented(self) -> set[tuple[str, int]]:
        return set(self.messages)

    def validate(self, event: object) -> list[str]:
        """Everything wrong with one event (an envelope dict as published), as readable lines; [] if valid."""
        if not isinstance(event, dict):
            return [f"not an object: {type(event).__name__}"]
        key: tuple[Any, Any] = (event.get("type"), event.get("version"))
        message = self.messages.get(key)
        if message is None:
            return [f"undocumented event type/version {key[0]!r} v{key[1]!r}: add it to {DOCUMENT.name}"]
        errors = sorted(message.validator.iter_errors(event), key=lambda e: list(e.absolute_path))
        return [f"{_path(e)}: {e.message}" for e in errors]


def pinned(message: dict[str, Any]) -> tuple[str, int]:
    """The (type, version) a message's payload pins with `const`: the key the contract is looked up by."""
    for part in message.get("payload", {}).get("allOf", []):
        props = part.get("properties", {})
        if "const" in props.get("type", {}) and "const" in props.get("version", {}):
            return props["type"]["const"], props["version"]["const"]
    raise ValueError(f"message {message.get('name')!r} does not pin its type and version with const")


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _path(error: ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(event)"


def load(path: Path | str = DOCUMENT) -> EventContract:
    with open(path, encoding="utf-8") as f:
        return EventContract(yaml.safe_load(f))


@functools.lru_cache(maxsize=1)
def default() -> EventContract:
    return load()


def validate(event: object) -> list[str]:
    """Check one event against docs/events.asyncapi.yaml; [] means it is a documented, valid event."""
    return default().validate(event)
