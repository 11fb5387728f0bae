"""Every invoice adds up on its face: random invoices, totalled by billing's rules, rendered as the PDF
(WeasyPrint, read back with pypdf), as the portal's invoice page and as the page an emailed link opens,
and the printed numbers checked top to bottom: the line amounts make the subtotal, the subtotal and one
tax row per rate make the total, and the total less payments and credits is the balance due."""

import re
from decimal import Decimal
from html.parser import HTMLParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.billing import domain
from services.documents import pdf as pdfmod
from tests.unit.test_documents_pdf import BUSINESS, CLIENT, DOCUMENTS, context, text_of
from tests.unit.test_gateway import WORKSPACE, client

DOLLARS = r"(−?)\$([\d,]+\.\d\d)"


def cents(sign: str, digits: str) -> int:
    value = int(digits.replace(",", "").replace(".", ""))
    return -value if sign else value


lines = st.lists(
    st.builds(
        domain.Line,
        description=st.just("item"),
        quantity=st.decimals(min_value=Decimal("0.25"), max_value=Decimal(40), places=2),
        unit_price=st.integers(min_value=0, max_value=500_000),
        tax_rate=st.sampled_from([Decimal(0), Decimal(7), Decimal("7.5"), Decimal(19), Decimal(20)]),
        discount_percent=st.sampled_from([Decimal(0), Decimal(5), Decimal("12.5"), Decimal(100)]),
    ),
    min_size=1,
    max_size=6,
)


@st.composite
def invoices(draw):
    """An invoice as billing's get_invoice gives it, lines named Item 1, Item 2, ..."""
    drawn = [
        domain.Line(f"Item {i}", line.quantity, line.unit_price, line.tax_rate, line.discount_percent)
        for i, line in enumerate(draw(lines), start=1)
    ]
    totals = domain.Totals.of(drawn)
    paid = draw(st.integers(min_value=0, max_value=totals.total))
    credited = draw(st.integers(min_value=0, max_value=totals.total - paid))
    stored = [line.as_dict() for line in drawn]
    return {
        "id": "i1",
        "number": "INV-2026-00042",
        "kind": "standard",
        "status": "partially_paid",
        "display_status": "partially_paid",
        "currency": "USD",
        "issue_date": "2026-11-18",
        "due_date": "2026-12-18",
        "lines": stored,
        "subtotal": totals.subtotal,
        "discount_total": totals.discount,
        "tax_total": totals.tax,
        "tax_breakdown": domain.stored_tax_breakdown(stored, totals.tax),
        "total": totals.total,
        "amount_paid": paid,
        "amount_credited": credited,
        "balance": domain.balance(totals.total, paid, credited),
        "payments": [{"amount": paid, "currency": "USD", "received_at": "2026-11-20T15:00:00+00:00"}] if paid else [],
        "credits": [{"amount": credited, "currency": "USD", "source": "credit_note"}] if credited else [],
        "notes": "",
        "terms": "",
        "client": CLIENT,
        "locale": "en_US",
        "timezone": "America/New_York",
    }


def check_it_adds_up(invoice: dict, line_amounts: list[int], rows: list[tuple[str, int]]) -> None:
    """`rows` are the totals block as printed, top to bottom: (label, amount)."""
    labels = [label for label, _ in rows]
    assert labels[0] == "Subtotal" and "Total" in labels and labels[-1] == "Balance due", labels
    subtotal = rows[0][1]
    assert len(line_amounts) == len(invoice["lines"]) and sum(line_amounts) == subtotal
    taxes = rows[1 : labels.index("Total")]
    assert [label.startswith("Tax ") for label, _ in taxes] == [True] * len(taxes)
    assert len(taxes) == len({Decimal(line["tax_rate"]) for line in invoice["lines"]})  # one row per rate
    for label, tax in taxes:  # "Tax 19% on $1,234.00": that rate's tax on the printed base
        rate, base = re.fullmatch(r"Tax ([\d.]+)% (?:\(zero-rated\) )?on \$([\d,]+\.\d\d)", label).groups()
        assert abs(cents("", base) * Decimal(rate) / 100 - tax) <= Decimal("0.5")
    total = rows[labels.index("Total")][1]
    assert subtotal + sum(tax for _, tax in taxes) == total
    assert sum(cents("", re.search(DOLLARS, label).group(2)) for label, _ in taxes) == subtotal
    after = rows[labels.index("Total") + 1 :]
    assert total + sum(amount for _, amount in after[:-1]) == after[-1][1] == invoice["balance"]
    assert total == invoice["total"]


