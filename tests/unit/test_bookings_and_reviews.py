"""Booking slots and reviews: the availability rules in plain Python, the handlers on embedded SQLite."""

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chassis import event_contract
from chassis.errors import Conflict, Invalid, NotFound
from services.billing import availability
from services.billing import handlers as h
from tests.unit.test_billing_handlers import db, events  # noqa: F401 - fixtures

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York
WEEKDAYS = {day: ["09:00-12:00", "13:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}


def free(now=NOW, busy=(), duration=30, step=30, notice_hours=12, horizon=7, tz="America/New_York", weekly=None):
    return availability.slots(
        weekly or WEEKDAYS,
        tz,
        timedelta(minutes=duration),
        timedelta(minutes=step),
        now,
        timedelta(hours=notice_hours),
        horizon,
        set(busy),
    )


def test_slots_follow_the_weekly_windows_in_the_business_time_zone():
    slots = free()
    first = slots[0]
    # 12 hours' notice from Monday 10:00 New York: Tuesday 09:00 New York (EST, UTC-5) is the first
    assert first == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    tuesday = [s for s in slots if s.date() == first.date()]
    assert len(tuesday) == 6 + 8  # 09:00-12:00 and 13:00-17:00 in half hours
    assert datetime(2026, 11, 24, 17, 0, tzinfo=UTC) not in slots  # 12:00-13:00 lunch
    assert {s.astimezone(ZoneInfo("America/New_York")).weekday() for s in slots} == {0, 1, 2, 3, 4}  # no weekend


def test_dst_keeps_wall_clock_opening_hours():
    march = free(now=datetime(2027, 3, 12, 12, 0, tzinfo=UTC), notice_hours=0, horizon=4)
    before = [s for s in march if s.date().day == 12][0]
    after = [s for s in march if s.date().day == 15][0]
    assert (before.hour, after.hour) == (14, 13)  # 09:00 EST then 09:00 EDT


def test_busy_cells_hide_every_overlapping_start():
    start = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    taken = availability.cells(start, start + timedelta(minutes=60))
    slots = free(busy=taken, duration=60, step=15)
    assert start not in slots and start + timedelta(minutes=45) not in slots
    assert start - timedelta(minutes=60) in slots and start + timedelta(minutes=60) in slots


@pytest.mark.parametrize("window", ["17:00-09:00", "09:03-10:00", "nine-ten", "09:00"])
def test_bad_windows_are_refused(window):
    with pytest.raises(ValueError):
        availability.parse_window(window)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.sampled_from([15, 30, 45, 60, 90])), max_size=12))
def test_no_offered_slot_ever_overlaps_a_booking(existing):
    busy = set()
    base = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    for offset, minutes in existing:
        start = base + offset * availability.CELL
        busy.update(availability.cells(start, start + timedelta(minutes=minutes)))
    for slot in free(busy=busy, duration=45, step=15, horizon=3):
        assert not busy & set(availability.cells(slot, slot + timedelta(minutes=45)))


@pytest.fixture
def bookable(db):  # noqa: F811
    ws = db(
        h.create_workspace,
        {
            "name": "Acme",
            "email": "acme@example.com",
            "timezone": "America/New_York",
            "settings": {
                "booking_links": [
                    {"id": "call-30", "name": "30-minute call", "duration_minutes": 30},
                    {"id": "workshop", "name": "Workshop", "duration_minutes": 90},
                ]
            },
        },
    )["id"]
    people = []
    for name in ("One", "Two"):
        client = db(h.create_client, ws, {"name": f"Client {name}"})["id"]
        contact = db(
            h.add_contact, ws, client, {"email": f"{name.lower()}@example.com", "name": name, "portal_access": True}
        )["id"]
        people.append((client, contact))
    return ws, people


def test_book_list_and_cancel_with_emails_announced(db, bookable):  # noqa: F811
    ws, [(client, contact), _] = bookable
    options = db(h.booking_options, ws, "call-30")
    assert [link["id"] for link in options["links"]] == ["call-30", "workshop"]
    start = options["slots"][0]
    booking = db(h.book_slot, ws, client, contact, "call-30", start)
    assert booking["title"] == "30-minute call" and booking["status"] == "confirmed"
    assert start not in db(h.booking_options, ws, "call-30")["slots"]
    assert db(h.book_slot, ws, client, contact, "call-30", start)["id"] == booking["id"]  # a double submit
    assert [b["id"] for b in db(h.list_bookings, ws, client)] == [booking["id"]]
    [confirmed] = [json.loads(body) for body in events(db, "booking.confirmed")]
    assert confirmed["data"]["recipient"]["email"] == "one@example.com"
    cancelled = db(h.cancel_booking, ws, booking["id"], client_id=client)
    assert cancelled["status"] == "cancelled" and db(h.list_bookings, ws, client) == []
    assert start in db(h.booking_options, ws, "call-30")["slots"]
    db(h.cancel_booking, ws, booking["id"], client_id=client)  # twice is harmless, and announced once
    assert len(events(db, "booking.cancelled")) == 1


