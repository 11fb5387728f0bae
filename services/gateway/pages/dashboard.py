"""The dashboard: what the client owes, its credits and retainer, the last payment, recent items."""

from __future__ import annotations

import falcon

from services.gateway.pages.base import Base
from services.gateway.rpc import ContractViolation


class Dashboard(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req, resp)
        billing, ws, client = self.billing(req), session["workspace_id"], session["client_id"]
        try:
            data = billing.client_dashboard(ws, client, fields="brief")  # all the page shows
        except ContractViolation:  # a billing older than this gateway (a rolling upgrade) answers the whole
            data = billing.client_dashboard(ws, client)
        self.render(
            resp,
            "dashboard.html",
            session=session,
            d=data,
            locale=data["client"]["locale"],
            tz=data["client"]["timezone"],
        )
