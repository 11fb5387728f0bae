"""The whole sign-in story over HTTP against the running stack, as a new client lives it."""

import re

import pytest
import requests

from tests.conftest import SIGN_IN, Browser, link_token, refused_within

pytestmark = pytest.mark.e2e


def test_sign_in_see_balance_sign_out_and_nothing_reusable(stack):
    base = stack.url
    browser = Browser(base)

    # 1. ask for a link; the answer does not say whether the address exists
    before = stack.outbox.count("demo@example.com", SIGN_IN)
    page = browser.get(f"{base}/login")
    assert page.status_code == 200 and 'name="email"' in page.text
    known = browser.post(f"{base}/login", data={"email": "demo@example.com"})
    unknown = browser.post(f"{base}/login", data={"email": "stranger@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text

    # 2. the email arrives in the outbox, multipart, with the link
    message = stack.outbox.wait_for("demo@example.com", before + 1, subject=SIGN_IN)[-1]
    assert message["Subject"] == "Your sign-in link for Acme Studio"
    assert message.get_body(("html",)) is not None
    token = link_token(message)
    assert not stack.outbox.matching("stranger@example.com")

    # 3. opening the link (as a mail scanner would, twice) consumes nothing
    for _ in range(2):
        landing = browser.get(f"{base}/login/verify", params={"token": token})
        assert landing.status_code == 200 and "Continue to your portal" in landing.text

    # 4. the button signs in and lands on the dashboard with the real balance
    dashboard = browser.post(f"{base}/login/verify", data={"token": token})
    assert dashboard.url == f"{base}/dashboard" and dashboard.status_code == 200
    assert "Demo Client Ltd" in dashboard.text
    outstanding = re.search(r'data-testid="outstanding">([^<]+)<', dashboard.text).group(1)
    # 885.00 sent + 400.00 viewed + 500.00 left on a partial + 850.00 overdue after a 50.00 credit
    assert outstanding == "$2,635.00"
    assert re.search(r'data-testid="credits">([^<]+)<', dashboard.text).group(1) == "$100.00"
    assert re.search(r'data-testid="retainer">([^<]+)<', dashboard.text).group(1) == "$500.00"
    api = browser.get(f"{base}/api/portal/v1/dashboard").json()
    assert api["outstanding"] == {"amount": 263500, "currency": "USD"}
    assert api["overdue"] == {"count": 1, "amount": 85000, "currency": "USD"}
    assert api["last_payment"]["amount"] == 25000

    # 5. the other client's data is nowhere
    for text in (dashboard.text, str(api)):
        assert "Other Corp" not in text and "Secret project" not in text and "7,777" not in text
    assert {inv["client_id"] for inv in api["recent_invoices"]} == {api["client"]["id"]}

    # 6. sign out: the old session and the used link are both refused
    old_cookie = browser.cookies.get("portal_session")
    out = browser.post(f"{base}/logout", allow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
    replay = refused_within(
        lambda: requests.get(f"{base}/dashboard", cookies={"portal_session": old_cookie}, allow_redirects=False)
    )
    assert replay.status_code == 303 and replay.headers["location"].startswith("/login")
    refused_within(lambda: requests.get(f"{base}/api/portal/v1/me", cookies={"portal_session": old_cookie}))
    reused = Browser(base).post(f"{base}/login/verify", data={"token": token}, allow_redirects=False)
    assert reused.status_code == 410 and "already been used" in reused.text


def test_the_other_client_sees_only_its_own_account(stack):
    from tests.conftest import sign_in

    browser = sign_in(stack, "other@example.com")
    api = browser.get(f"{stack.url}/api/portal/v1/dashboard").json()
    assert api["client"]["name"] == "Other Corp"
    assert api["outstanding"] == {"amount": 777700, "currency": "USD"}
    assert "Demo Client" not in str(api)


@pytest.mark.parametrize("cookie", ["forged", "A" * 43, "x" * 5000])
def test_forged_session_cookies_reveal_nothing(stack, cookie):
    page = requests.get(f"{stack.url}/api/portal/v1/dashboard", cookies={"portal_session": cookie})
    assert page.status_code in (401, 400, 431)
    assert "Demo Client" not in page.text and "Other Corp" not in page.text


def test_bad_input_gets_clear_errors_and_stores_nothing(stack):
    base = stack.url
    before = len(stack.outbox.matching("demo@example.com", SIGN_IN))
    browser = Browser(base)
    assert browser.post(f"{base}/login", data={"email": "not an email"}).status_code == 400
    assert browser.post(f"{base}/login", data={"email": "a" * 70_000}).status_code == 413
    assert requests.get(f"{base}/login/verify").status_code == 400
    assert browser.post(f"{base}/login/verify", data={"token": "forged"}).status_code == 400
    problem = requests.get(f"{base}/api/portal/v1/nothing")
    assert problem.status_code == 404 and problem.headers["content-type"] == "application/problem+json"
    assert len(stack.outbox.matching("demo@example.com", SIGN_IN)) == before


def test_a_german_contact_gets_german_mail_and_german_pdfs(stack):
    browser = Browser(stack.url)
    before = stack.outbox.count("euro@example.com", "Anmeldelink")
    browser.post(f"{stack.url}/login", data={"email": "euro@example.com"})
    message = stack.outbox.wait_for("euro@example.com", before + 1, subject="Anmeldelink")[-1]
    assert message["Subject"] == "Ihr Anmeldelink für Acme Studio"
    assert "Der Link funktioniert einmal" in message.get_body(("plain",)).get_content()
    browser.post(f"{stack.url}/login/verify", data={"token": link_token(message)})
    page = browser.get(f"{stack.url}/dashboard")  # the portal speaks German to her too
    assert '<html lang="de">' in page.text and "Abmelden" in page.text and "Sign out" not in page.text
    invoice = browser.get(f"{stack.url}/api/portal/v1/dashboard").json()["recent_invoices"][0]
    pdf = browser.get(f"{stack.url}/invoices/{invoice['id']}/pdf")
    assert pdf.status_code == 200 and pdf.headers["content-disposition"].endswith(f'{invoice["number"]}.pdf"')
    from io import BytesIO

    from pypdf import PdfReader

    text = "".join(PdfReader(BytesIO(pdf.content)).pages[0].extract_text().split())
    assert "RECHNUNG" in text and "1.189,99€" in text.replace("\xa0", "")  # 3 x 333.33 + 19 % tax, German style
    other = browser.get(f"{stack.url}/invoices/{invoice['id'].replace(invoice['id'][:8], '00000000')}/pdf")
    assert other.status_code == 404


def test_pdf_routes_never_serve_another_clients_documents(stack):
    import psycopg2

    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT i.id FROM invoices i JOIN clients c ON c.id = i.client_id WHERE c.name = 'Other Corp'")
        other_invoices = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT q.id FROM quotes q JOIN clients c ON c.id = q.client_id WHERE c.name = 'Other Corp'")
        other_quotes = [row[0] for row in cur.fetchall()]
        cur.execute(
            "SELECT i.id FROM invoices i JOIN clients c ON c.id = i.client_id "
            "WHERE c.name = 'Demo Client Ltd' AND i.status = 'draft'"
        )
        demo_drafts = [row[0] for row in cur.fetchall()]
    assert other_invoices and other_quotes and demo_drafts
    from tests.conftest import sign_in

    demo = sign_in(stack, "demo@example.com")
    for path in (
        [f"/invoices/{i}/pdf" for i in other_invoices + demo_drafts]
        + [f"/quotes/{q}/pdf" for q in other_quotes]
        + ["/payments/not-a-payment/receipt.pdf"]
    ):
        response = demo.get(stack.url + path)
        assert response.status_code == 404, path
        assert not response.content.startswith(b"%PDF")


def test_sign_out_on_all_devices_ends_every_session_of_the_contact(stack):
    from tests.conftest import new_portal_client, sign_in

    new_portal_client(stack, "Two Devices Ltd", "two-devices@example.org")
    laptop, phone = sign_in(stack, "two-devices@example.org"), sign_in(stack, "two-devices@example.org")
    assert phone.get(f"{stack.url}/dashboard", allow_redirects=False).status_code == 200
    laptop.post(f"{stack.url}/logout", data={"everywhere": "1"})
    for device in (laptop, phone):
        refused_within(lambda: device.get(f"{stack.url}/dashboard", allow_redirects=False))
