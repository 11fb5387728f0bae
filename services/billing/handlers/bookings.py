"""Bookings (appointments with the business) and reviews, both made by clients in the portal."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from chassis.errors import Conflict, Invalid, NotFound
from chassis.fields import text
from chassis.scope import require_role
from services.billing import availability, domain
from services.billing.handlers.common import (
    client_row,
    get_scoped,
    iso,
    new_id,
    page_bounds,
    record_activity,
    settings_of,
    workspace_row,
)
from services.billing.tables import booking_cells, bookings, contacts, reviews

__all__ = ["booking_options", "book_slot", "list_bookings", "cancel_booking", "add_review", "list_reviews"]


def _link(ws_settings, link_id: str):
    link = next((link for link in ws_settings.booking_links if link.id == link_id), None)
    if link is None:
        raise NotFound("No such booking link.")
    return link


def _free_slots(uow, now: datetime, ws_row, link) -> list[datetime]:
    rules = settings_of(ws_row).booking
    until = now + timedelta(days=rules.horizon_days + 2)
    busy = set(
        uow.execute(
            sa.select(booking_cells.c.starts_at).where(
                booking_cells.c.workspace_id == ws_row.id,
                booking_cells.c.starts_at >= now - timedelta(days=1),
                booking_cells.c.starts_at < until,
            )
        ).scalars()
    )
    return availability.slots(
        rules.weekly,
        ws_row.timezone,
        timedelta(minutes=link.duration_minutes),
        timedelta(minutes=rules.slot_step_minutes),
        now,
        timedelta(hours=rules.min_notice_hours),
        rules.horizon_days,
        busy,
    )


def booking_options(uow, now: datetime, workspace_id: str, link_id: str | None = None) -> dict:
    """The workspace's booking links and, for the chosen one, its free start times (UTC)."""
    ws_row = workspace_row(uow, workspace_id)
    links = settings_of(ws_row).booking_links
    result = {"timezone": ws_row.timezone, "links": [link.model_dump() for link in links], "link": None, "slots": []}
    if link_id:
        link = _link(settings_of(ws_row), link_id)
        result["link"] = link.model_dump()
        result["slots"] = [iso(at) for at in _free_slots(uow, now, ws_row, link)]
    return result


def _booking_dict(row, timezone: str) -> dict:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "link_id": row.link_id,
        "title": row.title,
        "start": iso(row.starts_at),
        "end": iso(row.ends_at),
        "status": row.status,
        "timezone": timezone,
        "created_at": iso(row.created_at),
        "cancelled_at": iso(row.cancelled_at),
    }


def book_slot(uow, now: datetime, workspace_id: str, client_id: str, contact_id: str, link_id: str, start: str) -> dict:
    """Book one of the offered start times. The cells' primary key refuses a second booking of any
    overlapping time; the same client booking the same slot again gets its booking back."""
    require_role(domain.ACTING_ROLES, domain.ACTING_DETAIL)
    ws_row = workspace_row(uow, workspace_id)
    client = client_row(uow, workspace_id, client_id)
    contact = uow.execute(
        sa.select(contacts).where(
            contacts.c.id == contact_id, contacts.c.client_id == client_id, contacts.c.workspace_id == workspace_id
        )
    ).first()
    if contact is None:
        raise NotFound("No such contact.")
    link = _link(settings_of(ws_row), link_id)
    try:
        starts_at = datetime.fromisoformat(text(start, "start", 40))
    except ValueError:
        raise Invalid("Choose one of the times offered.", start="not a time") from None
    if starts_at.tzinfo is None:
        raise Invalid("Choose one of the times offered.", start="needs a time zone")
    ends_at = starts_at + timedelta(minutes=link.duration_minutes)
    mine = _same_booking(uow, workspace_id, client_id, link_id, starts_at)
    if mine is not None:
        return _booking_dict(mine, ws_row.timezone)
    if starts_at not in _free_slots(uow, now, ws_row, link):
        raise Conflict("That time is no longer available. Please choose another.", start="taken")
    booking_id = new_id()
    uow.execute(
        bookings.insert().values(
            id=booking_id,
            workspace_id=workspace_id,
            client_id=client_id,
            contact_id=contact_id,
            link_id=link_id,
            title=link.name,
            starts_at=starts_at,
            ends_at=ends_at,
            status="confirmed",
            created_at=now,
        )
    )
    try:
        with uow.conn.begin_nested():
            uow.execute(
                booking_cells.insert(),
                [
                    {"workspace_id": workspace_id, "starts_at": cell, "booking_id": booking_id}
                    for cell in availability.cells(starts_at, ends_at)
                ],
            )
    except sa.exc.IntegrityError:  # someone else took an overlapping time a moment ago
        raise Conflict("That time was just booked by someone else. Please choose another.", start="taken") from None
    row = get_scoped(uow, bookings, workspace_id, booking_id, "booking")
    booking = _booking_dict(row, ws_row.timezone)
    recipient = _recipient(contact, client)
    uow.publish("booking.confirmed", workspace_id, {"client_id": client_id, "booking": booking, "recipient": recipient})
    record_activity(
        uow,
        now,
        workspace_id,
        client_id,
        "booking.confirmed",
        f"Booked {link.name} for {starts_at.astimezone(ZoneInfo(ws_row.timezone)):%Y-%m-%d %H:%M %Z}",
        {"booking_id": booking_id},
    )
    return booking