def pdf_rows(text: str) -> tuple[list[int], list[tuple[str, int]]]:
    text = text.replace("T ax", "Tax")  # text extraction splits the kerned pair
    line_amounts = [cents(*re.findall(DOLLARS, row)[-1]) for row in text.splitlines() if row.startswith("Item ")]
    rows = []
    for row in text.splitlines():
        match = re.fullmatch(
            rf"(Subtotal|Tax .*|Total|Paid .*|Credit applied|Retainer applied|Balance due) {DOLLARS}", row
        )
        if match:
            rows.append((match.group(1), cents(match.group(2), match.group(3))))
    return line_amounts, rows


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invoices())
def test_the_invoice_pdf_adds_up_top_to_bottom(invoice):
    context = {
        "doc": invoice,
        "business": BUSINESS,
        "client": CLIENT,
        "locale": "en_US",
        "timezone": "America/New_York",
        "paper": "A4",
    }
    line_amounts, rows = pdf_rows(text_of(pdfmod.render_pdf("invoice", context)))
    check_it_adds_up(invoice, line_amounts, rows)


class Cells(HTMLParser):
    """The text of each table row's cells, per table."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def page_rows(html: str) -> tuple[list[int], list[tuple[str, int]]]:
    parser = Cells()
    parser.feed(html)
    line_amounts = [
        cents(*re.fullmatch(DOLLARS, row[-1]).groups()) for row in parser.rows if row[0].startswith("Item ")
    ]
    rows = []
    for row in parser.rows:
        if len(row) == 2 and re.fullmatch(DOLLARS, row[1]):
            label = "Paid" if row[0].startswith("Paid ") else row[0]
            rows.append((label, cents(*re.fullmatch(DOLLARS, row[1]).groups())))
    return line_amounts, rows


@settings(max_examples=40, deadline=None)
@given(invoices())
def test_the_invoice_page_adds_up_top_to_bottom(invoice):
    c, _ = client(
        {
            ("billing", "view_invoice"): {"invoice": invoice, "comments": []},
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_get("/invoices/i1", cookies=c.session_cookie)
    assert page.status_code == 200
    line_amounts, rows = page_rows(page.text)
    check_it_adds_up(invoice, line_amounts, [("Credits applied" if "applied" in k else k, v) for k, v in rows])


@settings(max_examples=40, deadline=None)
@given(invoices())
def test_the_invoice_page_an_emailed_link_opens_adds_up_top_to_bottom(invoice):
    c, _ = client(
        {
            ("auth", "resolve_document_link"): {
                "workspace_id": "ws1",
                "client_id": "cl1",
                "kind": "invoice",
                "document_id": "i1",
            },
            ("billing", "get_invoice"): invoice,
            ("billing", "mark_invoice_viewed"): invoice,
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_get("/i/a-one-document-token")
    assert page.status_code == 200
    line_amounts, rows = page_rows(page.text)
    check_it_adds_up(invoice, line_amounts, [("Credits applied" if "applied" in k else k, v) for k, v in rows])


STATEMENT_AGING = {"currency": "USD", "current": 113500, "days_1_30": 150000, "days_31_60": 0, "days_61_90": 0}
STATEMENT_AGING |= {"days_over_90": 0, "total": 263500}


def test_the_statement_pdf_reconciles_its_closing_balance_with_its_aging():
    """Open invoices less credit not yet applied and retainer held, as printed, make the printed closing balance."""
    statement = {
        **DOCUMENTS["statement"],
        "to": "2026-11-30",
        "today": "2026-11-30",
        "closing_balance": 203500,
        "aging": STATEMENT_AGING,
        "unapplied_credit": 10000,
        "retainer_held": 50000,
        "reconciles": True,
    }
    text = " ".join(text_of(pdfmod.render_pdf("statement", {**context("statement"), "doc": statement})).split())
    line = re.search(r"Open invoices .*? = closing balance " + DOLLARS, text).group(0)
    open_total, credit, retainer, closing = (cents("", d) for _, d in re.findall(DOLLARS, line))
    assert (open_total, credit, retainer) == (263500, 10000, 50000)
    assert open_total - credit - retainer == closing == statement["closing_balance"]
    assert re.search(rf"Closing balance {DOLLARS}", text).group(2) == "2,035.00"


def test_the_statement_pdf_of_an_earlier_period_says_what_each_figure_is_as_of():
    statement = {**DOCUMENTS["statement"], "today": "2026-12-15", "aging": STATEMENT_AGING, "reconciles": False}
    statement |= {"unapplied_credit": 10000, "retainer_held": 50000}
    text = " ".join(text_of(pdfmod.render_pdf("statement", {**context("statement"), "doc": statement})).split())
    assert "The amounts owed above are as of today; the closing balance is as of" in text
    assert "Open invoices" not in text
