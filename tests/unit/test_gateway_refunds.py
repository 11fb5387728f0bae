"""Refunded card money as the portal shows it, with billing replaced by a fake RPC: the payments page
names what was refunded of each payment, in the page's language."""

from tests.unit.test_gateway import SESSION, WORKSPACE, client

READER = {"id": "cl1", "name": "Demo Client Ltd", "currency": "USD", "locale": "en_US", "timezone": "America/New_York"}


def payment(amount, refunded, **extra):
    return {
        "id": f"pi_{amount}",
        "client_id": "cl1",
        "kind": "invoice",
        "amount": amount,
        "currency": "USD",
        "method": "card",
        "reference": "Visa ending 4242",
        "stripe_reference": "",
        "source": "stripe",
        "received_at": "2026-12-07T15:32:45+00:00",
        "allocations": [{"invoice_id": "i4", "number": "INV-2026-00004", "amount": amount - refunded}],
        "unapplied": 0,
        "refunded": refunded,
        "dispute_status": None,
    } | extra


def payments_page(listed, session=SESSION):
    c, _ = client(
        {
            ("billing", "get_workspace"): WORKSPACE,
            ("billing", "list_payments"): listed,
            ("billing", "list_processing_payments"): [],
            ("billing", "get_client"): READER,
        },
        session=session,
    )
    return c.simulate_get("/payments", cookies=c.session_cookie).text


def rows(html):
    return [row.split("</tr>")[0] for row in html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]]


def test_the_payments_page_names_what_was_refunded_of_a_payment():
    refunded, whole = rows(payments_page([payment(50000, 10000), payment(2000, 0)]))
    assert "$500.00<span" in refunded and ">, $100.00 refunded</span>" in refunded
    assert "$20.00</td>" in whole and "refunded" not in whole


def test_the_refund_reads_in_german():
    html = payments_page([payment(50000, 10000)], session={**SESSION, "locale": "de_DE"})
    (row,) = rows(html)
    assert "500,00\xa0$<span" in row and ", 100,00\xa0$ erstattet</span>" in row
