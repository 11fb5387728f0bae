"""Every portal page a client can reach, on a phone (390x844) and a desktop (1280x900), in the light and
the dark colour scheme: nothing scrolls sideways, axe-core finds nothing serious (contrast included), and
a screenshot of each is kept in test-artifacts/phone-layout/ for review. Phones of 360 and 414 px are
checked for sideways scrolling too, and the menu works with JavaScript turned off."""

from __future__ import annotations

import re
import shutil
from datetime import date, timedelta
from urllib.parse import urlencode

import pytest

from tests.conftest import ARTIFACTS, Browser, link_token, new_portal_client, sign_in
from tests.e2e.payments_support import CARD_OK, paid_by_card, save_card, start
from tests.e2e.test_browser import browser  # noqa: F401 - the browser fixture, shared

pytestmark = pytest.mark.e2e
SHOTS = ARTIFACTS / "phone-layout"
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 900}
SCHEMES = ("light", "dark")
PHONE_PERSON = "phone-person@example.org"


def cookies_of(session, stack) -> list[dict]:
    """A signed-in requests session's cookies, for a browser context."""
    return [{"name": c.name, "value": c.value, "url": stack.url} for c in session.cookies]


def overflow(page) -> dict | None:
    """How far the page scrolls sideways, and the widest elements that stick out; None when it does not."""
    return page.evaluate("""() => {
        const width = window.innerWidth, scroll = document.documentElement.scrollWidth;
        if (scroll <= width) return null;
        const wide = [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right > width + 0.5)
            .slice(0, 5).map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''));
        return {scrollWidth: scroll, innerWidth: width, wide};
    }""")


