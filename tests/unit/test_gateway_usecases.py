"""The client's use cases (services/gateway/usecases.py), shared by the pages and the portal API: what
they refuse before any service is asked, what they ask the services, and the one idempotency rule."""

import json
import re
from urllib.parse import urlencode

import pytest

from chassis.errors import Conflict, Invalid
from clients.auth import AuthClient
from clients.billing import BillingClient
from clients.documents import DocumentsClient
from clients.payments import PaymentsClient
from services.gateway import usecases
from services.gateway.usecases import BadInput
from tests.unit.test_gateway import FORM, client
from tests.unit.test_gateway import SESSION as TEST_SESSION
from tests.unit.test_invoice_pages import invoice
from tests.unit.test_quote_revisions import QUOTE

SESSION = {
    "workspace_id": "ws1",
    "client_id": "cl1",
    "contact_id": "c1",
    "session_id": "s1",
    "email": "dana@example.com",
    "name": "Dana",
}


class FakeServices:
    """The typed stubs on a call that records (service, method, args, kwargs) and answers by method."""

    def __init__(self, answers=None):
        self.answers = answers or {}
        self.calls = []

    def call(self, service, method, *args, **kwargs):
        self.calls.append((service, method, args, kwargs))
        answer = self.answers.get(method)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def auth(self):
        return AuthClient(self.call)

    @property
    def billing(self):
        return BillingClient(self.call)

    @property
    def documents(self):
        return DocumentsClient(self.call)

    @property
    def payments(self):
        return PaymentsClient(self.call)

    def only(self, method):
        [call] = [call for call in self.calls if call[1] == method]
        return call


def test_the_request_key_is_the_clients_own_else_the_request_id():
    assert usecases.request_key("n1", "req-1") == "n1"
    assert usecases.request_key("", "req-1") == "req-1"
    assert usecases.request_key(None, "req-1") == "req-1"


def test_a_comment_is_posted_as_written_under_the_contacts_key():
    fake = FakeServices({"add_comment": {"id": "cm1"}})
    answer = usecases.comment_on_invoice(fake.billing, SESSION, "inv1", "  Thanks!  ", request_key="n1")
    assert answer == {"id": "cm1"}
    _, _, args, kwargs = fake.only("add_comment")
    assert args == ("ws1", "invoice", "inv1", "client", "Dana", "  Thanks!  ")
    assert kwargs == {"client_id": "cl1", "idempotency_key": "comment:c1:n1"}


@pytest.mark.parametrize("body", ["", "   ", "\n\t", "x" * 5001])
def test_a_blank_or_too_long_comment_is_refused_before_billing_is_asked(body):
    fake = FakeServices()
    with pytest.raises(BadInput) as refused:
        usecases.comment_on_invoice(fake.billing, SESSION, "inv1", body, request_key="n1")
    assert isinstance(refused.value, Invalid)  # the JSON API answers it 422 like any other
    assert refused.value.detail == "A comment is 1 to 5000 characters." and "body" in refused.value.fields
    assert fake.calls == []


def test_a_comment_of_exactly_the_limit_is_posted():
    fake = FakeServices()
    usecases.comment_on_invoice(fake.billing, SESSION, "inv1", "x" * 5000, request_key="n1")
    assert fake.only("add_comment")


def test_the_author_is_the_contacts_name_else_its_address():
    fake = FakeServices()
    usecases.comment_on_invoice(fake.billing, {**SESSION, "name": ""}, "inv1", "Hi", request_key="n1")
    assert fake.only("add_comment")[2][4] == "dana@example.com"


def test_a_dispute_names_its_lines_or_the_whole_invoice():
    fake = FakeServices()
    usecases.dispute_invoice(fake.billing, SESSION, "inv1", "Wrong rate", [2], request_key="n1")
    usecases.dispute_invoice(fake.billing, SESSION, "inv1", "Wrong rate", [], request_key="n2")
    first, second = [call for call in fake.calls if call[1] == "raise_invoice_dispute"]
    assert first[2] == ("ws1", "cl1", "c1", "Dana", "inv1", "Wrong rate")
    assert first[3] == {"lines": [2], "idempotency_key": "dispute:c1:n1"}
    assert second[3]["lines"] is None  # none ticked: the whole invoice


