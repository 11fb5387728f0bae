"""Every kind of portal email, delivered to a real SMTP server (aiosmtpd) and read back: headers,
both parts, links and attachments."""

from datetime import datetime, timedelta, timezone
from email import message_from_string, policy

import pytest
import sqlalchemy as sa
from icalendar import Calendar
from nameko.testing.services import worker_factory

from chassis.db import UnitOfWork
from chassis.events import envelope
from chassis.nameko_ext import DatabaseHandle
from services.documents import handlers, mails, preferences
from services.documents.mail import SmtpSender
from services.documents.pdf import Renderer
from services.documents.service import DocumentsService
from services.documents.storage import FileStorage
from services.documents.tables import emails
from tests.unit.test_documents_mail import smtp  # noqa: F401 - the SMTP server fixture
from tests.unit.test_documents_pdf import DOCUMENTS

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
SENDER = "Portal <no-reply@portal.example.com>"
BRAND = {
    "id": "ws1",
    "name": "Acme Studio",
    "email": "billing@acme.example.com",
    "address": "1 Market St",
    "brand_color": "#1d4ed8",
    "paper": "A4",
    "attach_pdf": True,
    "phone": "",
    "tax_id": "",
    "logo_url": "",
}
DANA = {"contact_id": "c1", "email": "dana@example.com", "name": "Dana"}
FAILED = {
    "client_id": "cl1",
    "amount": 5000,
    "currency": "USD",
    "reason": "Your card was declined.",
    "payment_id": "pi_1",
}


@pytest.fixture
def outbox(sqlite_engine, tmp_path, smtp):  # noqa: F811
    engine = sqlite_engine("documents")
    renderer = Renderer(FileStorage(tmp_path / "pdf"), concurrency=1)
    recorder, url = smtp()

    def send(build):
        with UnitOfWork(engine) as uow:
            build(uow, renderer)
            uow.commit()
        with UnitOfWork(engine) as uow:
            handlers.deliver_due(uow, SmtpSender(url), NOW)
        return recorder.messages

    yield send
    renderer.close()


def parts(message):
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def attachments(message):
    return {part.get_filename(): part for part in message.iter_attachments()}


def invoice_email(outbox, locale: str) -> tuple:
    """(recipients, message) of INV-2026-00042's email to Dana, in `locale`."""
    invoice = {**DOCUMENTS["invoice"], "client_id": "cl1", "locale": locale}
    [sent] = outbox(
        lambda uow, r: mails.document_sent(
            uow,
            NOW,
            SENDER,
            r,
            BRAND,
            key="k1",
            kind="invoice",
            document=invoice,
            recipient=DANA,
            link="http://portal.example.com/i/TOKEN",
        )
    )
    return sent


def test_invoice_email_has_the_link_in_both_parts_and_the_pdf_attached(outbox):
    rcpts, msg = invoice_email(outbox, "en_US")
    assert rcpts == ["dana@example.com"] and msg["Subject"] == "Invoice INV-2026-00042 from Acme Studio"
    text, html = parts(msg)
    assert "http://portal.example.com/i/TOKEN" in text and 'href="http://portal.example.com/i/TOKEN"' in html
    assert "$635.00" in text and "Dec 18, 2026" in text
    pdf = attachments(msg)["INV-2026-00042.pdf"]
    assert pdf.get_content_type() == "application/pdf" and pdf.get_content().startswith(b"%PDF-")


@pytest.mark.parametrize(
    "locale,says",
    [
        ("en_US", "View or download it online, or sign in to pay:"),
        ("de_DE", "Online ansehen, herunterladen oder nach der Anmeldung bezahlen:"),
    ],
)
def test_the_invoice_email_says_paying_takes_a_sign_in(outbox, locale, says):
    """The link opens the invoice without signing in; paying it there takes signing in first."""
    _, msg = invoice_email(outbox, locale)
    text, _ = parts(msg)
    assert f"{says} http://portal.example.com/i/TOKEN" in text


def test_forwarded_invoice_says_who_forwarded_it(outbox):
    invoice = {**DOCUMENTS["invoice"], "client_id": "cl1"}
    [(rcpts, msg)] = outbox(
        lambda uow, r: mails.document_sent(
            uow,
            NOW,
            SENDER,
            r,
            {**BRAND, "attach_pdf": False},
            key="k2",
            kind="invoice",
            document=invoice,
            recipient={"email": "accountant@example.com"},
            link="http://p/i/T",
            forwarded_by="Dana Demo",
            note="For the Q4 books",
        )
    )
    assert rcpts == ["accountant@example.com"] and msg["Subject"].startswith("Dana Demo forwarded you invoice")
    assert "For the Q4 books" in parts(msg)[0] and not attachments(msg)  # the setting turns the PDF off