def serious_violations(page) -> list:
    """axe-core's serious and critical findings; its colour-contrast rule must have run on the page's text."""
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page)
    assert any(rule["id"] == "color-contrast" for rule in result.response["passes"]), page.url
    return [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


BACKGROUND = {"light": "rgb(245, 247, 250)", "dark": "rgb(15, 20, 26)"}


@pytest.fixture(scope="module")
def pages(stack):
    """{who: (cookies, [(name, path)])}: every page, with the signed-in client that can see it."""
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    base = stack.url
    demo = sign_in(stack, "demo@example.com")
    invoice, overdue = (
        re.search(r'href="/invoices/([0-9a-f-]+)"', demo.get(f"{base}/invoices", params={"status": status}).text).group(
            1
        )
        for status in ("partially_paid", "overdue")
    )
    quote = re.search(r'href="/quotes/([0-9a-f-]+)"', demo.get(f"{base}/quotes", params={"status": "pending"}).text)
    credit_note = re.search(r'href="/credit-notes/([0-9a-f-]+)"', demo.get(f"{base}/credit-notes").text).group(1)
    slots = demo.get(f"{base}/bookings/new/consultation-30").text
    # a time from the middle of what is offered: the earliest drops out once the minimum notice passes
    # it, which can happen between this fixture and the page's visit minutes later
    offered = re.findall(r'name="start" value="([^"]+)"', slots)
    slot = offered[len(offered) // 2]
    confirm = demo.get(f"{base}/bookings/new/consultation-30/confirm", params={"start": slot})
    assert "Confirm booking" in confirm.text and "no longer available" not in confirm.text

    # A client of its own for the pay pages: a saved card, a paid invoice and one left to pay.
    made = new_portal_client(stack, "Phone Person", PHONE_PERSON, invoices=2, quotes=1)
    person = sign_in(stack, PHONE_PERSON)
    save_card(person, stack, CARD_OK)
    paid, unpaid = (inv["id"] for inv in made["invoices"])
    paid_attempt = paid_by_card(person, stack, paid)
    open_attempt = start(person, stack, invoice=unpaid).headers["Location"].rsplit("/", 1)[1]

    links = {}
    for document in (made["invoices"][1], made["quotes"][0]):
        mail = stack.outbox.wait_for(PHONE_PERSON, subject=document["number"])[-1]
        token = re.search(r"/i/([A-Za-z0-9_-]+)", mail.get_body(("plain",)).get_content()).group(1)
        links[document["number"]] = f"/i/{token}"
    quote_link, invoice_link = links[made["quotes"][0]["number"]], links[made["invoices"][1]["number"]]
    return {
        "demo": (
            cookies_of(demo, stack),
            [
                ("dashboard", "/dashboard"),
                ("invoices", "/invoices"),
                ("invoice", f"/invoices/{invoice}"),
                ("invoice-with-comments", f"/invoices/{overdue}"),
                ("invoice-print", f"/invoices/{invoice}?print=1"),
                ("quotes", "/quotes"),
                ("quote", f"/quotes/{quote.group(1)}"),
                ("payments", "/payments"),
                ("credit-notes", "/credit-notes"),
                ("credit-note", f"/credit-notes/{credit_note}"),
                ("statement", "/statement"),
                ("statement-all-time", "/statement?from=1900-01-01"),
                ("profile", "/profile"),
                ("contact", "/contact"),
                ("review", "/review"),
                ("bookings", "/bookings"),
                ("booking-slots", "/bookings/new/consultation-30"),
                ("booking-confirm", f"/bookings/new/consultation-30/confirm?{urlencode({'start': slot})}"),
            ],
        ),
        "person": (
            cookies_of(person, stack),
            [
                ("cards", "/payment-methods"),
                ("pay-review", f"/pay?invoice={unpaid}"),
                ("pay-card", f"/pay/{open_attempt}"),
                ("pay-done", f"/pay/{paid_attempt}/done"),
            ],
        ),
        "nobody": (
            [],
            [
                ("login", "/login"),
                ("document-invoice", invoice_link),
                ("document-quote", quote_link),
                ("not-found", "/no/such/page"),
            ],
        ),
    }


def visit(page, base: str, path: str) -> None:
    """Open the page (the page itself, not an error or a redirect) and wait for it to be drawn."""
    answer = page.goto(f"{base}{path}")
    assert answer.status == (404 if path == "/no/such/page" else 200) and answer.url == f"{base}{path}", path
    page.wait_for_load_state("load")
    if path == "/payment-methods" or (path.startswith("/pay/") and not path.endswith("/done")):
        page.wait_for_selector("#card-element input", state="attached")  # the card element is drawn


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_page_fits_and_reads_in_both_colour_schemes(stack, browser, pages, viewport):  # noqa: F811
    problems = []
    for who, (cookies, paths) in pages.items():
        context = browser.new_context(viewport=viewport)
        context.add_cookies(cookies)
        page = context.new_page()
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            for name, path in paths:
                visit(page, stack.url, path)
                shot = f"{name}-{viewport['width']}-{scheme}"
                page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
                assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND[scheme]
                wide = overflow(page)
                if wide:
                    problems.append((shot, "scrolls sideways", wide))
                serious = serious_violations(page)
                if serious:
                    problems.append((shot, "axe", serious))
        context.close()
    assert not problems, "\n".join(map(str, problems))


def test_the_open_menu_on_a_phone(stack, browser, pages):  # noqa: F811
    context = browser.new_context(viewport=PHONE)
    context.add_cookies(pages["demo"][0])
    page = context.new_page()
    problems = []
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        visit(page, stack.url, "/statement")
        menu = page.get_by_role("navigation", name="Main")
        assert not menu.get_by_role("link", name="Invoices").is_visible()  # folded away on a phone
        page.locator("summary", has_text="Menu").click()
        assert menu.get_by_role("link", name="Invoices").is_visible()
        assert menu.get_by_role("link", name="Statement").get_attribute("aria-current") == "page"
        page.screenshot(path=str(SHOTS / f"menu-open-390-{scheme}.png"), full_page=True)
        if overflow(page):
            problems.append((scheme, "scrolls sideways", overflow(page)))
        if serious_violations(page):
            problems.append((scheme, "axe", serious_violations(page)))
    context.close()
    assert not problems, problems


def test_the_menu_is_a_row_of_links_on_a_desktop(stack, browser, pages):  # noqa: F811
    context = browser.new_context(viewport=DESKTOP)
    context.add_cookies(pages["demo"][0])
    page = context.new_page()
    visit(page, stack.url, "/dashboard")
    assert not page.locator("summary", has_text="Menu").is_visible()
    nav = page.get_by_role("navigation", name="Main")
    tops = {round(nav.get_by_role("link", name=name).bounding_box()["y"]) for name in ("Dashboard", "Contact us")}
    assert len(tops) == 1  # one row
    nav.get_by_role("link", name="Invoices").click()
    page.wait_for_url(f"{stack.url}/invoices")
    context.close()


@pytest.mark.parametrize("width", [360, 390, 414])
def test_no_page_scrolls_sideways_on_small_phones(stack, browser, pages, width):  # noqa: F811
    """Every page at each phone width; the dashboard, invoices and statement are kept as screenshots."""
    problems = []
    for who, (cookies, paths) in pages.items():
        context = browser.new_context(viewport={"width": width, "height": 800})
        context.add_cookies(cookies)
        page = context.new_page()
        for name, path in paths:
            visit(page, stack.url, path)
            if name in ("dashboard", "invoices", "statement"):
                page.screenshot(path=str(SHOTS / f"{name}-{width}-light.png"), full_page=True)
            wide = overflow(page)
            if wide:
                problems.append((name, width, wide))
        context.close()
    assert not problems, "\n".join(map(str, problems))


def test_german_pages_fit_a_small_phone(stack, browser):  # noqa: F811
    """German words are longer: the German client's pages at 360 px."""
    euro = Browser(stack.url)
    before = stack.outbox.count("euro@example.com", "Anmeldelink")
    assert euro.post(f"{stack.url}/login", data={"email": "euro@example.com"}).status_code == 200
    token = link_token(stack.outbox.wait_for("euro@example.com", before + 1, subject="Anmeldelink")[-1])
    assert euro.post(f"{stack.url}/login/verify", data={"token": token}, allow_redirects=False).status_code == 303
    context = browser.new_context(viewport={"width": 360, "height": 800})
    context.add_cookies(cookies_of(euro, stack))
    page = context.new_page()
    problems = []
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        for name, path in (
            ("dashboard", "/dashboard"),
            ("invoices", "/invoices"),
            ("statement", "/statement"),
            ("payments", "/payments"),
            ("credit-notes", "/credit-notes"),
        ):
            visit(page, stack.url, path)
            assert page.get_attribute("html", "lang") == "de"
            page.screenshot(path=str(SHOTS / f"de-{name}-360-{scheme}.png"), full_page=True)
            if overflow(page):
                problems.append((name, scheme, overflow(page)))
            if serious_violations(page):
                problems.append((name, scheme, serious_violations(page)))
    context.close()
    assert not problems, problems


def test_the_menu_works_without_javascript(stack, browser):  # noqa: F811
    """A phone with JavaScript off: the menu opens, its links navigate, and signing out works."""
    demo = sign_in(stack, "demo@example.com")  # a session of its own: this test signs it out
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    context.add_cookies(cookies_of(demo, stack))
    page = context.new_page()
    page.goto(f"{stack.url}/dashboard")
    menu = page.get_by_role("navigation", name="Main")
    assert not menu.get_by_role("link", name="Invoices").is_visible()
    page.locator("summary", has_text="Menu").click()
    menu.get_by_role("link", name="Invoices").click()
    page.wait_for_url(f"{stack.url}/invoices")
    assert page.inner_text("h1") == "Invoices"
    page.screenshot(path=str(SHOTS / "no-script-invoices-390.png"), full_page=True)
    page.locator("summary", has_text="Menu").click()
    menu.get_by_role("link", name="Statement").click()
    page.wait_for_url(f"{stack.url}/statement")
    page.get_by_role("link", name="This year").click()
    page.wait_for_url(re.compile(r"/statement\?from=\d{4}-01-01$"))
    assert page.get_attribute(".filters a.active", "href").endswith("-01-01")
    page.locator("summary", has_text="Menu").click()
    menu.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile("/login"))
    context.close()


def test_the_statement_opens_with_content_and_its_quick_picks_set_the_period(stack, browser, pages):  # noqa: F811
    context = browser.new_context(viewport=PHONE)
    context.add_cookies(pages["demo"][0])
    page = context.new_page()
    visit(page, stack.url, "/statement")
    picks = page.get_by_role("navigation", name="Period")
    assert picks.locator("[aria-current=page]").inner_text() == "Last 3 months"
    rows = "table tbody tr"
    recent = page.locator(rows).count() - 2  # less the opening and closing balances
    assert recent > 0, "the statement opens on a period with entries"

    picks.get_by_role("link", name="All time").click()
    page.wait_for_url(re.compile(r"/statement\?from=1900-01-01$"))
    assert page.input_value("#from") == "1900-01-01" and page.locator(rows).count() - 2 > recent

    picks.get_by_role("link", name="Last month").click()
    page.wait_for_url(re.compile(r"/statement\?from=\d{4}-\d{2}-01&to=\d{4}-\d{2}-\d{2}$"))
    start, end = (date.fromisoformat(page.input_value(field)) for field in ("#from", "#to"))
    assert picks.locator("[aria-current=page]").inner_text() == "Last month"

    picks.get_by_role("link", name="This month").click()
    page.wait_for_url(re.compile(r"/statement\?from=\d{4}-\d{2}-01$"))
    this_month, today = (date.fromisoformat(page.input_value(field)) for field in ("#from", "#to"))
    assert start.day == 1 and end + timedelta(days=1) == this_month  # last month: all of it, up to this one
    assert this_month <= today < this_month + timedelta(days=31)  # this month: from its 1st to today
    picks.get_by_role("link", name="This year").click()
    page.wait_for_url(re.compile(r"/statement\?from=\d{4}-01-01$"))
    assert page.input_value("#from") == f"{today.year}-01-01"
    context.close()


def test_the_dashboards_invoice_numbers_open_their_invoices(stack, browser, pages):  # noqa: F811
    context = browser.new_context(viewport=PHONE)
    context.add_cookies(pages["demo"][0])
    page = context.new_page()
    visit(page, stack.url, "/dashboard")
    link = page.locator("section[aria-labelledby=recent] table a").first
    number = link.inner_text()
    link.click()
    page.wait_for_url(re.compile(r"/invoices/[0-9a-f-]+$"))
    assert number in page.inner_text("h1")
    context.close()