@pytest.mark.parametrize(
    ("reason", "lines", "field"),
    [(" ", None, "reason"), ("x" * 2001, None, "reason"), ("Why", [0], "lines"), ("Why", [201], "lines")],
)
def test_a_dispute_without_a_reason_or_with_impossible_lines_is_refused(reason, lines, field):
    fake = FakeServices()
    with pytest.raises(BadInput) as refused:
        usecases.dispute_invoice(fake.billing, SESSION, "inv1", reason, lines, request_key="n1")
    assert field in refused.value.fields and fake.calls == []


def test_a_forward_goes_to_the_address_as_email_writes_it_once_per_key():
    fake = FakeServices({"forward_invoice": "em1"})
    to, email_id = usecases.forward_invoice(
        fake.documents, SESSION, "inv1", "Books@Example.com", "FYI", request_key="n1"
    )
    assert (to, email_id) == ("Books@example.com", "em1")
    _, _, args, kwargs = fake.only("forward_invoice")
    assert args == ("ws1", "cl1", "inv1", "Books@example.com", "Dana")
    # the same form may forward to another address: the key names the invoice and the address too
    assert kwargs == {"note": "FYI", "idempotency_key": "forward:inv1:Books@example.com:c1:n1"}


@pytest.mark.parametrize(("to", "note"), [("not-an-address", ""), ("a@example.com", "x" * 501)])
def test_a_forward_to_no_address_or_with_a_long_note_is_refused(to, note):
    fake = FakeServices()
    with pytest.raises(BadInput) as refused:
        usecases.forward_invoice(fake.documents, SESSION, "inv1", to, note, request_key="n1")
    assert fake.calls == []
    if note:
        assert (refused.value.detail, refused.value.fields) == (
            "The note is at most 500 characters.",
            {"note": "at most 500"},
        )


def test_deciding_on_a_quote_names_the_version_seen():
    fake = FakeServices()
    usecases.accept_quote(fake.billing, SESSION, "q1", "Dana Demo", 2, ip="10.0.0.1")
    usecases.decline_quote(fake.billing, SESSION, "q1", "Too dear", 2)
    usecases.request_quote_changes(fake.billing, SESSION, "q1", "Fewer months", 2, request_key="n1")
    accept, reject, changes = fake.calls
    assert accept[1:] == (
        "accept_quote",
        ("ws1", "q1", "dana@example.com"),
        {"ip": "10.0.0.1", "signature_name": "Dana Demo", "client_id": "cl1", "version": 2, "idempotency_key": None},
    )
    assert reject[2] == ("ws1", "q1", "dana@example.com") and reject[3]["reason"] == "Too dear"
    assert reject[3]["version"] == 2
    assert changes[2] == ("ws1", "cl1", "c1", "q1", "Fewer months")
    assert (changes[3]["version"], changes[3]["idempotency_key"]) == (2, "quote-changes:c1:n1")


def test_a_quote_is_not_accepted_without_a_name_nor_changed_without_a_message():
    fake = FakeServices()
    with pytest.raises(BadInput, match="Type your full name to accept."):
        usecases.accept_quote(fake.billing, SESSION, "q1", "  ", 2, ip="10.0.0.1")
    with pytest.raises(BadInput, match="A message is 1 to 5000 characters."):
        usecases.request_quote_changes(fake.billing, SESSION, "q1", "", 2, request_key="n1")
    assert fake.calls == []


def test_a_replaced_version_is_billings_conflict_passed_through():
    stale = Conflict("You saw version 1.", version="not the newest version", newest_version="2")
    fake = FakeServices({"reject_quote": stale})
    with pytest.raises(Conflict) as raised:
        usecases.decline_quote(fake.billing, SESSION, "q1", "", 1)
    assert usecases.is_stale(raised.value) and not usecases.is_stale(Conflict("Already accepted."))


