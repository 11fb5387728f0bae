"""The invoice listing's paging and search: a page after any other by cursor (keyset), the same rows as
paging by offset, in every sort; "part of a number" anywhere in it. (The indexes behind them are checked
with EXPLAIN on PostgreSQL in tests/integration/test_billing_read_model.py.)"""

import base64
import json

import pytest

from chassis.errors import Invalid, NotFound
from services.billing import handlers as h
from tests.unit.test_billing_handlers import NOW, db, ws  # noqa: F401 - shared fixtures

SORTS = {"date": "issue_date", "due_date": "due_date", "amount": "total", "number": "number"}


@pytest.fixture
def listed(db, ws):
    """23 invoices over 5 issue dates and 4 amounts, so every sort has ties; two are paid."""
    ws_id, client = ws
    made = [
        db(
            h.create_invoice,
            ws_id,
            {
                "client_id": client,
                "send": True,
                "issue_date": f"2026-11-{1 + i % 5:02d}",
                "due_date": f"2026-12-{1 + i % 3:02d}",
                "lines": [{"description": "Work", "unit_price": 1000 * (1 + i % 4)}],
            },
        )
        for i in range(23)
    ]
    for invoice in made[:2]:
        db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": invoice["total"]})
    return ws_id, client, made


def walk(db, ws_id, filters: dict) -> list[str]:
    numbers, after = [], None
    while True:
        page = db(h.list_invoices, ws_id, {**filters, **({"after": after} if after else {})})
        numbers += [i["number"] for i in page["items"]]
        after = page["next_cursor"]
        if after is None:
            return numbers


def test_pages_by_cursor_hold_the_same_rows_as_pages_by_offset_in_the_sorts_order(db, listed):
    ws_id, client, made = listed
    for sort in ("-date", "date", "due_date", "-due_date", "-amount", "amount", "number", "-number"):
        key = SORTS[sort.lstrip("-")]
        expected = [
            i["number"] for i in sorted(made, key=lambda i: (i[key], i["number"]), reverse=sort.startswith("-"))
        ]
        by_offset = [
            i["number"]
            for offset in range(0, 25, 5)
            for i in db(h.list_invoices, ws_id, {"sort": sort, "limit": 5, "offset": offset})["items"]
        ]
        assert walk(db, ws_id, {"sort": sort, "limit": 5}) == by_offset == expected, sort
        assert walk(db, ws_id, {"sort": sort, "limit": 23}) == expected, sort  # a full last page: no next


def test_a_cursor_keeps_the_filters_and_the_portals_view(db, listed):
    ws_id, client, made = listed
    unpaid = walk(db, ws_id, {"client_id": client, "portal": True, "status": "unpaid", "limit": 4})
    assert sorted(unpaid) == sorted(i["number"] for i in made[2:])
    first = db(h.list_invoices, ws_id, {"status": "unpaid", "limit": 4})
    assert (first["total"], first["offset"], len(first["items"])) == (21, 0, 4)
    second = db(h.list_invoices, ws_id, {"status": "unpaid", "limit": 4, "after": first["next_cursor"]})
    assert [i["number"] for i in second["items"]] == unpaid[4:8]
    assert second["total"] is None  # the first page counted; counting again would read every row


def _token(keys) -> str:
    return base64.urlsafe_b64encode(json.dumps(keys).encode()).decode().rstrip("=")


def test_a_cursor_is_for_its_own_sort_and_an_offset_skips_rows_after_it(db, listed):
    ws_id, _, _ = listed
    cursor = db(h.list_invoices, ws_id, {"sort": "-date", "limit": 2})["next_cursor"]
    forged = [["-date", 1, "INV"], ["amount", 2**64, "INV"], ["number", "INV\x00"], ["number", "9" * 51], {"-date": 1}]
    after = db(h.list_invoices, ws_id, {"limit": 4, "after": cursor})["items"]
    skipped = db(h.list_invoices, ws_id, {"limit": 2, "after": cursor, "offset": 2})["items"]
    assert [i["number"] for i in skipped] == [i["number"] for i in after[2:]]
    for bad in (  # not a page this listing gave: like an unknown id, not found
        {"after": cursor, "sort": "amount"},
        {"after": "not a cursor"},
        {"after": cursor[:-4]},
        {"after": "é"},
        *({"after": _token(f), "sort": f[0] if isinstance(f, list) else "-date"} for f in forged),
    ):
        with pytest.raises(NotFound) as missing:
            db(h.list_invoices, ws_id, {"limit": 2, **bad})
        assert set(missing.value.fields) == {"after"}


def test_part_of_a_number_is_found_anywhere_in_it_whatever_the_case(db, listed):
    ws_id, client, made = listed
    numbers = [i["number"] for i in made]  # INV-2026-00001 ...

    def found(term, **filters):
        listing = db(h.list_invoices, ws_id, {"search": term, "limit": 100, **filters})
        return sorted(i["number"] for i in listing["items"])

    assert found(numbers[11][-3:]) == [numbers[11]]  # the end of one
    assert found("inv-2026-0001") == sorted(n for n in numbers if "-0001" in n)  # the start, any case
    assert found("6-000") == sorted(numbers)  # the middle
    assert found("2026-00012", client_id=client, portal=True) == [numbers[11]]
    assert found("%") == found("no-such-number") == []  # no pattern characters: the text itself


