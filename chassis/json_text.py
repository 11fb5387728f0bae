"""JSON text read as the standard library reads it, at orjson's speed where the two agree.

orjson (Rust) reads the dashboard's 8 KB reply in about half the time `json.loads` takes, and kombu's
reader takes longer still; that matters where every page reads JSON (PostgreSQL's json columns of the
dashboard's one row, the RPC reply). The two differ on a few
inputs, and there the standard library reads it: a number of 19 digits or more (orjson turns one past
64 bits into a float, losing digits), and anything orjson refuses (NaN, Infinity, a lone surrogate).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

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