def test_the_profile_keeps_a_company_name_and_says_when_the_contact_was_renamed():
    fake = FakeServices({"update_profile": {"contact": {"name": "Dana D."}}})
    with pytest.raises(BadInput, match="The company name cannot be empty."):
        usecases.update_profile(fake.billing, SESSION, {"company": "  "})
    for empty in ("", "  ", None):
        with pytest.raises(BadInput, match="Enter your name.") as refused:
            usecases.update_profile(fake.billing, SESSION, {"name": empty, "phone": "1"})
        assert refused.value.fields == {"name": "required"}
    with pytest.raises(BadInput):
        usecases.update_profile(fake.billing, SESSION, {"phone": "1" * 51})
    assert fake.calls == []
    saved = usecases.update_profile(fake.billing, SESSION, {"name": "Dana D.", "phone": None})
    assert fake.only("update_profile")[2] == ("ws1", "cl1", "c1", {"name": "Dana D.", "phone": None})
    assert usecases.renamed_to(SESSION, saved) == "Dana D."
    assert usecases.renamed_to({**SESSION, "name": "Dana D."}, saved) is None


def test_a_message_to_the_business_needs_a_subject_and_a_message_and_is_sent_once_per_key():
    fake = FakeServices({"get_client": {"name": "Demo Client Ltd"}, "send_business_message": "em1"})
    for subject, message in (("", "Hello"), ("Hi", " "), ("x" * 201, "Hello"), ("Hi", "x" * 5001)):
        with pytest.raises(BadInput):
            usecases.message_business(fake.billing, fake.documents, SESSION, subject, message, request_key="n1")
    assert fake.calls == []
    assert usecases.message_business(fake.billing, fake.documents, SESSION, "Hi", "Hello", request_key="r1") == "em1"
    assert fake.only("send_business_message")[2] == (
        "ws1",
        "cl1",
        "Demo Client Ltd",
        "Dana",
        "dana@example.com",
        "Hi",
        "Hello",
        "message:c1:r1",
    )


def test_a_review_is_one_to_five_stars():
    fake = FakeServices()
    for rating in (0, 6):
        with pytest.raises(BadInput, match="Pick from 1 to 5 stars."):
            usecases.review_business(fake.billing, SESSION, rating, "")
    usecases.review_business(fake.billing, SESSION, 5, "Great")
    assert fake.only("add_review")[2] == ("ws1", "cl1", "c1", "Dana", 5, "Great")


def test_a_bank_account_records_who_accepted_the_mandate_from_where():
    fake = FakeServices({"add_bank_account": {"mandate": {"id": "m1"}}})
    details = {"holder_name": "Dana", "email": "dana@example.com", "iban": "DE89370400440532013000"}
    usecases.add_bank_account(
        fake.payments, SESSION, details, True, ip="10.0.0.1", user_agent="x" * 600, request_key="k1"
    )
    _, _, args, kwargs = fake.only("add_bank_account")
    assert args == (
        "ws1",
        "cl1",
        details,
        {"accepted": True, "contact_id": "c1", "ip_address": "10.0.0.1", "user_agent": "x" * 500},
    )
    assert kwargs == {"attempt_id": None, "save": True, "idempotency_key": "bank:c1:k1"}


def test_ending_a_session_forgets_it_here_only_when_auth_ended_one():
    forgotten = []
    ended = FakeServices({"end_contact_session": 1})
    assert usecases.end_session(ended.auth, SESSION, "s2", forget=forgotten.append) is True
    assert ended.only("end_contact_session")[2] == ("c1", "s2") and forgotten == ["s2"]
    gone = FakeServices({"end_contact_session": 0})
    assert usecases.end_session(gone.auth, SESSION, "s3", forget=forgotten.append) is False
    assert forgotten == ["s2"]