def test_quote_email_links_to_the_quote(outbox):
    quote = {**DOCUMENTS["quote"], "client_id": "cl1"}
    [(_, msg)] = outbox(
        lambda uow, r: mails.document_sent(
            uow, NOW, SENDER, r, BRAND, key="k3", kind="quote", document=quote, recipient=DANA, link="http://p/i/Q"
        )
    )
    assert msg["Subject"] == "Quote QUO-2026-00007 from Acme Studio" and "http://p/i/Q" in parts(msg)[0]
    assert "QUO-2026-00007.pdf" in attachments(msg)


def test_payment_receipt_attaches_the_receipt(outbox):
    payment = {
        **DOCUMENTS["receipt"],
        "client_id": "cl1",
        "timezone": "America/New_York",
        "client": DOCUMENTS["invoice"]["client"],
    }
    [(_, msg)] = outbox(
        lambda uow, r: mails.payment_receipt(
            uow, NOW, SENDER, r, BRAND, key="k4", payment=payment, recipient=DANA, portal_url="http://p/login"
        )
    )
    text, html = parts(msg)
    assert msg["Subject"] == "Payment received: $250.00 · Acme Studio" and "INV-2026-00042: $250.00" in text
    when = "Friday, November 20, 2026, 10:00\u202fAM (Eastern Time)"  # in the client's time zone, named
    assert when in text and when in html and ":00:00" not in text
    assert attachments(msg)["receipt-2026-11-20-PAY_1234.pdf"].get_content().startswith(b"%PDF-")


def test_failed_payment_email_offers_to_pay_again(outbox):
    data = {
        "client_id": "cl1",
        "amount": 5000,
        "currency": "USD",
        "reason": "Your card was declined.",
        "payment_id": "pi_1",
    }
    [(_, msg)] = outbox(
        lambda uow, r: mails.payment_failed(
            uow, NOW, SENDER, BRAND, key="k5", data=data, recipient=DANA, link="http://p/pay"
        )
    )
    text, html = parts(msg)
    assert "did not go through" in msg["Subject"] and "declined" in text and 'href="http://p/pay"' in html


def test_a_reply_in_a_thread_quotes_the_business_and_links_to_the_document(outbox):
    comment = {
        "id": "cm1",
        "document_kind": "quote",
        "document_id": "q1",
        "client_id": "cl1",
        "author_kind": "business",
        "author_name": "Sam at Acme",
        "document_number": "Q-0007",
        "body": "We can do <b>10%</b> less if you take both phases.",
    }
    headers = {
        "List-Unsubscribe": "<http://p/unsubscribe?token=t>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    [(_, msg)] = outbox(
        lambda uow, r: mails.comment_reply(
            uow, NOW, SENDER, BRAND, key="k9", comment=comment, recipient=DANA, link="http://p/i/tok", headers=headers
        )
    )
    text, html = parts(msg)
    assert msg["Subject"] == "A reply on quote Q-0007 · Acme Studio" and msg["To"] == "dana@example.com"
    assert "Sam at Acme replied on quote Q-0007:" in text and "10%</b> less" in text  # plain text: as written
    assert "&lt;b&gt;10%&lt;/b&gt;" in html and 'href="http://p/i/tok"' in html  # HTML: the text, never markup
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_message_to_the_business_goes_to_its_address_and_replies_to_the_client(outbox):
    [(rcpts, msg)] = outbox(
        lambda uow, r: mails.business_message(
            uow,
            NOW,
            SENDER,
            BRAND,
            key="k6",
            client_id="cl1",
            client_name="Demo Client Ltd",
            from_name="Dana",
            from_email="dana@example.com",
            subject="PO number",
            message="Please add PO 4471 <b>thanks</b>",
        )
    )
    assert rcpts == ["billing@acme.example.com"] and msg["Reply-To"] == "dana@example.com"
    text, html = parts(msg)
    assert "Please add PO 4471 <b>thanks</b>" in text and "&lt;b&gt;thanks&lt;/b&gt;" in html  # escaped in HTML


def booking_email(outbox, booking_id: str, start: str, recipient: dict, cancelled: bool, key: str):
    """The email of a 30-minute booking of a New York business starting at `start` (UTC)."""
    begins = datetime.fromisoformat(start)
    booking = {
        "id": booking_id,
        "title": "30-minute consultation",
        "start": begins.isoformat(),
        "end": (begins + timedelta(minutes=30)).isoformat(),
        "timezone": "America/New_York",
        "created_at": "2026-11-23T12:00:00+00:00",
    }
    [(_, msg)] = outbox(
        lambda uow, r: mails.booking(
            uow,
            NOW,
            SENDER,
            BRAND,
            key=key,
            client_id="cl1",
            recipient=recipient,
            booking=booking,
            cancelled=cancelled,
            portal_url="http://p/bookings",
        )
    )
    return msg


