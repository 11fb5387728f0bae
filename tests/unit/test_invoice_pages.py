"""An invoice's two pages, the signed-in one and the one an email's link opens: the same totals block
(payments, credits and retainer applied, balance due), a way to pay only while something is due, and
a dispute section only while there is something to dispute."""

import re
from decimal import Decimal
from pathlib import Path

import pytest

from services.billing import domain
from services.gateway import views
from tests.unit.test_documents_add_up import Cells
from tests.unit.test_gateway import FORM, SESSION, WORKSPACE, client
from tests.unit.test_quote_revisions import QUOTE

LINK = {"workspace_id": "ws1", "client_id": "cl1", "kind": "invoice", "document_id": "i2"}


def priced(description: str, unit_price: int, tax_rate: int = 0) -> dict:
    """One line and the totals it makes, as billing stores and answers them."""
    line = domain.Line(description, Decimal(1), unit_price, Decimal(tax_rate), Decimal(0))
    totals = domain.Totals.of([line])
    stored = [line.as_dict()]
    return {
        "lines": stored,
        "subtotal": totals.subtotal,
        "tax_total": totals.tax,
        "tax_breakdown": domain.stored_tax_breakdown(stored, totals.tax),
        "total": totals.total,
    }


def invoice(**changes) -> dict:
    """INV-2026-00002 as billing's get_invoice answers: $885.00, $500.00 credited, $100.00 from the
    retainer, $285.00 due."""
    return {
        "id": "i2",
        "number": "INV-2026-00002",
        "kind": "standard",
        "status": "partially_paid",
        "display_status": "partially_paid",
        "currency": "USD",
        "issue_date": "2026-11-01",
        "due_date": "2026-12-01",
        **priced("Design work", 88500),
        "balance": 28500,
        "payments": [],
        "credits": [
            {"id": "ca1", "source": "credit_note", "amount": 50000, "currency": "USD"},
            {"id": "ca2", "source": "retainer", "amount": 10000, "currency": "USD"},
        ],
        "processing": 0,
        "dispute": None,
        "business_name": "Acme",
        "locale": "en_US",
        "timezone": "America/New_York",
        "client": {"name": "Demo Client Ltd"},
        **changes,
    }


# A paid EUR invoice for a German client: €999.99 and 19% tax, €1,189.99, one payment of all of it.
PAID_EUR = invoice(
    number="INV-2026-00007",
    status="paid",
    display_status="paid",
    currency="EUR",
    **priced("Beratung", 99999, tax_rate=19),
    balance=0,
    payments=[{"payment_id": "p1", "amount": 118999, "currency": "EUR", "received_at": "2026-11-20T15:00:00+00:00"}],
    credits=[],
    locale="de_DE",
    timezone="Europe/Berlin",
)