def _recipient(contact, client) -> dict:
    """Who the booking email goes to, in the client's time zone (the one its portal shows times in) and
    with the client's locale, the language of a contact that has none of its own."""
    return {
        "contact_id": contact.id,
        "email": contact.email,
        "name": contact.name,
        "locale": contact.locale,
        "client_locale": client.locale,
        "timezone": client.timezone,
    }


def _same_booking(uow, workspace_id, client_id, link_id, starts_at):
    return uow.execute(
        sa.select(bookings).where(
            bookings.c.workspace_id == workspace_id,
            bookings.c.client_id == client_id,
            bookings.c.link_id == link_id,
            bookings.c.starts_at == starts_at,
            bookings.c.status == "confirmed",
        )
    ).first()


def list_bookings(
    uow, now: datetime, workspace_id: str, client_id: str | None = None, upcoming: bool = True
) -> list[dict]:
    ws_row = workspace_row(uow, workspace_id)
    query = sa.select(bookings).where(bookings.c.workspace_id == workspace_id)
    if client_id is not None:
        query = query.where(bookings.c.client_id == client_id)
    if upcoming:
        query = query.where(bookings.c.status == "confirmed", bookings.c.ends_at > now)
    rows = uow.execute(query.order_by(bookings.c.starts_at).limit(200)).all()
    return [_booking_dict(row, ws_row.timezone) for row in rows]


def cancel_booking(uow, now: datetime, workspace_id: str, booking_id: str, client_id: str | None = None) -> dict:
    """Frees the time and tells the client. Cancelling twice is harmless; a past booking stays."""
    require_role(domain.ACTING_ROLES, domain.ACTING_DETAIL)
    ws_row = workspace_row(uow, workspace_id)
    row = get_scoped(uow, bookings, workspace_id, booking_id, "booking", lock=True, client_id=client_id)
    if row.status == "cancelled":
        return _booking_dict(row, ws_row.timezone)
    if row.starts_at <= now:
        raise Conflict("This booking has already started and cannot be cancelled here.")
    uow.execute(booking_cells.delete().where(booking_cells.c.booking_id == booking_id))
    uow.execute(bookings.update().where(bookings.c.id == booking_id).values(status="cancelled", cancelled_at=now))
    row = get_scoped(uow, bookings, workspace_id, booking_id, "booking")
    booking = _booking_dict(row, ws_row.timezone)
    contact = uow.execute(sa.select(contacts).where(contacts.c.id == row.contact_id)).first()
    if contact is not None:
        uow.publish(
            "booking.cancelled",
            workspace_id,
            {
                "client_id": row.client_id,
                "booking": booking,
                "recipient": _recipient(contact, client_row(uow, workspace_id, row.client_id)),
            },
        )
    record_activity(
        uow, now, workspace_id, row.client_id, "booking.cancelled", f"Cancelled {row.title}", {"booking_id": booking_id}
    )
    return booking


def add_review(
    uow, now: datetime, workspace_id: str, client_id: str, contact_id: str, author_name: str, rating, message: str
) -> dict:
    require_role(domain.ACTING_ROLES, domain.ACTING_DETAIL)
    client_row(uow, workspace_id, client_id)
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise Invalid("Choose a rating from 1 to 5 stars.", rating="1 to 5")
    message = text(message, "message", 5000).strip()  # surrounding blank space trimmed
    author_name = text(author_name, "author_name", 200)
    review_id = new_id()
    uow.execute(
        reviews.insert().values(
            id=review_id,
            workspace_id=workspace_id,
            client_id=client_id,
            contact_id=contact_id,
            author_name=author_name,
            rating=rating,
            message=message,
            created_at=now,
        )
    )
    uow.publish("review.submitted", workspace_id, {"id": review_id, "client_id": client_id, "rating": rating})
    record_activity(
        uow, now, workspace_id, client_id, "review.submitted", f"Review: {rating} of 5 stars", {"review_id": review_id}
    )
    return {
        "id": review_id,
        "client_id": client_id,
        "author_name": author_name,
        "rating": rating,
        "message": message,
        "created_at": iso(now),
    }


def list_reviews(uow, now: datetime, workspace_id: str, client_id: str | None = None, limit=50, offset=0) -> dict:
    limit, offset = page_bounds(limit, offset, 200)
    query = sa.select(reviews).where(reviews.c.workspace_id == workspace_id)
    if client_id is not None:
        query = query.where(reviews.c.client_id == client_id)
    total = uow.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = uow.execute(query.order_by(reviews.c.created_at.desc(), reviews.c.id).limit(limit).offset(offset)).all()
    return {
        "total": total,
        "items": [
            {
                "id": r.id,
                "client_id": r.client_id,
                "author_name": r.author_name,
                "rating": r.rating,
                "message": r.message,
                "created_at": iso(r.created_at),
            }
            for r in rows
        ],
    }