@pytest.mark.parametrize("cancelled", [False, True])
def test_booking_emails_carry_a_calendar_invitation(outbox, cancelled):
    msg = booking_email(outbox, "b1", "2026-12-01T15:00:00+00:00", DANA, cancelled, key="k7")
    assert msg["Subject"].startswith("Cancelled" if cancelled else "Confirmed")
    # a recipient whose zone the event does not name: the booking's own (the workspace's), named
    assert "Tuesday, December 1, 2026, 10:00\u202fAM (Eastern Time)" in parts(msg)[0]
    [ics] = attachments(msg).values()
    calendar = Calendar.from_ical(ics.get_content())
    [event] = calendar.walk("VEVENT")
    assert str(calendar["method"]) == ("CANCEL" if cancelled else "REQUEST")
    assert str(event["uid"]) == "booking-b1@billing-portal" and event.decoded("dtstart").hour == 15


# A client in Berlin of a business in New York: 14:00 UTC is 15:00 for the client, 09:00 for the business.
BERLIN_WHEN = {
    "en_US": "Tuesday, December 8, 2026, 3:00\u202fPM (Central European Time)",
    "de_DE": "Dienstag, 8. Dezember 2026, 15:00 (Mitteleuropäische Zeit)",
}


@pytest.mark.parametrize("locale", ["en_US", "de_DE"])
@pytest.mark.parametrize("cancelled", [False, True])
def test_a_booking_email_gives_the_time_in_the_client_s_zone_and_names_it(outbox, locale, cancelled):
    euro = {**DANA, "email": "euro@example.com", "locale": locale, "timezone": "Europe/Berlin"}
    msg = booking_email(outbox, "b2", "2026-12-08T14:00:00+00:00", euro, cancelled, key="k9")
    text, html = parts(msg)
    when = BERLIN_WHEN[locale]
    subject = " ".join(msg["Subject"].split())  # as unfolded: a folded line may leave two spaces
    assert " ".join(when.split()) in subject and when in text and when in html
    assert "9:00" not in text + subject and ":00:00" not in text  # neither the business's time nor seconds


@pytest.mark.parametrize(
    "locale, summary",
    [("en_US", "30-minute consultation with Acme Studio"), ("de_DE", "30-minute consultation mit Acme Studio")],
)
def test_a_booking_invitation_is_titled_in_the_email_s_language(outbox, locale, summary):
    euro = {**DANA, "email": "euro@example.com", "locale": locale, "timezone": "Europe/Berlin"}
    msg = booking_email(outbox, "b4", "2026-12-08T14:00:00+00:00", euro, False, key="k11")
    [ics] = attachments(msg).values()
    [event] = Calendar.from_ical(ics.get_content()).walk("VEVENT")
    assert str(event["summary"]) == summary


def test_a_booking_email_to_a_contact_without_a_locale_is_in_the_client_s_language(outbox):
    # as billing announces it: the contact's own locale null, the client's beside it
    kunde = {**DANA, "locale": None, "client_locale": "de_DE", "timezone": "Europe/Berlin"}
    msg = booking_email(outbox, "b3", "2026-12-08T14:00:00+00:00", kunde, False, key="k10")
    assert BERLIN_WHEN["de_DE"] in parts(msg)[0] and "Hallo Dana," in parts(msg)[0]


@pytest.mark.parametrize(
    "locale, says",
    [
        (None, "expires on Tuesday, December 8, 2026, 7:19\u202fAM (Eastern Time)."),  # the workspace's locale
        ("de_DE", "ist bis Dienstag, 8. Dezember 2026, 07:19 (Nordamerikanische Ostküstenzeit) gültig."),
    ],
)
@pytest.mark.parametrize("rpc", ["send_magic_link", "send_password_reset_link"])
def test_a_sign_in_or_password_link_s_expiry_is_in_the_business_s_zone_named(sqlite_engine, rpc, locale, says):
    """Neither auth nor documents knows the client's zone here: the business's, named, never bare UTC."""
    engine = sqlite_engine("documents")
    with UnitOfWork(engine) as uow:
        handlers.apply_workspace(
            uow, {"id": "ws1", "name": "Acme Studio", "locale": "en_US", "timezone": "America/New_York"}, NOW
        )
        uow.commit()
    service = worker_factory(DocumentsService, db=DatabaseHandle(engine), clock=lambda: NOW)
    getattr(service, rpc)(
        to="euro@example.com",
        name="Eva",
        workspace_id="ws1",
        client_id="cl1",
        url="http://p/login/verify?token=T",
        expires_at="2026-12-08T12:19:00+00:00",
        idempotency_key="link:1",
        locale=locale,
    )
    with engine.connect() as conn:
        message = message_from_string(conn.execute(sa.select(emails.c.message)).scalar_one(), policy=policy.default)
    text, html = parts(message)
    assert says in text and says in html
    assert "UTC" not in text and "12:19" not in text


