"""The dashboard: what the client owes, its credits and retainer, the last payment, recent items."""

from __future__ import annotations

import falcon

from services.gateway.pages.base import Base


class Dashboard(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req, resp)
        data = self.billing(req).client_dashboard(session["workspace_id"], session["client_id"])
        self.render(
            resp,
            "dashboard.html",
            session=session,
            d=data,
            locale=data["client"]["locale"],
            tz=data["client"]["timezone"],
        )
