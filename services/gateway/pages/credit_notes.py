"""The client's credit notes: the list, with the credit not yet applied, and one credit note (its PDF
is a PdfDownload of kind credit_note). Every role reads them, as every role reads invoices."""

from __future__ import annotations

import falcon

from services.gateway.downloads import with_verify_urls
from services.gateway.pages.base import Portal

PAGE_SIZE = 20


class CreditNoteList(Portal):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req, resp)
        number = max(req.get_param_as_int("page", min_value=1, max_value=10_000) or 1, 1)
        listed = self.billing(req).list_client_credit_notes(
            session["workspace_id"],
            session["client_id"],
            {"limit": PAGE_SIZE, "offset": (number - 1) * PAGE_SIZE},
        )
        self.page(
            req,
            resp,
            "credit_notes.html",
            session,
            client=listed["client"],
            listed=listed,
            page_number=number,
            pages=max(1, -(-listed["total"] // PAGE_SIZE)),
        )


class CreditNoteDetail(Portal):
    def on_get(self, req: falcon.Request, resp: falcon.Response, credit_note_id: str) -> None:
        session = self.session(req, resp)
        note = self.billing(req).get_credit_note(
            session["workspace_id"], credit_note_id, client_id=session["client_id"]
        )
        # within the client (404 for anyone else's), with the address its paper's QR code opens
        note = with_verify_urls(self.config.portal_url, note)
        self.page(req, resp, "credit_note.html", session, client=note, note=note)