def test_statement_email_attaches_the_statement(outbox):
    statement = {**DOCUMENTS["statement"], "locale": "en_US"}
    [(_, msg)] = outbox(
        lambda uow, r: mails.statement(
            uow, NOW, SENDER, r, BRAND, key="k8", client_id="cl1", recipient=DANA, statement=statement
        )
    )
    assert "Closing balance: $755.00" in parts(msg)[0]
    assert "statement-2026-11-01-to-2026-11-30.pdf" in attachments(msg)


def test_a_german_statement_email_attaches_it_under_a_german_name(outbox):
    statement = {**DOCUMENTS["statement"], "locale": "de_DE"}
    [(_, msg)] = outbox(
        lambda uow, r: mails.statement(
            uow, NOW, SENDER, r, BRAND, key="k8", client_id="cl1", recipient=DANA, statement=statement
        )
    )
    assert list(attachments(msg)) == ["Kontoauszug-2026-11-01-bis-2026-11-30.pdf"]


def test_the_same_key_twice_sends_one_email(outbox):
    data = {"client_id": "cl1", "amount": 5000, "currency": "USD", "payment_id": "pi_1"}

    def twice(uow, r):
        for _ in range(2):
            mails.payment_failed(uow, NOW, SENDER, BRAND, key="same", data=data, recipient=DANA, link="http://p")

    assert len(outbox(twice)) == 1


def documents_service(sqlite_engine):
    """The documents service on embedded SQLite, with a New York business's branding and billing mocked."""
    engine = sqlite_engine("documents")
    with UnitOfWork(engine) as uow:
        workspace = {"id": "ws1", "name": "Acme Studio", "locale": "en_US", "timezone": "America/New_York"}
        handlers.apply_workspace(uow, workspace, NOW)
        uow.commit()
    service = worker_factory(DocumentsService, db=DatabaseHandle(engine), clock=lambda: NOW)
    service._branding_cache.pop("ws1", None)  # another test's branding of "ws1", cached by the process
    return engine, service


def queued(engine) -> list:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(emails.c.message).order_by(emails.c.created_at)).scalars().all()
    return [message_from_string(row, policy=policy.default) for row in rows]


@pytest.mark.parametrize(
    "locale, says",
    [
        (None, "Tuesday, December 8, 2026, 9:05\u202fAM (Eastern Time)"),  # the workspace's locale
        ("de_DE", "Dienstag, 8. Dezember 2026, 09:05 (Nordamerikanische Ostküstenzeit)"),
    ],
)
def test_a_new_device_notice_names_the_zone_of_its_time_without_seconds(sqlite_engine, locale, says):
    engine, service = documents_service(sqlite_engine)
    service.send_new_device_notice(
        to="dana@example.com",
        name="Dana",
        workspace_id="ws1",
        client_id="cl1",
        contact_id="c1",
        device={"browser": "Firefox", "os": "Windows", "ip": "198.51.100.7"},
        signed_in_at="2026-12-08T14:05:33+00:00",
        idempotency_key="new-device:1",
        locale=locale,
    )
    [message] = queued(engine)
    text, html = parts(message)
    assert says in text and says in html
    assert "America/New_York" not in text + html and ":33" not in text + html  # no zone id, no seconds


MANDATE = {
    "id": "md1",
    "client_id": "cl1",
    "contact_id": "c1",
    "email": "dana@example.com",
    "holder_name": "Dana Berg",
    "iban_last4": "3000",
    "reference": "MD-4471",
    "accepted_at": "2026-11-20T15:00:00+00:00",
}


@pytest.mark.parametrize(
    "locale, says",
    [
        ("en_US", "Accepted on: Friday, November 20, 2026, 4:00\u202fPM (Central European Time)"),
        ("de_DE", "Erteilt am: Freitag, 20. November 2026, 16:00 (Mitteleuropäische Zeit)"),
    ],
)
def test_a_mandate_copy_names_the_client_s_zone_of_its_acceptance(sqlite_engine, locale, says):
    engine, service = documents_service(sqlite_engine)
    service.billing.get_client.return_value = {
        "locale": locale,
        "timezone": "Europe/Berlin",
        "contacts": [{"id": "c1", "email": "dana@example.com", "name": "Dana", "locale": None, "portal_access": True}],
    }
    service.on_mandate_accepted(envelope("mandate.accepted", "ws1", MANDATE, occurred_at=NOW))
    [message] = queued(engine)
    text, html = parts(message)
    assert says in text and says.split(": ", 1)[1] in html
    assert ":00:00" not in text


