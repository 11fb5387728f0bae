"""Refunded card money as the portal shows it, with billing replaced by a fake RPC: the payments page
names what was refunded of each payment, and an invoice shows the payment as the client paid it and
its refund as a line of its own (signed-in, printable and link pages), and the statement words refunds
and how payments were made; each in the page's language."""

import re

import pytest

from tests.unit.test_documents_add_up import Cells
from tests.unit.test_gateway import SESSION, WORKSPACE, client
from tests.unit.test_gateway_statement import page as statement_page
from tests.unit.test_invoice_pages import invoice, priced, public_page
from tests.unit.test_invoice_print import invoice_page

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


# --- an invoice a refunded payment paid -------------------------------------------------------------------

# INV-2026-00004: $500.00, paid by a card payment of $500.00 of which $100.00 was refunded, under the
# reopen policy: the payment still pays $400.00 of it, and $100.00 is owed again.
REFUNDED = invoice(
    id="i4",
    number="INV-2026-00004",
    **priced("Design work", 50000),
    balance=10000,
    credits=[],
    payments=[
        {
            "payment_id": "pi_1",
            "amount": 40000,
            "refunded": 10000,
            "currency": "USD",
            "method": "card",
            "reference": "Visa ending 4242",
            "received_at": "2026-12-07T15:32:45+00:00",
        }
    ],
    refunds=[
        {
            "refund_id": "re_1",
            "payment_id": "pi_1",
            "amount": 10000,
            "currency": "USD",
            "refunded_at": "2026-12-08T14:00:00+00:00",
        }
    ],
)
SIGNED = r"([−+]?)\$([\d,]+)\.(\d\d)"
SIGNED_EUROS = r"([−+]?)([\d.]+),(\d\d) €"


def added_up(html: str, amount: str = SIGNED) -> list[tuple[str, int]]:
    """The totals table top to bottom as (label, cents), a deduction negative and a refund positive."""
    parser = Cells()
    parser.feed(html)
    rows = []
    for row in parser.rows:
        match = len(row) == 2 and re.fullmatch(amount, row[1])
        if match:
            sign, units, fraction = match.groups()
            value = int(re.sub(r"\D", "", units)) * 100 + int(fraction)
            rows.append((row[0], -value if sign == "−" else value))
    return rows


@pytest.mark.parametrize("printable", [False, True], ids=["page", "printable"])
def test_an_invoice_shows_the_payment_as_paid_and_its_refund_as_a_line_of_its_own(printable):
    rows = added_up(invoice_page(REFUNDED, WORKSPACE, printable=printable))
    assert rows == [
        ("Subtotal", 50000),
        ("Tax 0% (zero-rated) on $500.00", 0),
        ("Total", 50000),
        ("Paid Dec 7, 2026, 10:32:45 AM", -50000),  # what the client paid, as its bank shows it
        ("Refunded Dec 8, 2026, 9:00:00 AM", 10000),
        ("Balance due", 10000),
    ]
    assert sum(amount for _, amount in rows[2:-1]) == rows[-1][1]


def test_a_payment_refunded_in_full_is_still_listed_with_its_refund_on_the_link_page():
    whole = {
        **REFUNDED,
        "balance": 50000,
        "status": "sent",
        "payments": [{**REFUNDED["payments"][0], "amount": 0, "refunded": 50000}],
        "refunds": [{**REFUNDED["refunds"][0], "amount": 50000}],
    }
    html, _ = public_page(whole)
    assert added_up(html)[3:] == [
        ("Paid Dec 7, 2026, 10:32:45 AM", -50000),
        ("Refunded Dec 8, 2026, 9:00:00 AM", 50000),
        ("Balance due", 50000),
    ]


