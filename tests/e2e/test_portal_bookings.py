"""Booking time with the business and writing a review, over HTTP against the running stack."""

import re
import threading

import pytest
import requests
from icalendar import Calendar

from tests.conftest import Browser, new_portal_client, sign_in

pytestmark = pytest.mark.e2e


def slots(html: str) -> list[str]:
    return re.findall(r'name="start" value="([^"]+)"', html)


def test_book_see_and_cancel_a_slot_with_calendar_emails(stack):
    made = new_portal_client(stack, "Booker Ltd", "booker@example.org")
    browser = sign_in(stack, "booker@example.org")
    page = browser.get(f"{stack.url}/bookings")
    assert "30-minute consultation" in page.text and "No upcoming bookings" in page.text
    choose = browser.get(f"{stack.url}/bookings/new/consultation-30")
    assert choose.status_code == 200 and "Eastern Time" in choose.text
    start = slots(choose.text)[0]
    confirm = browser.get(f"{stack.url}/bookings/new/consultation-30/confirm", params={"start": start})
    assert "Confirm booking" in confirm.text
    booked = browser.post(f"{stack.url}/bookings", data={"link_id": "consultation-30", "start": start})
    assert booked.status_code == 200 and "Your booking is confirmed" in booked.text
    assert len(re.findall(r'data-testid="booking"', booked.text)) == 1
    assert start not in slots(browser.get(f"{stack.url}/bookings/new/consultation-30").text)

    [mail] = stack.outbox.wait_for("booker@example.org", subject="Confirmed:")
    assert "(Eastern Time)" in mail.get_body(("plain",)).get_content()  # the zone the portal showed, named
    [invite] = [part for part in mail.iter_attachments() if part.get_content_type() == "text/calendar"]
    event = Calendar.from_ical(invite.get_content()).walk("VEVENT")[0]
    assert event.decoded("dtstart").isoformat() == start.replace("Z", "+00:00")

    booking_id = re.search(r'action="/bookings/([0-9a-f-]{36})/cancel"', booked.text).group(1)
    cancelled = browser.post(f"{stack.url}/bookings/{booking_id}/cancel")
    assert "Your booking is cancelled" in cancelled.text and "No upcoming bookings" in cancelled.text
    [gone] = stack.outbox.wait_for("booker@example.org", subject="Cancelled:")
    assert (
        "METHOD:CANCEL"
        in next(p for p in gone.iter_attachments() if p.get_content_type() == "text/calendar").get_content()
    )
    assert start in slots(browser.get(f"{stack.url}/bookings/new/consultation-30").text)
    assert made["client"]["name"] == "Booker Ltd"


def test_two_clients_racing_for_one_slot_get_one_booking(stack):
    new_portal_client(stack, "Racer One", "racer1@example.org")
    new_portal_client(stack, "Racer Two", "racer2@example.org")
    browsers = [sign_in(stack, f"racer{n}@example.org") for n in (1, 2)]
    start = slots(browsers[0].get(f"{stack.url}/bookings/new/consultation-30").text)[-1]
    forms = [{"link_id": "consultation-30", "start": start, "csrf_token": b.csrf_token()} for b in browsers]
    barrier, results = threading.Barrier(2), []

    def book(browser, form):
        barrier.wait()
        results.append(browser.post(f"{stack.url}/bookings", data=form, allow_redirects=False).status_code)

    threads = [threading.Thread(target=book, args=pair) for pair in zip(browsers, forms)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [303, 409]
    taken = browsers[1].get(
        f"{stack.url}/bookings/new/consultation-30/confirm", params={"start": start}, allow_redirects=False
    )
    assert taken.status_code == 303 and taken.headers["location"].endswith("?taken=1")


def test_bad_booking_requests_are_clear_and_book_nothing(stack):
    new_portal_client(stack, "Careful Co", "careful@example.org")
    browser = sign_in(stack, "careful@example.org")
    for form, status in (
        ({"link_id": "consultation-30", "start": "2020-01-01T10:00:00+00:00"}, 409),
        ({"link_id": "consultation-30", "start": "soon"}, 422),
        ({"link_id": "no-such-link", "start": "2030-01-01T10:00:00+00:00"}, 404),
    ):
        answer = browser.post(f"{stack.url}/bookings", data=form)
        assert answer.status_code == status, (form, answer.text)
        assert "<main" in answer.text
    assert browser.get(f"{stack.url}/bookings/new/no-such-link").status_code == 404
    assert "No upcoming bookings" in browser.get(f"{stack.url}/bookings").text


def test_a_review_is_stored_and_listed_in_the_admin_api(stack):
    made = new_portal_client(stack, "Reviewer Inc", "reviewer@example.org")
    browser = sign_in(stack, "reviewer@example.org")
    assert browser.post(f"{stack.url}/review", data={"rating": "9"}).status_code == 400
    sent = browser.post(f"{stack.url}/review", data={"rating": "4", "message": "Fast <b>and</b> friendly."})
    assert sent.status_code == 200 and "Thank you" in sent.text
    from tests.integration.test_admin_api import portalctl

    key = portalctl(stack, "key", "create", "--workspace", made["workspace_id"], "--name", "reviews")["key"]
    listed = requests.get(
        f"{stack.url}/api/admin/v1/reviews",
        params={"client_id": made["client"]["id"]},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert [(r["rating"], r["message"]) for r in listed["items"]] == [(4, "Fast <b>and</b> friendly.")]


def test_pages_need_a_session_and_forms_need_the_token(stack):
    anonymous = requests.get(f"{stack.url}/bookings", allow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    new_portal_client(stack, "Forger Ltd", "forger@example.org")
    browser = sign_in(stack, "forger@example.org")
    forged = browser.post(f"{stack.url}/review", data={"rating": "5", "csrf_token": "0" * 64})
    assert forged.status_code == 403 and "reload it and try again" in forged.text
    assert isinstance(browser, Browser)