def test_a_failed_payment_email_to_a_contact_without_a_locale_is_in_the_client_s_language(sqlite_engine):
    engine, service = documents_service(sqlite_engine)
    service.billing.get_client.return_value = {
        "locale": "de_DE",
        "timezone": "Europe/Berlin",
        "contacts": [{"id": "c1", "email": "dana@example.com", "name": "Dana", "locale": None, "portal_access": True}],
    }
    data = {"client_id": "cl1", "amount": 5000, "currency": "EUR", "reason": "", "payment_id": "pi_1"}
    service.on_payment_failed(envelope("payment.failed", "ws1", data, occurred_at=NOW))
    [message] = queued(engine)
    assert message["Subject"] == "Ihre Zahlung an Acme Studio ist nicht durchgegangen"


# A contact without a locale of its own, of a German client in Berlin, as billing's events name it.
OHNE = {**DANA, "locale": None, "client_locale": "de_DE", "timezone": "Europe/Berlin"}


def reminder_event(recipient: dict) -> dict:
    data = {
        "id": "inv1",
        "number": "INV-2026-00042",
        "client_id": "cl1",
        "kind": "before_3",
        "balance": 63500,
        "currency": "EUR",
        "due_date": "2026-12-18",
        "recipients": [recipient],
    }
    return envelope("invoice.reminder", "ws1", data, occurred_at=NOW)


def test_a_reminder_to_a_contact_without_a_locale_is_in_the_client_s_language(sqlite_engine):
    engine, service = documents_service(sqlite_engine)
    service.on_invoice_reminder(reminder_event(OHNE))
    [message] = queued(engine)
    text, html = parts(message)
    assert message["Subject"] == "Rechnung INV-2026-00042 ist am 18.12.2026 fällig · Acme Studio"
    assert "Hallo Dana," in text and "Offener Betrag: 635,00\xa0€" in text and "Hallo Dana," in html
    assert "Hello" not in text + html and "Amount due" not in text


@pytest.mark.parametrize(
    "recipient, subject",
    [
        # its own locale before the client's
        ({**OHNE, "locale": "en_US"}, "Invoice INV-2026-00042 is due on Dec 18, 2026 · Acme Studio"),
        # an event from before billing named the client's locale: English, as it always was
        (DANA, "Invoice INV-2026-00042 is due on Dec 18, 2026 · Acme Studio"),
    ],
)
def test_a_reminder_speaks_the_contact_s_own_locale_first_and_an_older_event_still_reads(
    sqlite_engine, recipient, subject
):
    engine, service = documents_service(sqlite_engine)
    service.on_invoice_reminder(reminder_event(recipient))
    [message] = queued(engine)
    assert message["Subject"] == subject


def comment_event(comment_id: str, recipient: dict) -> dict:
    data = {
        "id": comment_id,
        "document_kind": "invoice",
        "document_id": "inv1",
        "client_id": "cl1",
        "author_kind": "business",
        "author_name": "Sam at Acme",
        "document_number": "INV-2026-00042",
        "body": "Danke, ist angekommen.",
        "recipients": [recipient],
    }
    return envelope("comment.added", "ws1", data, occurred_at=NOW)


def test_a_reply_to_a_contact_without_a_locale_is_in_the_client_s_language(sqlite_engine):
    engine, service = documents_service(sqlite_engine)
    service.auth.issue_document_link.return_value = {"token": "tok"}
    service.on_comment_added(comment_event("cm2", OHNE))
    [message] = queued(engine)
    text, html = parts(message)
    assert message["Subject"] == "Eine Antwort zur Rechnung INV-2026-00042 · Acme Studio"
    assert "Hallo Dana," in text and "Sam at Acme hat zur Rechnung INV-2026-00042 geantwortet:" in text
    assert "Read and answer" not in html
    # the link leads to the thread on the invoice's page in the portal, not to a one-document link
    # (whose page shows no comments)
    assert "/invoices/inv1#comments" in text and 'href="http://localhost:8000/invoices/inv1#comments"' in html
    assert "/i/" not in text + html
    service.auth.issue_document_link.assert_not_called()

    service.on_comment_added(comment_event("cm3", DANA))  # from before the client's locale was in the event
    [_, message] = queued(engine)
    assert message["Subject"] == "A reply on invoice INV-2026-00042 · Acme Studio"


