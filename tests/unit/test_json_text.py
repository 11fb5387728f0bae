"""JSON read at orjson's speed must read as the standard library reads it, where the two differ too."""

import json
import math
from datetime import datetime, timezone

import amqp
import kombu.serialization
import pytest

from chassis import json_text
from services.gateway.rpc import _body_of

TEXTS = [
    '{"amount": 12000, "currency": "EUR", "lines": [{"q": 1.5, "ok": true, "note": null}]}',
    '{"a": 1, "a": 2}',  # a repeated key: the last one
    "123456789012345678901234567890",  # past 64 bits: orjson would give a float
    '{"iban": "DE89370400440532013000", "id": 1234567890123456789012}',
    "-9223372036854775809",
    '"caf\\u00e9 \\ud83d\\ude00"',
    '"\\ud800"',  # a lone surrogate, which orjson refuses
    "[1e400, -1e400]",  # infinities, which orjson refuses
    "NaN",
    "[]",
]


@pytest.mark.parametrize("text", TEXTS)
def test_it_reads_as_the_standard_library_does(text):
    for given in (text, text.encode()):
        got, expected = json_text.loads(given), json.loads(text)
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(got)
        else:
            assert got == expected and type(got) is type(expected)


def test_invalid_json_is_refused_as_the_standard_library_refuses_it():
    with pytest.raises(json.JSONDecodeError):
        json_text.loads('{"open": ')


def reply(result) -> amqp.Message:
    content_type, encoding, body = kombu.serialization.dumps({"result": result, "error": None}, "json")
    return amqp.Message(
        body.encode() if isinstance(body, str) else body, content_type=content_type, content_encoding=encoding
    )


def test_an_rpc_reply_reads_as_kombu_reads_it_typed_values_included():
    accept = {"application/json"}
    plain = {"id": "inv-1", "total": {"amount": 12000, "currency": "EUR"}, "lines": [1, 2.5, None, True]}
    typed = {"sent_at": datetime(2026, 12, 4, 9, 30, tzinfo=timezone.utc)}  # kombu's {"__type__": ...}
    for result in (plain, typed):
        message = reply(result)
        expected = kombu.serialization.loads(message.body, "application/json", "utf-8", accept=accept)
        assert _body_of(message, accept) == expected == {"result": result, "error": None}
    with pytest.raises(kombu.exceptions.ContentDisallowed):  # a type this client does not take
        _body_of(reply(plain), {"application/x-msgpack"})