def public_page(document: dict):
    c, rpc = client(
        {
            ("auth", "resolve_document_link"): LINK,
            ("billing", "get_invoice"): document,
            ("billing", "mark_invoice_viewed"): document,
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_get("/i/a-one-document-token")
    assert page.status_code == 200
    return page.text, rpc


def signed_in_page(document: dict) -> str:
    c, _ = client(
        {("billing", "view_invoice"): {"invoice": document, "comments": []}, ("billing", "get_workspace"): WORKSPACE}
    )
    page = c.simulate_get(f"/invoices/{document['id']}", cookies=c.session_cookie)
    assert page.status_code == 200
    return page.text


def totals(html: str, amount: str) -> list[tuple[str, int]]:
    """The totals table as displayed, top to bottom: (label, cents), a deduction negative; `amount`
    is a regular expression of one amount with groups (minus sign, whole units, cents)."""
    parser = Cells()
    parser.feed(html)
    rows = []
    for row in parser.rows:
        match = len(row) == 2 and re.fullmatch(amount, row[1])
        if match:
            sign, units, fraction = match.groups()
            value = int(re.sub(r"\D", "", units)) * 100 + int(fraction)
            rows.append((row[0], -value if sign else value))
    return rows


DOLLARS = r"(−?)\$([\d,]+)\.(\d\d)"
EUROS = r"(−?)([\d.]+),(\d\d) €"  # the cells' text, its no-break spaces read as spaces


def test_the_link_page_shows_the_credit_and_retainer_applied_and_adds_up():
    html, _ = public_page(invoice())
    rows = totals(html, DOLLARS)
    assert rows == [
        ("Subtotal", 88500),
        ("Tax 0% (zero-rated) on $885.00", 0),
        ("Total", 88500),
        ("Credit applied", -50000),
        ("Retainer applied", -10000),
        ("Balance due", 28500),
    ]
    labels = [label for label, _ in rows]
    after_total = rows[labels.index("Total") + 1 : -1]
    assert rows[labels.index("Total")][1] + sum(amount for _, amount in after_total) == rows[-1][1]


def test_a_paid_invoice_on_its_link_page_shows_the_payment_in_german():
    html, _ = public_page(PAID_EUR)
    rows = totals(html, EUROS)
    assert [label for label, _ in rows] == [
        "Zwischensumme",
        "Umsatzsteuer 19 % auf 999,99 €",  # the cells' text, its no-break space read as a space
        "Gesamt",
        "Bezahlt am 20.11.2026, 16:00:00",  # in the client's time zone, as on the signed-in page
        "Offener Betrag",
    ]
    amounts = dict(rows)
    assert amounts["Gesamt"] == 118999 and amounts["Offener Betrag"] == 0
    assert amounts["Gesamt"] + amounts["Bezahlt am 20.11.2026, 16:00:00"] == amounts["Offener Betrag"]


@pytest.mark.parametrize("document", [invoice(), PAID_EUR], ids=["credited", "paid"])
def test_the_link_page_and_the_signed_in_page_show_the_same_totals(document):
    amount = EUROS if document["currency"] == "EUR" else DOLLARS
    assert totals(public_page(document)[0], amount) == totals(signed_in_page(document), amount)


def test_the_link_page_reads_only_its_own_invoice():
    _, rpc = public_page(invoice())
    billing = [
        (method, args, kwargs.get("client_id"))
        for service, method, args, _, kwargs in rpc.calls
        if service == "billing"
    ]
    assert ("get_invoice", ("ws1", "i2"), "cl1") in billing
    assert {method for method, _, _ in billing} <= {"get_invoice", "mark_invoice_viewed", "get_workspace"}


SIGN_IN_TO_PAY = '<a class="button primary" href="/login" data-testid="sign-in-to-pay">Sign in to pay</a>'


@pytest.mark.parametrize(
    "changes,offered",
    [
        ({}, True),  # partially paid, $285.00 due
        ({"status": "sent", "display_status": "overdue", "credits": [], "balance": 88500}, True),
        ({"status": "paid", "display_status": "paid", "balance": 0}, False),
        ({"status": "void", "display_status": "void"}, False),
        ({"processing": 28500, "display_status": "processing"}, False),  # a bank debit is already paying it
    ],
)
def test_the_link_page_offers_to_sign_in_to_pay_only_while_something_is_due(changes, offered):
    html, _ = public_page(invoice(**changes))
    assert (SIGN_IN_TO_PAY in html) is offered
    assert 'href="/pay' not in html  # paying itself needs the signed-in page


def test_a_german_reader_is_offered_to_sign_in_to_pay_in_german():
    html, _ = public_page(invoice(locale="de_DE"))
    assert ">Zum Bezahlen anmelden</a>" in html and "Sign in to pay" not in html


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "paid", "display_status": "paid", "balance": 0},
        {"status": "void", "display_status": "void"},
        {"kind": "retainer", "credits": []},  # a retainer invoice is paid, never disputed
    ],
)
def test_an_invoice_with_nothing_to_dispute_has_no_dispute_section(changes):
    html = signed_in_page(invoice(**changes))
    assert "Dispute this invoice" not in html and 'id="dispute"' not in html


def test_an_open_invoice_can_be_disputed_and_an_open_dispute_shows_after_payment():
    html = signed_in_page(invoice())
    assert '<h2 id="dispute">Dispute this invoice</h2>' in html and 'action="/invoices/i2/dispute"' in html
    dispute = {"id": "d1", "status": "open", "raised_at": "2026-11-10T09:00:00+00:00"}
    paid = signed_in_page(invoice(status="paid", display_status="paid", balance=0, dispute=dispute))
    assert '<h2 id="dispute">Dispute this invoice</h2>' in paid and 'data-testid="dispute-status"' in paid
    assert 'action="/invoices/i2/dispute"' not in paid


