"""Where each portal page is served: the pages' routes, area by area (services/gateway/pages/)."""

from __future__ import annotations

from typing import Any

import falcon

from chassis.clock import Clock
from services.gateway.branding import BrandCss, BrandLogo
from services.gateway.pages.bank_debit import add_bank_debit_routes
from services.gateway.pages.bookings import add_booking_routes
from services.gateway.pages.credit_notes import CreditNoteDetail, CreditNoteList
from services.gateway.pages.dashboard import Dashboard
from services.gateway.pages.devices import add_device_routes
from services.gateway.pages.document_check import add_document_check_routes
from services.gateway.pages.documents import DocumentLink, DocumentLinkPdf, EInvoiceDownload, PdfDownload
from services.gateway.pages.health import Health
from services.gateway.pages.invoices import InvoiceComment, InvoiceDetail, InvoiceDispute, InvoiceForward, InvoiceList
from services.gateway.pages.notifications import add_notification_routes
from services.gateway.pages.passkeys import add_passkey_routes
from services.gateway.pages.passwords import add_password_routes
from services.gateway.pages.payments import add_payment_routes
from services.gateway.pages.profile import ContactBusiness, ProfilePage
from services.gateway.pages.quotes import QuoteAccept, QuoteChanges, QuoteDetail, QuoteList, QuoteReject
from services.gateway.pages.sign_in import DevMail, Login, Logout, Root, Verify
from services.gateway.pages.statement import PaymentList, StatementPage
from services.gateway.pages.team import add_team_routes
from services.gateway.pdf_fetch import PdfFetcher


def add_routes(app: falcon.App, rpc: Any, health_rpc: Any, config: Any, clock: Clock) -> None:
    """Sign-in, the client's documents and account, health, and the business's brand."""
    pdfs = PdfFetcher(config.pdf_fetch_secret, documents_url=config.documents_url, clock=clock)
    app.add_route("/", Root(rpc, config))
    app.add_route("/login", Login(rpc, config))
    app.add_route("/login/verify", Verify(rpc, config))
    app.add_route("/logout", Logout(rpc, config))
    app.add_route("/dashboard", Dashboard(rpc, config))
    app.add_route("/healthz", Health(health_rpc, config))
    if config.dev:
        app.add_route("/dev/mail", DevMail(rpc, config))
    app.add_route("/invoices", InvoiceList(rpc, config))
    app.add_route("/invoices/{invoice_id}", InvoiceDetail(rpc, config))
    app.add_route("/invoices/{invoice_id}/comments", InvoiceComment(rpc, config))
    app.add_route("/invoices/{invoice_id}/forward", InvoiceForward(rpc, config))
    app.add_route("/invoices/{invoice_id}/dispute", InvoiceDispute(rpc, config))
    app.add_route("/invoices/{invoice_id}/pdf", PdfDownload(rpc, config, "invoice", pdfs))
    app.add_route("/invoices/{invoice_id}/xml", EInvoiceDownload(rpc, config))
    app.add_route("/quotes", QuoteList(rpc, config))
    app.add_route("/quotes/{quote_id}", QuoteDetail(rpc, config))
    app.add_route("/quotes/{quote_id}/accept", QuoteAccept(rpc, config))
    app.add_route("/quotes/{quote_id}/reject", QuoteReject(rpc, config))
    app.add_route("/quotes/{quote_id}/changes", QuoteChanges(rpc, config))
    app.add_route("/quotes/{quote_id}/pdf", PdfDownload(rpc, config, "quote", pdfs))
    app.add_route("/credit-notes", CreditNoteList(rpc, config))
    app.add_route("/credit-notes/{credit_note_id}", CreditNoteDetail(rpc, config))
    app.add_route("/credit-notes/{credit_note_id}/pdf", PdfDownload(rpc, config, "credit_note", pdfs))
    app.add_route("/payments", PaymentList(rpc, config))
    app.add_route("/payments/{object_id}/receipt.pdf", PdfDownload(rpc, config, "receipt", pdfs))
    app.add_route("/statement", StatementPage(rpc, config))
    app.add_route("/profile", ProfilePage(rpc, config))
    app.add_route("/contact", ContactBusiness(rpc, config))
    app.add_route("/statement.pdf", PdfDownload(rpc, config, "statement", pdfs))
    app.add_route("/i/{token}", DocumentLink(rpc, config))
    app.add_route("/i/{token}/pdf", DocumentLinkPdf(rpc, config, pdfs))
    app.add_route("/brand/{workspace_id}.css", BrandCss(rpc))
    app.add_route("/brand/{workspace_id}/logo", BrandLogo(rpc))


def add_page_routes(app: falcon.App, rpc: Any, health_rpc: Any, config: Any, clock: Clock) -> None:
    """Every portal page (the JSON APIs add their own routes)."""
    add_routes(app, rpc, health_rpc, config, clock)
    add_booking_routes(app, rpc, config)
    add_team_routes(app, rpc, config)
    add_document_check_routes(app, rpc, config)
    add_password_routes(app, rpc, config)
    add_payment_routes(app, rpc, config)
    add_bank_debit_routes(app, rpc, config)
    add_passkey_routes(app, rpc, config)
    add_notification_routes(app, rpc, config, clock)
    add_device_routes(app, rpc, config)