def test_a_receipt_gives_its_time_in_the_recipient_s_zone_and_the_client_s_language(outbox):
    payment = {**DOCUMENTS["receipt"], "client_id": "cl1", "client": DOCUMENTS["invoice"]["client"]}
    [(_, msg)] = outbox(
        lambda uow, r: mails.payment_receipt(
            uow, NOW, SENDER, r, BRAND, key="k11", payment=payment, recipient=OHNE, portal_url="http://p/login"
        )
    )
    text, html = parts(msg)
    when = "Freitag, 20. November 2026, 16:00 (Mitteleuropäische Zeit)"  # 15:00 UTC, in Berlin
    assert when in text and when in html and msg["Subject"].startswith("Zahlung erhalten")


def test_emails_sent_for_the_business_reply_to_it_and_sign_in_emails_to_no_one(sqlite_engine, smtp):  # noqa: F811
    """A client answering an invoice, a reminder or a reply reaches the business's address; answering a
    sign-in link or a new-device notice reaches no one (a reply would quote a live link). Delivered to
    the SMTP server and read back."""
    engine = sqlite_engine("documents")
    with UnitOfWork(engine) as uow:
        workspace = {"id": "ws1", "name": "Müller & Söhne, Bau", "email": "billing@acme.example.com"}
        handlers.apply_workspace(uow, {**workspace, "locale": "en_US", "timezone": "America/New_York"}, NOW)
        uow.commit()
    service = worker_factory(DocumentsService, db=DatabaseHandle(engine), clock=lambda: NOW)
    service._branding_cache.pop("ws1", None)  # an earlier test's branding of "ws1", cached by the process
    service.on_invoice_reminder(reminder_event(DANA))
    service.on_comment_added(comment_event("cm1", DANA))
    service.send_magic_link(
        to="dana@example.com",
        name="Dana",
        workspace_id="ws1",
        client_id="cl1",
        url="http://p/login/verify?token=T",
        expires_at="2026-12-08T12:19:00+00:00",
        idempotency_key="link:1",
    )
    service.send_new_device_notice(
        to="dana@example.com",
        name="Dana",
        workspace_id="ws1",
        client_id="cl1",
        contact_id="c1",
        device={"browser": "Firefox", "os": "Linux", "ip": "203.0.113.9"},
        signed_in_at="2026-12-08T14:05:00+00:00",
        idempotency_key="device:1",
    )
    recorder, url = smtp()
    with UnitOfWork(engine) as uow:
        handlers.deliver_due(uow, SmtpSender(url), NOW)
        uow.commit()
    received = {message["Subject"].split(" ")[0]: message for _, message in recorder.messages}
    assert len(recorder.messages) == 4
    for subject in ("Invoice", "A"):  # the reminder and the reply
        assert received[subject]["Reply-To"].addresses[0].addr_spec == "billing@acme.example.com"
        assert received[subject]["Reply-To"].addresses[0].display_name == "Müller & Söhne, Bau"
    unanswerable = [m for _, m in recorder.messages if m["Subject"].split(" ")[0] not in ("Invoice", "A")]
    assert len(unanswerable) == 2 and all(m["Reply-To"] is None for m in unanswerable)


def test_a_business_without_an_email_address_sets_no_reply_to(outbox):
    brand = {**BRAND, "email": ""}
    [(_, msg)] = outbox(
        lambda uow, r: mails.payment_failed(
            uow, NOW, SENDER, brand, key="k-no-address", data=FAILED, recipient=DANA, link="http://p/pay"
        )
    )
    assert msg["Reply-To"] is None


def test_an_essential_email_to_a_client_replies_to_the_business_too(outbox):
    [(_, msg)] = outbox(
        lambda uow, r: mails.payment_failed(
            uow, NOW, SENDER, BRAND, key="k-address", data=FAILED, recipient=DANA, link="http://p/pay"
        )
    )
    assert msg["Reply-To"] == "Acme Studio <billing@acme.example.com>"


def dispute_event(recipients: list[dict], **outcome) -> dict:
    data = {
        "dispute_id": "dp1",
        "invoice_id": "inv1",
        "number": "INV-2026-00042",
        "client_id": "cl1",
        "reason": "Line 2 was not delivered.",
        "lines": [2],
        "balance": 40000,
        "currency": "EUR",
        "autopay": False,
        "outcome": "adjusted",
        "message": "",
        "credit_note_id": "cn1",
        "credit_amount": 23500,
        "credit_note_number": "CN-2026-00003",
        "credit_currency": "EUR",
        "recipients": recipients,
        **outcome,
    }
    return envelope("invoice.dispute_resolved", "ws1", data, occurred_at=NOW)