def test_a_portal_page_by_number_answers_as_the_pages_after_a_cursor_do(db, listed):
    """A portal page by offset is one prepared statement (count and rows as JSON); the pages after a
    cursor are built as asked. Both give the same invoices, read back alike, for each filter and sort."""
    ws_id, client, made = listed
    db(h.void_invoice, ws_id, made[5]["id"])  # every display status the portal filters on
    db(h.record_payment, ws_id, {"invoice_id": made[6]["id"], "amount": 100})
    db(h.archive_invoice, ws_id, made[7]["id"])  # not in the portal
    late = {"client_id": client, "send": True, "issue_date": "2026-10-01", "due_date": "2026-10-31"}
    db(h.create_invoice, ws_id, {**late, "lines": [{"description": "Late", "unit_price": 500}]})
    portal = {"client_id": client, "portal": True, "limit": 4}
    for status in ("all", "unpaid", "partially_paid", "overdue", "paid", "void"):
        for sort in ("-date", "due_date", "-amount", "number"):
            for search in ("", "00"):
                filters = {**portal, "status": status, "sort": sort, "search": search}
                first = db(h.list_invoices, ws_id, filters)
                by_offset = first["items"] + [
                    i
                    for offset in range(4, 24, 4)
                    for i in db(h.list_invoices, ws_id, {**filters, "offset": offset})["items"]
                ]
                by_cursor, page = list(first["items"]), first
                while page["next_cursor"]:
                    page = db(h.list_invoices, ws_id, {**filters, "after": page["next_cursor"]})
                    by_cursor += page["items"]
                    assert page["client"] == first["client"]
                assert by_offset == by_cursor and first["total"] == len(by_offset), (status, sort, search)
    everything = db(h.list_invoices, ws_id, {**portal, "limit": 100})
    assert made[7]["id"] not in {i["id"] for i in everything["items"]} and everything["total"] == 23
    assert {i["display_status"] for i in everything["items"]} >= {"paid", "partially_paid", "void", "overdue"}
    assert everything["client"]["currency"] == "USD" and everything["next_cursor"] is None
    with pytest.raises(NotFound):
        db(h.list_invoices, ws_id, {**portal, "client_id": "no-such-client"})


def test_a_listing_of_fields_listing_carries_what_a_list_shows_of_each_invoice_as_the_whole_one_says_it(db, listed):
    """The portal's page asks for "listing": each item is the whole invoice's id, number, dates,
    status as of today and amounts, and nothing else (no verification code: a list prints none), in
    every way a listing is read."""
    ws_id, client, made = listed
    db(h.void_invoice, ws_id, made[5]["id"])
    db(h.record_payment, ws_id, {"invoice_id": made[6]["id"], "amount": 100})
    late = {"client_id": client, "send": True, "issue_date": "2026-10-01", "due_date": "2026-10-31"}
    db(h.create_invoice, ws_id, {**late, "lines": [{"description": "Late", "unit_price": 500}]})
    shown = {
        "id", "number", "kind", "client_id", "status", "display_status", "currency", "issue_date", "due_date",
        "total", "amount_paid", "amount_credited", "balance",
    }  # fmt: skip
    for filters in (
        {"client_id": client, "portal": True, "limit": 100},  # the portal's page: one prepared statement
        {"client_id": client, "portal": True, "limit": 5, "status": "unpaid", "sort": "due_date"},
        {"client_id": client, "limit": 100},  # built as asked
    ):
        whole = db(h.list_invoices, ws_id, filters)
        listed_only = db(h.list_invoices, ws_id, {**filters, "fields": "listing"})
        assert {k: v for k, v in listed_only.items() if k != "items"} == {
            k: v for k, v in whole.items() if k != "items"
        }
        assert [set(item) for item in listed_only["items"]] == [shown] * len(whole["items"])
        assert listed_only["items"] == [{k: item[k] for k in shown} for item in whole["items"]]
        assert all(item["verification_code"] for item in whole["items"])  # the whole invoice has its code
        if whole["next_cursor"]:  # the pages after a cursor, built as asked
            after = db(h.list_invoices, ws_id, {**filters, "fields": "listing", "after": whole["next_cursor"]})
            assert after["items"] and all(set(item) == shown for item in after["items"])
    everything = db(h.list_invoices, ws_id, {"fields": "listing", "limit": 100})["items"]
    statuses = {item["display_status"] for item in everything}
    assert statuses >= {"paid", "partially_paid", "void", "overdue"}
    for unknown in ("everything", ["listing"], {"listing": True}):
        with pytest.raises(Invalid):
            db(h.list_invoices, ws_id, {"fields": unknown})
    for sort in ("--date", ["date"]):  # one leading "-" means descending; two are no sort, nor is a list
        with pytest.raises(Invalid):
            db(h.list_invoices, ws_id, {"sort": sort, "client_id": client, "portal": True, "fields": "listing"})