def test_each_disputed_lines_checkbox_sits_beside_its_own_lines_name():
    lines = [{**invoice()["lines"][0], "description": name} for name in ("Design work", "Hosting <yearly>")]
    html = signed_in_page(invoice(lines=lines))
    fieldset = re.search(r"<fieldset><legend>Lines you dispute.*?</legend>(.*?)</fieldset>", html, re.S).group(1)
    labels = re.findall(r"<label([^>]*)>(.*?)</label>", fieldset, re.S)
    assert len(labels) == 2 and re.sub(r"<label[^>]*>.*?</label>", "", fieldset, flags=re.S).strip() == ""
    for index, ((attributes, inside), name) in enumerate(zip(labels, ("Design work", "Hosting &lt;yearly&gt;")), 1):
        # the check-box label (portal.css: a row, the box first, its text beside it, on any width)
        assert attributes == ' class="check"'
        assert inside == f'<input type="checkbox" name="line" value="{index}"> {name}'
    css = (Path(views.__file__).parent / "static" / "portal.css").read_text()
    rule = re.search(r"^label\.check \{([^}]*)\}", css, re.M).group(1)
    assert "display: flex" in rule and "align-items: center" in rule
    assert re.search(r"^label\.check input \{[^}]*width: auto", css, re.M)
    phone = css.split("@media (max-width: 640px)")[1].split("\n}\n")[0]
    assert not re.search(r"^\s*(label|fieldset|input)\b", phone, re.M)  # the phone keeps the row


def test_a_zero_rated_and_an_exempt_tax_row_read_differently_on_both_pages():
    bands = [
        {"category": "Z", "rate": "0", "base": 1500, "tax": 0},
        {"category": "E", "rate": "0", "base": 60000, "tax": 0, "exemption_reason": "§ 4 Nr. 21 UStG"},
    ]
    german = {**PAID_EUR, "subtotal": 61500, "total": 61500, "tax_total": 0, "tax_breakdown": bands, "balance": 0}
    german["payments"] = [{**PAID_EUR["payments"][0], "amount": 61500}]
    for html in (signed_in_page(german), public_page(german)[0]):
        labels = [label for label, _ in totals(html, EUROS)]
        assert labels[1:3] == ["Umsatzsteuer 0 % (Nullsatz) auf 15,00 €", "Umsatzsteuerfrei auf 600,00 €"], labels