def test_a_settled_dispute_tells_the_client_the_credit_note_s_number_and_amount(sqlite_engine, smtp):  # noqa: F811
    engine, service = documents_service(sqlite_engine)
    colleague = {**DANA, "contact_id": "c2", "email": "colleague@example.com", "name": "Cole"}
    quiet = {**DANA, "contact_id": "c3", "email": "quiet@example.com", "name": "Quinn"}
    with UnitOfWork(engine) as uow:  # this contact turned invoice emails off
        preferences.apply(uow, NOW, "ws1", {"contact_id": "c3", "client_id": "cl1", "invoices": False, "version": 2})
        uow.commit()
    service.on_invoice_dispute_resolved(dispute_event([OHNE, colleague, quiet]))
    service.on_invoice_dispute_resolved(dispute_event([OHNE, colleague, quiet]))  # redelivered: nothing twice
    recorder, url = smtp()
    with UnitOfWork(engine) as uow:
        handlers.deliver_due(uow, SmtpSender(url), NOW)
        uow.commit()
    sent = {rcpts[0]: message for rcpts, message in recorder.messages}
    assert sorted(sent) == ["colleague@example.com", "dana@example.com"]
    german, english = sent["dana@example.com"], sent["colleague@example.com"]
    assert german["Subject"] == "Gutschrift CN-2026-00003 zur Rechnung INV-2026-00042 · Acme Studio"
    text, html = parts(german)
    assert (
        "Acme Studio hat Ihre Beanstandung der Rechnung INV-2026-00042 mit der Gutschrift CN-2026-00003 über "
        "235,00\xa0€ ausgeglichen." in text
    )
    assert "http://localhost:8000/credit-notes/cn1" in text and 'href="http://localhost:8000/credit-notes/cn1"' in html
    assert "Gutschrift ansehen" in html
    assert english["Subject"] == "Credit note CN-2026-00003 for invoice INV-2026-00042 · Acme Studio"
    assert "with credit note CN-2026-00003 for €235.00." in parts(english)[0]


def test_a_rejected_dispute_tells_the_client_the_business_s_answer(sqlite_engine):
    engine, service = documents_service(sqlite_engine)
    service.on_invoice_dispute_resolved(
        dispute_event(
            [DANA],
            outcome="rejected",
            message="Line 2 was delivered on 3 December.",
            credit_note_id=None,
            credit_amount=None,
            credit_note_number=None,
            credit_currency=None,
        )
    )
    [message] = queued(engine)
    text, html = parts(message)
    assert message["Subject"] == "Your dispute of invoice INV-2026-00042 was answered · Acme Studio"
    assert "keeps the invoice as it is." in text and "Line 2 was delivered on 3 December." in text
    assert "http://localhost:8000/invoices/inv1" in text and "credit note" not in text.lower()


def test_a_resolved_dispute_from_before_it_named_recipients_emails_no_one(sqlite_engine):
    engine, service = documents_service(sqlite_engine)
    older = dispute_event([])
    del older["data"]["recipients"], older["data"]["credit_note_number"], older["data"]["credit_currency"]
    service.on_invoice_dispute_resolved(older)
    assert queued(engine) == []


# A card payment of $500.00 on INV-2026-00004 of which $100.00 was refunded (reopen policy), as billing's
# refund.recorded and then get_payment answer it.
REFUND = {
    "id": "re_1",
    "payment_id": "pi_1",
    "client_id": "cl1",
    "amount": 10000,
    "currency": "USD",
    "policy": "reopen",
    "reason": "requested_by_customer",
    "created_at": "2026-12-08T14:00:00+00:00",
    "from_unapplied": 0,
    "reversals": [
        {"invoice_id": "i4", "number": "INV-2026-00004", "amount": 10000, "status": "partially_paid", "balance": 10000}
    ],
    "recipients": [
        {**DANA, "locale": None, "client_locale": "en_US", "timezone": "America/New_York"},
        {
            "contact_id": "c2",
            "email": "eva@example.com",
            "name": "Eva",
            "locale": "de_DE",
            "client_locale": "en_US",
            "timezone": "America/New_York",
        },
    ],
}
REFUNDED_PAYMENT = {
    **DOCUMENTS["receipt"],
    "id": "pi_1",
    "client_id": "cl1",
    "amount": 50000,
    "reference": "Visa ending 4242",
    "received_at": "2026-12-07T15:32:45+00:00",
    "allocations": [{"invoice_id": "i4", "number": "INV-2026-00004", "amount": 40000}],
    "unapplied": 0,
    "refunded": 10000,
    "refunds": [{"id": "re_1", "amount": 10000, "created_at": "2026-12-08T14:00:00+00:00"}],
    "client": DOCUMENTS["invoice"]["client"],
    "locale": "en_US",
    "timezone": "America/New_York",
}


