"""JSON read at orjson's speed must read as the standard library reads it, and messages written at its
speed as kombu writes them, where the two differ too."""

import json
import math
from collections import OrderedDict, namedtuple
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from enum import IntEnum

import amqp
import kombu.serialization
import pytest
import sqlalchemy as sa

from chassis import json_text
from chassis.json_text import message_body
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


class Level(IntEnum):
    HIGH = 3


class Label(str):
    pass


@dataclass
class Point:
    x: int


VALUES = [
    {"amount": 12000, "currency": "EUR", "lines": [{"q": 1.5, "ok": True, "note": None}], "tags": ("a", "b")},
    {"text": "café 😀 \u2028 \x00", "empty": {}, "nothing": []},
    # kombu's typed values, which orjson hands back to kombu's encoder
    {"at": datetime(2026, 12, 4, 9, 30, tzinfo=timezone.utc), "on": date(2026, 12, 4), "time": time(9, 30)},
    {"rate": Decimal("0.19"), "raw": b"bytes", "binary": b"\xff\x00"},
    # what orjson refuses, written by kombu whole
    {1: "a key that is not text"},
    {"big": 2**70, "small": -(2**70)},
    "\ud800",
    # subclasses, written as their base type by both
    {"level": Level.HIGH, "label": Label("x"), "ordered": OrderedDict(b=1, a=2), "pair": namedtuple("P", "x y")(1, 2)},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_a_message_is_written_with_the_values_kombu_writes(value):
    content_type, encoding, body = message_body(value, "json")
    _, _, kombus = kombu.serialization.dumps(value, "json")
    assert (content_type, encoding) == ("application/json", "utf-8")
    read = kombu.serialization.loads(body, content_type, encoding)
    assert read == kombu.serialization.loads(kombus, content_type, encoding)
    assert type(read) is type(kombu.serialization.loads(kombus, content_type, encoding))


def test_what_kombu_cannot_write_is_refused_as_kombu_refuses_it():
    for value in ({"point": Point(1)}, {"set": {1, 2}}, object()):
        with pytest.raises(kombu.exceptions.EncodeError):
            kombu.serialization.dumps(value, "json")
        with pytest.raises(kombu.exceptions.EncodeError):
            message_body(value, "json")


def test_no_service_keeps_a_uuid_value_so_none_changes_type_on_the_way():
    """orjson writes a UUID as its text, where kombu tags it: no column of any service holds one."""
    from services.auth.tables import metadata as auth
    from services.billing.tables import metadata as billing
    from services.documents.tables import metadata as documents
    from services.payments.tables import metadata as payments

    columns = [
        column for metadata in (auth, billing, documents, payments) for t in metadata.tables.values() for column in t.c
    ]
    assert len(columns) > 100
    assert [str(c) for c in columns if isinstance(c.type, sa.Uuid)] == []
