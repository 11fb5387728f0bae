"""The statement of account, with its quick picks of a period, and the list of payments made."""

from __future__ import annotations

from datetime import date, timedelta

import falcon

from services.gateway.pages.base import Portal
from services.gateway.usecases import PAYMENT_KINDS, PAYMENT_SORTS


class PaymentList(Portal):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req, resp)
        kind, sort = req.get_param("kind") or "all", req.get_param("sort") or "-date"
        if kind not in dict(PAYMENT_KINDS) or sort not in dict(PAYMENT_SORTS):
            raise falcon.HTTPBadRequest(title="Unknown filter", description="Choose a filter and a sort from the page.")
        payments = self.billing(req).list_payments(
            session["workspace_id"],
            session["client_id"],
            None if kind == "all" else kind,
            sort,
        )
        self.page(
            req,
            resp,
            "payments.html",
            session,
            payments=payments,
            processing=self.billing(req).list_processing_payments(session["workspace_id"], session["client_id"]),
            kind=kind,
            sort=sort,
            kinds=PAYMENT_KINDS,
            sorts=PAYMENT_SORTS,
        )


ALL_TIME_FROM = date(1900, 1, 1)


def statement_periods(today: date) -> list[tuple[str, dict]]:
    """The statement's quick picks as (key, query), for `today` in the business's time zone. A period
    that ends today leaves "to" out, so billing ends it on its own today (a bookmark stays current);
    no query at all is billing's default, the last three months."""
    month = today.replace(day=1)
    last_month_end = month - timedelta(days=1)
    return [
        ("this_month", {"from": month.isoformat()}),
        ("last_month", {"from": last_month_end.replace(day=1).isoformat(), "to": last_month_end.isoformat()}),
        ("last_3_months", {}),
        ("this_year", {"from": month.replace(month=1).isoformat()}),
        ("all_time", {"from": ALL_TIME_FROM.isoformat()}),
    ]


class StatementPage(Portal):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = self.session(req, resp)
        ws, client = session["workspace_id"], session["client_id"]
        asked = {key: value for key in ("from", "to") if (value := req.get_param(key))}
        statement = self.billing(req).statement(ws, client, asked.get("from"), asked.get("to"))
        # Billing says what day it is for the business; without "to", the statement ends that day.
        today = statement.get("today") or statement["to"]  # an older billing sends no "today"
        periods = statement_periods(date.fromisoformat(today))
        shown = {key for key, query in periods if query == asked}  # in January, this month's "from" is the year's
        self.page(req, resp, "statement.html", session, client=statement, st=statement, periods=periods, shown=shown)