def refund_emails(sqlite_engine, tmp_path, monkeypatch, choices=None, paid_by=None):
    """Documents handling refund.recorded (twice, as a redelivery would), with billing's answer mocked."""
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", "s" * 32)
    engine, service = documents_service(sqlite_engine)
    if choices is not None:
        with UnitOfWork(engine) as uow:
            preferences.apply(uow, NOW, "ws1", {"contact_id": "c2", "client_id": "cl1", "version": 1, **choices})
            uow.commit()
    service.renderer = Renderer(FileStorage(tmp_path / "pdf"), concurrency=1)
    service.billing.get_payment.return_value = {**REFUNDED_PAYMENT, "paid_by_contact_id": paid_by}
    try:
        for _ in range(2):
            service.on_refund_recorded(envelope("refund.recorded", "ws1", REFUND, occurred_at=NOW))
    finally:
        service.renderer.close()
    assert [call.args for call in service.billing.get_payment.call_args_list][0] == ("ws1", "pi_1")
    return {message["To"]: message for message in queued(engine)}


def test_a_refund_is_emailed_with_its_payment_when_the_money_arrives_and_the_receipt(
    sqlite_engine, tmp_path, monkeypatch
):
    sent = refund_emails(sqlite_engine, tmp_path, monkeypatch)
    assert sorted(sent) == ["dana@example.com", "eva@example.com"]  # once each, though delivered twice
    english = sent["dana@example.com"]
    text, html = parts(english)
    assert english["Subject"] == "Refund: $100.00 · Acme Studio"
    for says in (
        "Acme Studio refunded $100.00 of your payment of $500.00 on Monday, December 7, 2026, 10:32\u202fAM"
        " (Eastern Time).",
        "The money goes back to Visa ending 4242.",
        "Card refunds usually reach your account within 5 to 10 business days.",
        "Your payment now comes to $400.00.",
        "Invoice INV-2026-00004 has $100.00 due again.",
    ):
        assert says in text and says in html, says
    [(name, attached)] = attachments(english).items()
    assert name == handlers.document_filename(
        "receipt", REFUNDED_PAYMENT, "America/New_York"
    )  # the day in Eastern Time
    receipt = attached.get_content()
    assert receipt.startswith(b"%PDF-")
    assert english["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # a receipts email: it may be turned off
    german, _ = parts(sent["eva@example.com"])
    assert sent["eva@example.com"]["Subject"] == "Erstattung: 100,00\xa0$ · Acme Studio"
    assert "Acme Studio hat Ihnen 100,00\xa0$ Ihrer Zahlung über 500,00\xa0$ vom Montag, 7. Dezember 2026" in german
    assert "innerhalb von 5 bis 10 Werktagen" in german and "Ihre Zahlung beträgt jetzt 400,00\xa0$." in german


def test_a_german_refund_email_names_the_card_the_money_goes_back_to_in_german(sqlite_engine, tmp_path, monkeypatch):
    sent = refund_emails(sqlite_engine, tmp_path, monkeypatch)
    for part in parts(sent["eva@example.com"]):
        assert "Visa mit Endziffern 4242" in part
        assert "ending" not in part


@pytest.mark.parametrize(
    "paid_by, emailed", [(None, ["dana@example.com"]), ("c2", ["dana@example.com", "eva@example.com"])]
)
def test_a_contact_who_turned_receipts_off_hears_only_of_the_refund_of_its_own_payment(
    sqlite_engine, tmp_path, monkeypatch, paid_by, emailed
):
    sent = refund_emails(sqlite_engine, tmp_path, monkeypatch, choices={"receipts": False}, paid_by=paid_by)
    assert sorted(sent) == emailed
    if paid_by:  # essential for the contact who paid: no unsubscribe link
        assert sent["eva@example.com"]["List-Unsubscribe"] is None


def test_a_receipt_email_links_to_the_portal_s_payments_page_as_a_refund_email_does(
    sqlite_engine, tmp_path, monkeypatch
):
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", "s" * 32)
    monkeypatch.setenv("PORTAL_URL", "https://portal.example.com")
    engine, service = documents_service(sqlite_engine)
    service.renderer = Renderer(FileStorage(tmp_path / "pdf"), concurrency=1)
    service.billing.get_payment.return_value = REFUNDED_PAYMENT
    recorded = {"id": "pi_1", "client_id": "cl1", "recipients": REFUND["recipients"][:1]}
    try:
        service.on_payment_recorded(envelope("payment.recorded", "ws1", recorded, occurred_at=NOW))
    finally:
        service.renderer.close()
    [receipt] = queued(engine)
    for part in parts(receipt):
        assert "https://portal.example.com/payments" in part
        assert "/login" not in part