def test_the_organisations_contacts_are_changed_as_the_signed_in_owner():
    fake = FakeServices()
    usecases.invite_contact(fake.billing, SESSION, {"email": "new@example.com", "role": "viewer"})
    usecases.change_contact_role(fake.billing, SESSION, "c2", "payer")
    usecases.remove_contact(fake.billing, SESSION, "c2")
    assert [call[2] for call in fake.calls] == [
        ("ws1", "cl1", "c1", {"email": "new@example.com", "role": "viewer"}),
        ("ws1", "cl1", "c1", "c2", "payer"),
        ("ws1", "cl1", "c1", "c2"),
    ]


# Each edge maps a refusal as it always has: a page shows its form's 400 page, the API a 422 problem. (A
# refused comment, forward, dispute, acceptance or change request is its page again instead, with what was
# typed: test_invoice_pages.py and test_quote_revisions.py.)


@pytest.mark.parametrize(
    ("path", "form", "title", "detail"),
    [("/review", "rating=6", "Choose a rating", "Pick from 1 to 5 stars.")],
)
def test_a_page_shows_a_refused_form_as_its_400_page_and_asks_no_service(path, form, title, detail):
    c, rpc = client()
    page = c.simulate_post(path, body=form, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 400 and title in page.text and detail in page.text
    # at most the page's branding (this process may hold it already): nothing was saved or sent
    assert {call[1] for call in rpc.calls if call[0] != "auth"} <= {"get_workspace"}


def test_the_pages_and_the_api_key_a_comment_alike():
    c, rpc = client({("billing", "add_comment"): {"id": "cm1"}})
    page = c.simulate_post("/invoices/inv1/comments", body="body=Hi&nonce=n1", headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 303 and page.headers["location"].endswith("/invoices/inv1#comments")
    answer = c.simulate_post(
        "/api/portal/v1/invoices/inv1/comments",
        json={"body": "Hi", "idempotency_key": "n1"},
        csrf=False,
        headers=c.bearer,
    )
    assert answer.status_code == 201
    keys = [call[4]["idempotency_key"] for call in rpc.calls if call[1] == "add_comment"]
    assert keys == ["comment:c1:n1", "comment:c1:n1"]
    # without a key of the client's own, the request id keys it, as on a page without its nonce
    c.simulate_post(
        "/api/portal/v1/invoices/inv1/comments",
        json={"body": "Hi"},
        csrf=False,
        headers={**c.bearer, "X-Request-ID": "req-1"},
    )
    assert rpc.calls[-1][4]["idempotency_key"] == "comment:c1:req-1"


def test_the_pages_and_the_api_forward_an_invoice_under_the_same_rule():
    c, rpc = client({("documents", "forward_invoice"): "em1"})
    page = c.simulate_post(
        "/invoices/inv1/forward",
        body="to=books%40example.com&note=FYI&nonce=n1",
        headers=FORM,
        cookies=c.session_cookie,
    )
    assert page.status_code == 303 and page.headers["location"].endswith("/invoices/inv1?forwarded=books%40example.com")
    answer = c.simulate_post(
        "/api/portal/v1/invoices/inv1/forward",
        json={"to": "books@example.com"},
        csrf=False,
        headers={**c.bearer, "X-Request-ID": "req-2"},
    )
    assert answer.status_code == 202 and answer.json == {"email_id": "em1"}
    keys = [call[4]["idempotency_key"] for call in rpc.calls if call[1] == "forward_invoice"]
    assert keys == ["forward:inv1:books@example.com:c1:n1", "forward:inv1:books@example.com:c1:req-2"]


def test_the_api_refuses_a_blank_comment_with_its_422_problem():
    c, rpc = client()
    answer = c.simulate_post("/api/portal/v1/invoices/inv1/comments", json={"body": "  "}, csrf=False, headers=c.bearer)
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert "body" in answer.json["errors"] and not [call for call in rpc.calls if call[1] == "add_comment"]


PROFILE_CLIENT = {
    "id": "cl1",
    "name": "Demo Client Ltd",
    "address": "",
    "phone": "",
    "locale": "en_US",
    "timezone": "UTC",
    "contacts": [{"id": "c1", "name": "Dana", "email": "dana@example.com", "phone": ""}],
}


@pytest.mark.parametrize("name", ["", "+++", "%09"])
def test_an_empty_name_on_the_profile_page_is_the_form_again_and_saves_nothing(name):
    c, rpc = client(
        {
            ("billing", "get_client"): PROFILE_CLIENT,
            ("billing", "get_workspace"): {"id": "ws1", "name": "Acme"},
            ("billing", "get_notification_preferences"): {},
            ("auth", "password_status"): {},
        }
    )
    page = c.simulate_post(
        "/profile", body=f"name={name}&phone=&company=Demo+Client+Ltd", headers=FORM, cookies=c.session_cookie
    )
    assert page.status_code == 400 and "Enter your name." in page.text and "Your changes are saved" not in page.text
    assert not [call for call in rpc.calls if call[1] == "update_profile"]


def test_a_refused_profile_form_comes_back_with_what_was_typed_not_what_is_stored():
    c, _ = client(
        {
            ("billing", "get_client"): PROFILE_CLIENT,
            ("billing", "get_workspace"): {"id": "ws1", "name": "Acme"},
            ("billing", "get_notification_preferences"): {},
            ("auth", "password_status"): {},
        }
    )
    typed = {"name": " ", "phone": "+49 89 123456", "company": "Demo & Co", "address": "Hauptstr. 5\n80331 München"}
    page = c.simulate_post("/profile", body=urlencode(typed), headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 400 and "Enter your name." in page.text
    assert 'id="name" name="name" value=" "' in page.text
    assert 'value="+49 89 123456"' in page.text and 'value="Demo &amp; Co"' in page.text
    assert ">Hauptstr. 5\n80331 München</textarea>" in page.text


def test_a_message_to_the_business_without_a_subject_is_the_form_again_with_the_message_kept():
    c, rpc = client(
        {("billing", "get_workspace"): {"id": "ws1", "name": "Acme"}, ("billing", "get_client"): PROFILE_CLIENT}
    )
    typed = {"subject": "  ", "message": "Please reissue INV-7 with <PO 4711>", "nonce": "n1"}
    page = c.simulate_post("/contact", body=urlencode(typed), headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 400 and 'role="alert"' in page.text and "Both are needed" in page.text
    assert '<form method="post" action="/contact"' in page.text
    assert ">Please reissue INV-7 with &lt;PO 4711&gt;</textarea>" in page.text
    assert not [call for call in rpc.calls if call[1] == "send_business_message"]


@pytest.mark.parametrize("name", ["", "   ", None])
def test_the_api_refuses_an_empty_name_with_its_422_problem(name):
    c, rpc = client()
    answer = c.simulate_patch("/api/portal/v1/profile", json={"name": name}, headers=c.bearer)
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert list(answer.json["errors"]) == ["name"]
    assert not [call for call in rpc.calls if call[1] == "update_profile"]


def test_a_blank_field_is_refused_in_words_not_with_the_pattern_it_broke():
    c, _ = client()
    answer = c.simulate_patch("/api/portal/v1/profile", json={"name": "   "}, headers=c.bearer)
    assert answer.status_code == 422 and answer.json["errors"] == {"name": "must not be empty or only spaces"}
    assert "\\u0000" not in answer.text and "pattern" not in answer.text


def test_the_openapi_document_says_a_profile_name_is_not_empty():
    from services.gateway.portal_api import portal_openapi

    name = portal_openapi()["components"]["schemas"]["ProfileIn"]["properties"]["name"]
    assert name["minLength"] == 1 and name["type"] == "string" and "anyOf" not in name


# What the pages read to show a refused form again; nothing else may be asked of a service.
READS = {"view_quote", "view_invoice", "get_client", "get_workspace", "get_notification_preferences", "password_status"}


PAGES_SHOWN_AGAIN = {
    ("billing", "view_quote"): {"quote": QUOTE, "comments": []},
    ("billing", "view_invoice"): {"invoice": invoice(id="inv1"), "comments": []},
    ("billing", "get_client"): PROFILE_CLIENT,
    ("billing", "get_workspace"): {"id": "ws1", "name": "Acme"},
    ("billing", "get_notification_preferences"): {},
    ("auth", "password_status"): {},
}


@pytest.mark.parametrize(
    ("path", "form", "detail"),
    [
        ("/quotes/q1/accept", {"signature_name": "x" * 201}, "Your full name is at most 200 characters."),
        ("/invoices/inv1/comments", {"body": "x" * 5001, "nonce": "n1"}, "The comment is at most 5,000 characters."),
        ("/invoices/inv1/forward", {"to": "a@example.com", "note": "x" * 501}, "The note is at most 500 characters."),
        ("/contact", {"subject": "x" * 201, "message": "Hi"}, "The subject is at most 200 characters."),
        ("/contact", {"subject": "Hi", "message": "x" * 5001}, "The message is at most 5,000 characters."),
        ("/profile", {"name": "x" * 201}, "Your name is at most 200 characters."),
        ("/quotes/q1/reject", {"reason": "x" * 2001, "version": "1"}, "The reason is at most 2,000 characters."),
        (
            "/team",
            {"email": "a@example.com", "name": "x" * 201, "role": "viewer"},
            "The name is at most 200 characters.",
        ),
    ],
)
def test_a_too_long_field_is_named_as_its_form_labels_it(path, form, detail):
    c, rpc = client(PAGES_SHOWN_AGAIN)
    page = c.simulate_post(path, body=urlencode(form), headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 400 and detail in page.text
    assert not re.search(r">\s*(signature_name|body|note|subject|message|name|reason) is at most", page.text)
    assert {call[1] for call in rpc.calls if call[0] != "auth"} <= READS  # nothing was saved or sent
    if path in ("/quotes/q1/accept", "/invoices/inv1/comments", "/invoices/inv1/forward", "/contact", "/profile"):
        long_value = next(value for value in form.values() if len(value) > 200)
        assert long_value in page.text  # the form again, with what was typed


@pytest.mark.parametrize(
    ("path", "form", "german"),
    [
        ("/profile", {"name": "x" * 201}, "Ihr Name darf höchstens 200 Zeichen lang sein."),
        ("/invoices/inv1/comments", {"body": "x" * 5001}, "Der Kommentar darf höchstens 5.000 Zeichen lang sein."),
        (
            "/quotes/q1/accept",
            {"signature_name": "x" * 201},
            "Ihr vollständiger Name darf höchstens 200 Zeichen lang sein.",
        ),
    ],
)
def test_a_too_long_field_is_named_in_german_for_a_german_contact(path, form, german):
    c, _ = client(PAGES_SHOWN_AGAIN, session={**TEST_SESSION, "locale": "de_DE"})
    page = c.simulate_post(path, body=urlencode(form), headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 400 and '<html lang="de">' in page.text and german in page.text


def test_a_field_sent_twice_or_a_hidden_one_too_long_names_no_key():
    c, _ = client()
    for body in ("body=a&body=b", f"body=Hi&nonce={'n' * 65}"):
        page = c.simulate_post("/invoices/inv1/comments", body=body, headers=FORM, cookies=c.session_cookie)
        assert page.status_code == 400 and "This form was changed or is out of date." in page.text
        assert "nonce" not in page.text and "Send body" not in page.text


def test_a_message_is_its_english_text_and_is_translated_where_a_page_shows_it():
    from services.gateway import views

    message = usecases.too_long("The comment", 5000)
    assert message == "The comment is at most 5,000 characters." and str(message) == message
    assert json.dumps({"detail": message}) == '{"detail": "The comment is at most 5,000 characters."}'
    german = views.env_for("de_DE").from_string("{{ m | translate }}").render(m=message)
    assert german == "Der Kommentar darf höchstens 5.000 Zeichen lang sein."


def test_every_label_is_translated():
    from tests.unit.test_gateway_i18n import DE_PO, read_po

    with DE_PO.open("rb") as handle:
        german = read_po(handle, locale="de")
    labels = [*usecases.LABELS.values(), "The name", "The passkey's name"]
    assert all(getattr(german.get(label), "string", "") for label in labels)