def test_under_the_credit_policy_the_refund_and_the_credit_that_settles_it_are_named_in_german():
    credited = {
        **REFUNDED,
        "currency": "EUR",
        "balance": 0,
        "status": "paid",
        "payments": [{**REFUNDED["payments"][0], "currency": "EUR"}],
        "refunds": [{**REFUNDED["refunds"][0], "currency": "EUR"}],
        "credits": [{"id": "ca1", "source": "refund", "amount": 10000, "currency": "EUR"}],
        "timezone": "Europe/Berlin",
    }
    rows = added_up(invoice_page(credited, WORKSPACE, locale="de_DE"), SIGNED_EUROS)
    assert rows[3:] == [
        ("Bezahlt am 07.12.2026, 16:32:45", -50000),
        ("Erstattet am 08.12.2026, 15:00:00", 10000),
        ("Erstattung als Gutschrift verrechnet", -10000),
        ("Offener Betrag", 0),
    ]


# --- the statement and the payments page in German ----------------------------------------------------------


def entry(kind, reference, amount, balance, **about):
    return {"date": "2026-12-08", "kind": kind, "reference": reference, "amount": amount, "balance": balance} | {
        "credit_note_id": None,
        "about": None,
        "payment": None,
        **about,
    }


STATEMENT_ENTRIES = [
    entry("payment", "Visa ending 4242", 50000, 0),
    entry("payment", "bank_transfer", 1000, -1000),
    entry("refund", "Refund of Visa ending 4242", 10000, 9000, about="refund", payment="Visa ending 4242"),
    entry(
        "credit",
        "Credit for refund of visa ending 4242",
        10000,
        -1000,
        about="refund_credit",
        payment="Visa ending 4242",
    ),
    entry("refund", "Retainer refund", 2000, 1000, about="retainer_refund"),
    entry(
        "refund",
        "Refund of SEPA Direct Debit ending 3000",
        500,
        1500,
        about="refund",
        payment="SEPA Direct Debit ending 3000",
    ),
    entry("refund", "Refund of card", 500, 2000, about="refund", payment="card"),
]


def references(locale):
    html = statement_page(locale, entries=STATEMENT_ENTRIES)
    return re.findall(r'<td data-label="(?:Reference|Referenz)">(.*?)</td>', html)


def test_the_statement_words_refunds_and_how_payments_were_made_in_german():
    assert references("de_DE") == [
        "Visa mit Endziffern 4242",
        "Überweisung",
        "Erstattung der Zahlung per Visa mit Endziffern 4242",
        "Gutschrift für die Erstattung der Zahlung per Visa mit Endziffern 4242",
        "Erstattung aus dem Vorschuss",
        "Erstattung der Zahlung per SEPA-Lastschrift mit Endziffern 3000",
        "Erstattung der Zahlung per Karte",
    ]


def test_the_statement_reads_as_before_in_english():
    assert references("en_US") == [
        "Visa ending 4242",
        "Bank transfer",  # a method named alone, as the payments page names it
        "Refund of Visa ending 4242",
        "Credit for the refund of Visa ending 4242",
        "Retainer refund",
        "Refund of SEPA Direct Debit ending 3000",
        "Refund of card",
    ]


def test_the_payments_page_names_the_card_in_german():
    (row,) = rows(payments_page([payment(50000, 10000)], session={**SESSION, "locale": "de_DE"}))
    assert "Visa mit Endziffern 4242" in row and "ending" not in row


def test_a_card_payment_the_business_recorded_is_named_in_german_as_the_statement_names_it():
    recorded = payment(25000, 0, source="manual", method="card", reference="Card ending 4242")
    other = payment(50000, 0, source="manual", method="bank_transfer", reference="TRX-90001")
    card, transfer = rows(payments_page([recorded, other], session={**SESSION, "locale": "de_DE"}))
    assert '"Zahlungsart">Karte mit Endziffern 4242</td>' in card and "ending" not in card
    assert "Überweisung · TRX-90001</td>" in transfer  # a reference of the business's own stays as written


def test_the_english_payments_page_names_a_method_once_and_as_a_label():
    listed = [
        payment(25000, 0, source="manual", method="card", reference="Card ending 4242"),
        payment(26000, 0, source="manual", method="sepa_debit", reference="SEPA Direct Debit ending 3000"),
        payment(50000, 0, source="manual", method="bank_transfer", reference="TRX-90001"),
        payment(1000, 0, source="manual", method="cash", reference=""),
    ]
    methods = [re.search(r'data-label="Method">(.*?)</td>', row).group(1) for row in rows(payments_page(listed))]
    assert methods == ["Card ending 4242", "SEPA Direct Debit ending 3000", "Bank transfer · TRX-90001", "Cash"]