def test_the_booking_emails_are_told_the_client_s_time_zone_not_only_the_business_s(db, bookable):  # noqa: F811
    ws, _ = bookable
    client = db(h.create_client, ws, {"name": "Euro Kunde", "locale": "de_DE", "timezone": "Europe/Berlin"})["id"]
    contact = db(h.add_contact, ws, client, {"email": "euro@example.com", "locale": "de_DE", "portal_access": True})
    start = db(h.booking_options, ws, "call-30")["slots"][0]
    booking = db(h.book_slot, ws, client, contact["id"], "call-30", start)
    db(h.cancel_booking, ws, booking["id"], client_id=client)
    announced = [json.loads(body) for kind in ("booking.confirmed", "booking.cancelled") for body in events(db, kind)]
    assert [e["data"]["recipient"]["timezone"] for e in announced] == ["Europe/Berlin", "Europe/Berlin"]
    assert [e["data"]["booking"]["timezone"] for e in announced] == ["America/New_York", "America/New_York"]
    assert [event_contract.validate(e) for e in announced] == [[], []]  # as documented


def test_the_booking_emails_are_told_the_client_s_locale_for_a_contact_without_one(db, bookable):  # noqa: F811
    ws, _ = bookable
    client = db(h.create_client, ws, {"name": "Kunde GmbH", "locale": "de_DE", "timezone": "Europe/Berlin"})["id"]
    contact = db(h.add_contact, ws, client, {"email": "ohne@example.com", "portal_access": True})
    start = db(h.booking_options, ws, "call-30")["slots"][0]
    booking = db(h.book_slot, ws, client, contact["id"], "call-30", start)
    db(h.cancel_booking, ws, booking["id"], client_id=client)
    announced = [json.loads(body) for kind in ("booking.confirmed", "booking.cancelled") for body in events(db, kind)]
    recipients = [e["data"]["recipient"] for e in announced]
    assert [(r["locale"], r["client_locale"]) for r in recipients] == [(None, "de_DE"), (None, "de_DE")]
    assert [event_contract.validate(e) for e in announced] == [[], []]  # as documented


def test_an_overlapping_time_cannot_be_booked_by_anyone(db, bookable):  # noqa: F811
    ws, [(one, one_contact), (two, two_contact)] = bookable
    start = db(h.booking_options, ws, "workshop")["slots"][0]
    db(h.book_slot, ws, one, one_contact, "workshop", start)
    inside = (datetime.fromisoformat(start) + timedelta(minutes=30)).isoformat()
    for link, at in (("call-30", inside), ("workshop", start)):
        with pytest.raises(Conflict):
            db(h.book_slot, ws, two, two_contact, link, at)


def test_the_cells_refuse_a_race_the_slot_check_missed(db, bookable, monkeypatch):  # noqa: F811
    """Two requests that both saw the slot free: the database refuses the second, and keeps nothing of it."""
    from services.billing.handlers import bookings as module

    ws, [(one, one_contact), (two, two_contact)] = bookable
    start = db(h.booking_options, ws, "call-30")["slots"][0]
    db(h.book_slot, ws, one, one_contact, "call-30", start)
    monkeypatch.setattr(module, "_free_slots", lambda uow, now, ws_row, link: [datetime.fromisoformat(start)])
    with pytest.raises(Conflict, match="just booked"):
        db(h.book_slot, ws, two, two_contact, "call-30", start)
    assert [b["client_id"] for b in db(h.list_bookings, ws)] == [one]


@pytest.mark.parametrize(
    "start",
    [
        "tomorrow",
        "2026-11-24T14:00:00",
        "2026-11-24T14:07:00+00:00",
        "2026-11-28T15:00:00+00:00",
        "2026-11-23T16:00:00+00:00",
    ],
)
def test_times_not_offered_are_refused(db, bookable, start):  # noqa: F811
    ws, [(client, contact), _] = bookable
    with pytest.raises((Invalid, Conflict)):
        db(h.book_slot, ws, client, contact, "call-30", start)
    assert db(h.list_bookings, ws, client) == []


def test_bookings_are_scoped_to_their_client(db, bookable):  # noqa: F811
    ws, [(one, one_contact), (two, two_contact)] = bookable
    start = db(h.booking_options, ws, "call-30")["slots"][0]
    booking = db(h.book_slot, ws, one, one_contact, "call-30", start)
    with pytest.raises(NotFound):
        db(h.cancel_booking, ws, booking["id"], client_id=two)
    with pytest.raises(NotFound):
        db(h.book_slot, ws, two, one_contact, "call-30", start)  # another client's contact
    with pytest.raises(NotFound):
        db(h.booking_options, ws, "no-such-link")
    assert db(h.list_bookings, ws, two) == []


def test_reviews_are_stored_checked_and_listed(db, bookable):  # noqa: F811
    ws, [(one, one_contact), (two, _)] = bookable
    review = db(h.add_review, ws, one, one_contact, "One", 5, "  Quick and clear.  ")
    assert review["message"] == "Quick and clear."
    for rating in (0, 6, "5", True, None):
        with pytest.raises(Invalid):
            db(h.add_review, ws, one, one_contact, "One", rating, "x")
    assert [r["id"] for r in db(h.list_reviews, ws)["items"]] == [review["id"]]
    assert db(h.list_reviews, ws, two)["total"] == 0
    assert len(events(db, "review.submitted")) == 1