def public_quote_page(quote: dict) -> str:
    c, _ = client(
        {
            ("auth", "resolve_document_link"): {**LINK, "kind": "quote", "document_id": quote["id"]},
            ("billing", "get_quote"): quote,
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_get("/i/a-one-document-token")
    assert page.status_code == 200
    return page.text


@pytest.mark.parametrize(
    "status,locale,offered",
    [
        ("sent", "en_US", ">Sign in to accept or decline</a>"),
        ("sent", "de_DE", ">Zum Annehmen oder Ablehnen anmelden</a>"),
        ("accepted", "en_US", None),
        ("expired", "en_US", None),
    ],
)
def test_the_quote_link_page_shows_the_way_to_accept_or_decline_while_the_quote_is_open(status, locale, offered):
    """Its email says "accept or decline it online": the link leads to the quote's page, after signing in."""
    quote = {**QUOTE, "number": "QUO-2026-00001", "status": status, "display_status": status, "locale": locale}
    html = public_quote_page(quote)
    button = '<a class="button primary" href="/quotes/q1" data-testid="sign-in-to-decide">'
    assert (button in html) is (offered is not None)
    if offered:
        assert button + offered.lstrip(">") in html
    assert 'action="/quotes/q1/accept"' not in html  # deciding itself needs the signed-in page


def test_a_refused_forward_is_the_invoice_page_again_with_the_address_and_note_as_typed():
    c, rpc = client(
        {("billing", "view_invoice"): {"invoice": invoice(), "comments": []}, ("billing", "get_workspace"): WORKSPACE}
    )
    typed = "to=buchhaltung&note=Bitte+bis+Freitag+%3Cbezahlen%3E&nonce=n1"
    page = c.simulate_post(
        "/invoices/i2/forward",
        body=typed,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        cookies=c.session_cookie,
    )
    assert page.status_code == 400 and "Invoice INV-2026-00002" in page.text
    assert '<p id="forward-error" class="error" role="alert">Enter the email address to forward' in page.text
    assert 'name="to" type="email" required maxlength="254" value="buchhaltung" aria-invalid="true"' in page.text
    assert 'value="Bitte bis Freitag &lt;bezahlen&gt;"' in page.text
    assert not [call for call in rpc.calls if call[1] == "forward_invoice"]  # nothing was sent


@pytest.mark.parametrize(
    "locale, says",
    [("en_US", "A comment is 1 to 5000 characters."), ("de_DE", "Ein Kommentar hat 1 bis 5000 Zeichen.")],
)
def test_a_blank_comment_is_the_invoice_page_again_with_what_was_typed_and_nothing_posted(locale, says):
    c, rpc = client(
        {
            ("billing", "view_invoice"): {"invoice": invoice(locale=locale), "comments": []},
            ("billing", "get_workspace"): WORKSPACE,
        },
        session={**SESSION, "locale": locale},
    )
    page = c.simulate_post(
        "/invoices/i2/comments", body="body=+%0D%0A+&nonce=n1", headers=FORM, cookies=c.session_cookie
    )
    assert page.status_code == 400 and "INV-2026-00002" in page.text
    assert f'<p id="comment-error" class="error" role="alert">{says}</p>' in page.text
    assert 'rows="3" aria-invalid="true" aria-describedby="comment-error" autofocus> \n </textarea>' in page.text
    assert not [call for call in rpc.calls if call[1] == "add_comment"]


@pytest.mark.parametrize(
    "locale, typed, says",
    [
        ("en_US", "line=2&reason=+%0A+&nonce=n1", "A reason is 1 to 2000 characters."),
        ("de_DE", "line=2&reason=+%0A+&nonce=n1", "Ein Grund hat 1 bis 2000 Zeichen."),
        ("en_US", "line=2&line=0&reason=Twice&nonce=n1", "Tick the lines you dispute, or none."),  # no line 0
    ],
)
def test_a_refused_dispute_is_the_invoice_page_again_with_the_reason_and_lines_as_typed(locale, typed, says):
    lines = [{**invoice()["lines"][0], "description": name} for name in ("Design work", "Hosting")]
    c, rpc = client(
        {
            ("billing", "view_invoice"): {"invoice": invoice(lines=lines, locale=locale), "comments": []},
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_post("/invoices/i2/dispute", body=typed, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 400 and "INV-2026-00002" in page.text and 'action="/invoices/i2/dispute"' in page.text
    assert "Back to the portal" not in page.text and "Zurück zum Portal" not in page.text  # not the error page
    assert f'<p id="dispute-error" class="error" role="alert">{says}</p>' in page.text
    assert '<input type="checkbox" name="line" value="1"> Design work' in page.text
    assert '<input type="checkbox" name="line" value="2" checked> Hosting' in page.text
    reason = typed.split("reason=")[1].split("&")[0].replace("+", " ").replace("%0A", "\n")
    assert f'aria-invalid="true" aria-describedby="dispute-error" autofocus>{reason}</textarea>' in page.text
    assert 'aria-describedby="forward-error"' not in page.text  # only the form refused says so
    assert {call[1] for call in rpc.calls if call[0] != "auth"} <= {"view_invoice", "get_workspace"}  # no dispute


@pytest.mark.parametrize(
    "locale, says",
    [
        ("en_US", "$285.00 was due on Dec 1, 2026. Please pay it now."),
        ("de_DE", "Der Betrag von 285,00\xa0$ war am 01.12.2026 fällig. Bitte zahlen Sie ihn jetzt."),
    ],
)
def test_an_overdue_invoice_page_says_when_it_was_due_as_its_pdf_does(locale, says):
    html = signed_in_page(invoice(display_status="overdue", locale=locale))
    assert says in html and "Please pay $285.00 by" not in html and "bis zum" not in html
    assert "Please pay $285.00 by Dec 1, 2026." in signed_in_page(invoice())  # not yet due: the day to pay by