# --- an invoice dispute's steps in the comment thread ---------------------------------------------------------

THREAD = [
    {
        "id": "cm1",
        "author_kind": "client",
        "author_name": "Eva",
        "body": "Disputed the whole invoice: Zu teuer",
        "notice": {"kind": "disputed", "lines": [], "reason": "Zu teuer"},
        "created_at": "2026-12-01T10:00:00+00:00",
    },
    {
        "id": "cm2",
        "author_kind": "client",
        "author_name": "Eva",
        "body": "Disputed lines 1, 3: Falsch",
        "notice": {"kind": "disputed", "lines": [1, 3], "reason": "Falsch"},
        "created_at": "2026-12-01T11:00:00+00:00",
    },
    {
        "id": "cm3",
        "author_kind": "business",
        "author_name": "Muster",
        "body": "Dispute resolved: adjusted by credit note CN-2026-00001 for €100.00: Entschuldigung",
        "notice": {
            "kind": "dispute_adjusted",
            "credit_note": "CN-2026-00001",
            "amount": 10000,
            "currency": "EUR",
            "message": "Entschuldigung",
        },
        "created_at": "2026-12-02T10:00:00+00:00",
    },
    {
        "id": "cm4",
        "author_kind": "business",
        "author_name": "Muster",
        "body": "Dispute rejected",
        "notice": {"kind": "dispute_rejected", "message": ""},
        "created_at": "2026-12-03T10:00:00+00:00",
    },
    {
        "id": "cm5",
        "author_kind": "client",
        "author_name": "Eva",
        "body": "Danke",
        "notice": None,
        "created_at": "2026-12-03T11:00:00+00:00",
    },
    {  # from a billing before notices: its body as it is
        "id": "cm6",
        "author_kind": "client",
        "author_name": "Eva",
        "body": "Disputed line 2: Alt",
        "created_at": "2026-12-03T12:00:00+00:00",
    },
]


def thread_of(locale):
    c, _ = client(
        {
            ("billing", "view_invoice"): {"invoice": {**REFUNDED, "currency": "EUR"}, "comments": THREAD},
            ("billing", "get_workspace"): WORKSPACE,
        },
        session={**SESSION, "locale": locale},
    )
    html = c.simulate_get("/invoices/i4", cookies=c.session_cookie).text
    said = re.findall(r'<article class="comment \w+">.*?</p><p>(.*?)</p></article>', html, re.S)
    return [" ".join(text.split()) for text in said]


def test_a_dispute_s_steps_in_the_thread_read_in_german():
    assert thread_of("de_DE") == [
        "Die ganze Rechnung beanstandet: Zu teuer",
        "Positionen 1, 3 beanstandet: Falsch",
        "Beanstandung erledigt: korrigiert mit Gutschrift CN-2026-00001 über 100,00 €: Entschuldigung",
        "Beanstandung abgelehnt",
        "Danke",
        "Disputed line 2: Alt",
    ]


def test_a_dispute_s_steps_in_the_thread_read_as_billing_wrote_them_in_english():
    assert thread_of("en_US")[:4] == [step["body"] for step in THREAD[:4]]


@pytest.mark.parametrize(("currency", "link"), [("EUR", "Saved cards and bank accounts"), ("USD", "Saved cards")])
def test_the_payments_page_names_the_saved_methods_page_for_what_it_holds(currency, link):
    c, _ = client(
        {
            ("billing", "get_workspace"): WORKSPACE,
            ("billing", "list_payments"): [],
            ("billing", "list_processing_payments"): [],
            ("billing", "get_client"): {**READER, "currency": currency},
        }
    )
    page = c.simulate_get("/payments", cookies=c.session_cookie).text
    assert f'<a href="/payment-methods">{link}</a>' in page
