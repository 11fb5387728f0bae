"""Portal pages for booking time with the business, and for writing a review."""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import falcon

from services.gateway import usecases
from services.gateway.forms import field, refused_as
from services.gateway.pages.base import Portal

DAYS_PER_PAGE = 5


def slots_by_day(slots: list[str], tz: str) -> list[tuple[str, list[tuple[str, datetime]]]]:
    """[(local date ISO, [(slot ISO, local datetime), ...]), ...] in the client's time zone."""
    zone = ZoneInfo(tz)
    local = [(slot, datetime.fromisoformat(slot).astimezone(zone)) for slot in slots]
    return [(day, list(group)) for day, group in groupby(local, key=lambda pair: pair[1].date().isoformat())]


class BookingList(Portal):
    """The business's booking links and the client's upcoming bookings (with Cancel)."""

    def on_get(self, req, resp):
        session = self.session(req, resp)
        ws = session["workspace_id"]
        options = self.billing(req).booking_options(ws)
        upcoming = self.billing(req).list_bookings(ws, session["client_id"])
        self.page(
            req,
            resp,
            "bookings.html",
            session,
            links=options["links"],
            upcoming=upcoming,
            booked=req.get_param("booked"),
            cancelled=req.get_param("cancelled"),
        )

    def on_post(self, req, resp):
        """Confirm a booking (the last step after choosing a time)."""
        session = self.session(req, resp)
        form = self.form(req)
        link_id, start = field(form, "link_id", 50), field(form, "start", 40)
        booking = usecases.book_slot(self.billing(req), session, link_id, start)
        raise falcon.HTTPSeeOther(f"/bookings?{urlencode({'booked': booking['id']})}")


class BookingSlots(Portal):
    """Free times for one booking link, a few days per page, as radio buttons (no JavaScript)."""

    def on_get(self, req, resp, link_id: str):
        session = self.session(req, resp)
        client = self.billing(req).get_client(session["workspace_id"], session["client_id"])
        options = self.billing(req).booking_options(session["workspace_id"], link_id)
        days = slots_by_day(options["slots"], client["timezone"])
        pages = max(1, -(-len(days) // DAYS_PER_PAGE))
        number = min(req.get_param_as_int("page", min_value=1, max_value=100) or 1, pages)
        shown = days[(number - 1) * DAYS_PER_PAGE : number * DAYS_PER_PAGE]
        self.page(
            req,
            resp,
            "booking_slots.html",
            session,
            client=client,
            link=options["link"],
            days=shown,
            page_number=number,
            pages=pages,
            taken=req.get_param("taken"),
            unknown=req.get_param("unknown"),
        )


def is_time(text: str) -> bool:
    """Whether `text` names a moment (an ISO 8601 date and time with its offset), as offered times do."""
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


class BookingConfirm(Portal):
    """Step two: the chosen time, spelled out, with one Confirm button."""

    def on_get(self, req, resp, link_id: str):
        session = self.session(req, resp)
        start = req.get_param("start") or ""
        client = self.billing(req).get_client(session["workspace_id"], session["client_id"])
        options = self.billing(req).booking_options(session["workspace_id"], link_id)
        if start not in options["slots"]:  # gone since the list was shown, or never a time at all
            raise falcon.HTTPSeeOther(f"/bookings/new/{link_id}?{'taken' if is_time(start) else 'unknown'}=1")
        self.page(req, resp, "booking_confirm.html", session, client=client, link=options["link"], start=start)


class BookingCancel(Portal):
    def on_post(self, req, resp, booking_id: str):
        session = self.session(req, resp)
        usecases.cancel_booking(self.billing(req), session, booking_id)
        raise falcon.HTTPSeeOther("/bookings?cancelled=1")


class ReviewPage(Portal):
    def on_get(self, req, resp):
        session = self.session(req, resp)
        business = self.brand(session["workspace_id"])["name"]
        self.page(req, resp, "review.html", session, business=business, sent=req.get_param("sent") == "1")

    def on_post(self, req, resp):
        session = self.session(req, resp)
        form = self.form(req)
        rating = form.get("rating", "")
        stars = int(rating) if isinstance(rating, str) and rating in ("1", "2", "3", "4", "5") else 0
        message = field(form, "message", usecases.REVIEW_MAX)
        with refused_as("Choose a rating"):
            usecases.review_business(self.billing(req), session, stars, message)
        raise falcon.HTTPSeeOther("/review?sent=1")


def add_booking_routes(app: falcon.App, rpc, config) -> None:
    app.add_route("/bookings", BookingList(rpc, config))
    app.add_route("/bookings/new/{link_id}", BookingSlots(rpc, config))
    app.add_route("/bookings/new/{link_id}/confirm", BookingConfirm(rpc, config))
    app.add_route("/bookings/{booking_id}/cancel", BookingCancel(rpc, config))
    app.add_route("/review", ReviewPage(rpc, config))
