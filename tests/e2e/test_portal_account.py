"""Payments, statement, profile and contacting the business, as the Other Corp client (so the demo
client's figures other tests rely on stay untouched)."""

import re

import psycopg2
import pytest

from tests.conftest import new_portal_client, sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(stack):
    return sign_in(stack, "demo@example.com")


def test_payments_filter_sort_and_receipts(stack, demo):
    everything = demo.get(f"{stack.url}/payments").text
    receipts = re.findall(r'href="(/payments/[^"]+/receipt\.pdf)"', everything)
    assert len(receipts) == 4  # brand workshop, copywriting part, retainer, last year's logo
    retainer = re.findall(r"receipt\.pdf", demo.get(f"{stack.url}/payments", params={"kind": "retainer"}).text)
    assert len(retainer) == 1
    largest = demo.get(f"{stack.url}/payments", params={"sort": "-amount"}).text
    assert largest.index("$1,200.00") < largest.index("$250.00")
    pdf = demo.get(stack.url + receipts[0])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")


def test_statement_page_and_pdf(stack, demo):
    page = demo.get(f"{stack.url}/statement", params={"from": "2020-01-01", "to": "2099-12-31"})
    assert page.status_code == 200
    # closing = outstanding 2,635.00 - credit 100.00 - retainer 500.00 (seeded figures)
    assert re.search(r'data-testid="closing">\$2,035\.00<', page.text)
    assert (
        demo.get(f"{stack.url}/statement.pdf", params={"from": "2020-01-01", "to": "2099-12-31"}).content[:5]
        == b"%PDF-"
    )
    assert demo.get(f"{stack.url}/statement", params={"from": "2026-12-31", "to": "2026-01-01"}).status_code == 422
    bad_date = demo.get(f"{stack.url}/statement", params={"from": "soon"})
    assert bad_date.status_code == 422 and "The start date must be a date like 2026-11-23." in bad_date.text


def test_profile_edits_apply_to_future_invoices_and_email_is_read_only(stack):
    other = sign_in(stack, "other@example.com")
    page = other.get(f"{stack.url}/profile")
    assert "readonly" in page.text and "contact Acme Studio" in page.text
    saved = other.post(
        f"{stack.url}/profile",
        data={
            "name": "Otto O.",
            "phone": "+1 555 0777",
            "company": "Other Corp",
            "address": "10 New Street",
            "company_phone": "",
        },
    )
    assert saved.status_code == 200 and "Your changes are saved" in saved.text and "10 New Street" in saved.text
    assert other.post(f"{stack.url}/profile", data={"company": ""}).status_code == 400
    for empty in ("", "   "):  # the form again, saying so; the header still greets Otto
        refused = other.post(f"{stack.url}/profile", data={"name": empty, "phone": "+1 555 0000"})
        assert refused.status_code == 400 and "Enter your name." in refused.text and "Otto O." in refused.text
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT i.client_snapshot->>'address' FROM invoices i JOIN clients c ON c.id = i.client_id "
            "WHERE c.name = 'Other Corp'"
        )
        assert {row[0] for row in cur.fetchall()} == {"9 Elsewhere Ave"}  # issued invoices keep their details
        cur.execute("SELECT name, phone FROM contacts WHERE email = 'other@example.com'")
        assert cur.fetchone() == ("Otto O.", "+1 555 0777")


CATEGORIES = ("invoices", "quotes", "reminders", "receipts", "monthly_statement", "comment_replies", "bookings")
GERMAN_OUTSTANDING = re.compile(r'data-testid="outstanding">[0-9.]+,[0-9]{2}\xa0\S+<')
ENGLISH_OUTSTANDING = re.compile(r'data-testid="outstanding">\D*[0-9,]+\.[0-9]{2}<')


def test_a_language_chosen_on_the_profile_speaks_from_the_next_page_on(stack):
    """No new sign-in: the form's answer carries the session's credential in the new language, words
    and formats alike (the client's locale is en_US). A client of its own: the contact's language
    reaches auth by an event, and no other test's sign-in email may race it."""
    new_portal_client(stack, "Sprache GmbH", "sprache@example.org")
    contact = sign_in(stack, "sprache@example.org")
    before = contact.get(f"{stack.url}/dashboard").text
    assert '<html lang="en">' in before and ENGLISH_OUTSTANDING.search(before)
    mine = contact.get(f"{stack.url}/api/portal/v1/notification-preferences").json()
    form = {name: "on" for name in CATEGORIES if mine[name]}  # the boxes as they are; only the language changes
    saved = contact.post(f"{stack.url}/profile/notifications", data={**form, "email_locale": "de_DE"})
    assert saved.status_code == 200 and '<html lang="de">' in saved.text  # the profile page it lands on
    page = contact.get(f"{stack.url}/dashboard").text
    assert '<html lang="de">' in page and "Offener Betrag" in page and GERMAN_OUTSTANDING.search(page)
    back = contact.post(f"{stack.url}/profile/notifications", data={**form, "email_locale": ""})
    assert back.status_code == 200 and '<html lang="en">' in back.text  # the company's language again
    assert ENGLISH_OUTSTANDING.search(contact.get(f"{stack.url}/dashboard").text)


def test_contact_the_business_emails_it_once_and_records_activity(stack):
    other = sign_in(stack, "other@example.com")
    form = other.get(f"{stack.url}/contact").text
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', form).group(1)
    before = stack.outbox.count("billing@acme.example", "Question about PO")
    for _ in range(2):  # a double submit
        sent = other.post(
            f"{stack.url}/contact",
            data={"subject": "Question about PO", "message": "Hello <b>there</b>", "nonce": nonce},
        )
        assert sent.status_code == 200 and "on its way" in sent.text
    [message] = stack.outbox.wait_for("billing@acme.example", before + 1, subject="Question about PO")[-1:]
    assert message["Reply-To"] == "other@example.com"
    import time

    time.sleep(1)
    assert stack.outbox.count("billing@acme.example", "Question about PO") == before + 1
    assert other.post(f"{stack.url}/contact", data={"subject": "", "message": ""}).status_code == 400
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM activities WHERE kind = 'message.sent' AND summary LIKE %s", ("%Question about PO",)
        )
        assert cur.fetchone()[0] == 1  # recorded once, like the email
