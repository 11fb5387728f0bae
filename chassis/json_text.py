"""JSON text read as the standard library reads it, and messages written as kombu writes them, at
orjson's speed where the two agree.

orjson (Rust) reads the dashboard's 8 KB reply in about half the time `json.loads` takes, and kombu's
reader takes longer still; that matters where every page reads JSON (PostgreSQL's json columns of the
dashboard's one row, the RPC reply). The two differ on a few
inputs, and there the standard library reads it: a number of 19 digits or more (orjson turns one past
64 bits into a float, losing digits), and anything orjson refuses (NaN, Infinity, a lone surrogate).

Writing the dashboard's 13 KB reply takes orjson a tenth of the time kombu's writer takes. Dates
and times, and dataclasses, orjson hands to kombu's own encoder (its typed `{"__type__": ...}`
values, or its refusal); anything orjson refuses (a key that is not a string, an integer past 64
bits, a lone surrogate) is written by kombu whole. Two differences are left, neither in what the
services send, whose ids are text and whose money and counts are integers: a UUID is written as its
text, where kombu tags it, and a float that is not a number as `null`, where kombu writes `NaN`
(which is not JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import kombu.serialization
import kombu.utils.json
import orjson
from kombu.exceptions import EncodeError

# Every digit read as "0" and anything else as a space: a run of 19 zeros is then a number that long
# (or digits inside a string, which only costs that text the slower reader). Two passes in C, where
# a regular expression took as long as the parse it guards.
_AS_DIGITS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_NUMBER = b"0" * 19


def loads(text: str | bytes) -> Any:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _LONG_NUMBER not in raw.translate(_AS_DIGITS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


# Handed to kombu's encoder rather than written by orjson's own rules (see the module docstring).
_TO_KOMBU = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_kombu_value = kombu.utils.json.JSONEncoder().default
_kombu_dumps = cast(Callable[[Any], str], kombu.utils.json.dumps)


def dumps(data: Any) -> bytes:
    """`data` as kombu's JSON serializer writes it (the same values, without its spaces), in UTF-8."""
    try:
        return orjson.dumps(data, default=_kombu_value, option=_TO_KOMBU)
    except orjson.JSONEncodeError:
        return _kombu_dumps(data).encode()


def message_body(data: object, serializer: str) -> tuple[str, str, bytes | str]:
    """kombu's `dumps`, typed: (content type, content encoding, body). JSON, the services' serializer,
    is written by `dumps`, and refused as kombu refuses it."""
    if serializer == "json":
        try:
            return "application/json", "utf-8", dumps(data)
        except (TypeError, ValueError) as exc:
            raise EncodeError(exc) from exc
    kombu_dumps = cast(Callable[[object, str], tuple[str, str, bytes | str]], kombu.serialization.dumps)
    return kombu_dumps(data, serializer)
