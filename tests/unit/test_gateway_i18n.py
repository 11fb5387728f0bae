"""The portal in the signed-in contact's language (English, German), and a complete German catalogue."""

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import falcon
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from chassis import credentials, payment_labels
from chassis.errors import Invalid, NotFound, RateLimited, Unauthorized
from services.gateway import usecases, views
from services.gateway.pages import sign_in
from services.gateway.revocations import RevocationList
from services.gateway.rpc import ServiceUnavailable
from services.gateway.sessions import REFRESHED_TOKEN_HEADER
from tests.unit.test_gateway import DASHBOARD, FORM, NOW, SESSION, WORKSPACE, client

GATEWAY = Path(views.__file__).parent
DE_PO = GATEWAY / "locale" / "de" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")

INVOICE_ROW = {
    "id": "i1",
    "number": "INV-0042",
    "display_status": "partially_paid",
    "issue_date": "2026-11-01",
    "due_date": "2026-11-15",
    "total": 250000,
    "balance": 237500,
    "currency": "USD",
}


def dashboard(locale: str) -> dict:
    return {
        **DASHBOARD,
        "client": {**DASHBOARD["client"], "locale": locale, "timezone": "Europe/Berlin"},
        "recent_invoices": [INVOICE_ROW],
    }


def portal(session_locale, client_locale="de_DE", answers=None):
    return client(
        {
            ("billing", "client_dashboard"): dashboard(client_locale),
            ("billing", "get_workspace"): WORKSPACE,
            **(answers or {}),
        },
        session={**SESSION, "locale": session_locale},
    )


def test_a_german_contact_reads_the_dashboard_in_german():
    c, _ = portal("de_DE")
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 200
    assert '<html lang="de">' in page.text
    assert "Offener Betrag" in page.text and "2.375,00\xa0$" in page.text  # words and money in German
    assert "Abmelden" in page.text and "Übersicht" in page.text and f"Angemeldet als {SESSION['email']}" in page.text
    assert "Teilweise bezahlt" in page.text and "1 überfällig" in page.text  # status badge, plural form
    assert "Outstanding" not in page.text and "Sign out" not in page.text


def test_an_english_contact_reads_the_dashboard_in_english():
    c, _ = portal("en_US", client_locale="en_US")
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert "Outstanding" in page.text and "$2,375.00" in page.text and "Sign out" in page.text
    assert ">partially paid</span>" in page.text and "1 overdue" in page.text
    assert "Offener Betrag" not in page.text and "Abmelden" not in page.text


@pytest.mark.parametrize(
    "session_locale,client_locale,lang",
    [
        ("de_DE", "en_US", "de"),  # the contact's own locale wins over the client's
        ("en_GB", "de_DE", "en"),
        (None, "de_AT", "de"),  # no contact locale: the client's
        ("", "de_DE", "de"),
        ("fr_FR", "de_DE", "en"),  # a language the portal does not speak: English
        ("not a locale", "de_DE", "en"),
    ],
)
def test_the_language_is_the_contacts_then_the_clients_then_english(session_locale, client_locale, lang):
    c, _ = portal(session_locale, client_locale=client_locale)
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 200 and f'<html lang="{lang}">' in page.text


def test_a_german_contact_of_an_english_client_reads_german_money_and_dates():
    """The contact chose German: the numbers, money and dates are German too; the currency is the client's."""
    c, _ = portal("de_DE", client_locale="en_US")
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 200 and '<html lang="de">' in page.text and "Offener Betrag" in page.text
    assert "2.375,00\xa0$" in page.text and "2.500,00\xa0$" in page.text  # USD, written the German way
    assert "15.11.2026" in page.text and "20.11.2026, 16:00:00" in page.text  # in the client's time zone
    assert "$2,375.00" not in page.text and "Nov 15, 2026" not in page.text


def test_an_english_contact_of_a_german_client_reads_english_money_and_dates():
    """Formats follow the page's language: English words, English numbers and dates."""
    c, _ = portal("en_US", client_locale="de_DE")
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 200 and '<html lang="en">' in page.text and "Outstanding" in page.text
    assert "$2,375.00" in page.text and "Nov 15, 2026" in page.text and "Nov 20, 2026, 4:00:00" in page.text
    assert "2.375,00" not in page.text and "15.11.2026" not in page.text


@pytest.mark.parametrize(
    "contact_locale,page_locale,formats",
    [
        ("de_DE", "en_US", "de_DE"),
        ("de_AT", "en_US", "de_AT"),
        ("en_US", "de_DE", "en_US"),
        ("en_GB", "de_DE", "en_GB"),  # the contact's own English
        (None, "de_AT", "de_AT"),  # no contact locale: the client's, language and formats
        ("", "en_GB", "en_GB"),
        ("fr_FR", "en_GB", "en_GB"),  # English pages: the client's English formats
        ("fr_FR", "de_DE", "en_US"),  # English pages: never German numbers among English words
        ("not a locale", "de_DE", "en_US"),
        (None, "fr_FR", "en_US"),
        (None, None, "en_US"),
    ],
)
def test_the_formats_are_those_of_the_language_the_page_speaks(contact_locale, page_locale, formats):
    assert views.reading_locale(contact_locale, page_locale) == formats
    assert views.language_for(formats) == views.language_for(contact_locale or page_locale)


def test_choosing_german_for_emails_switches_this_sessions_pages_to_german_at_once():
    """The form saves the contact's locale in billing and re-issues this session's credential with it:
    the very next page is German, without signing in again."""
    saved = {"contact_id": "c1", "client_id": "cl1", "email_locale": "de_DE", "version": 2}
    c, rpc = portal("en_US", client_locale="en_US", answers={("billing", "update_notification_preferences"): saved})
    body = "invoices=on&email_locale=de_DE"
    answer = c.simulate_post("/profile/notifications", body=body, headers=FORM, cookies=c.session_cookie)
    assert answer.status_code == 303
    [call] = [call for call in rpc.calls if call[1] == "update_notification_preferences"]
    assert call[2][2]["email_locale"] == "de_DE"
    [cookie] = [cookie for cookie in answer.cookies.values() if cookie.name == c.config.cookie_name]
    renewed = credentials.read(cookie.value, c.config.session_keys)
    first = credentials.read(c.session_cookie[c.config.cookie_name], c.config.session_keys)
    assert renewed == replace(first, locale="de_DE")  # the same session, only its language changed
    page = c.simulate_get("/dashboard", cookies={c.config.cookie_name: cookie.value})
    assert page.status_code == 200 and '<html lang="de">' in page.text and "2.375,00\xa0$" in page.text


def test_the_companys_language_again_is_the_clients_from_the_next_page_on():
    saved = {"contact_id": "c1", "client_id": "cl1", "email_locale": None, "version": 3}
    c, _ = portal("en_US", client_locale="de_DE", answers={("billing", "update_notification_preferences"): saved})
    answer = c.simulate_post("/profile/notifications", body="email_locale=", headers=FORM, cookies=c.session_cookie)
    [cookie] = [cookie for cookie in answer.cookies.values() if cookie.name == c.config.cookie_name]
    assert credentials.read(cookie.value, c.config.session_keys).locale is None
    page = c.simulate_get("/dashboard", cookies={c.config.cookie_name: cookie.value})
    assert '<html lang="de">' in page.text


def test_saving_the_notifications_in_the_same_language_keeps_the_credential():
    saved = {"contact_id": "c1", "client_id": "cl1", "email_locale": "de_DE", "version": 2}
    c, _ = portal("de_DE", answers={("billing", "update_notification_preferences"): saved})
    answer = c.simulate_post(
        "/profile/notifications", body="email_locale=de_DE", headers=FORM, cookies=c.session_cookie
    )
    assert answer.status_code == 303 and c.config.cookie_name not in answer.cookies


def test_the_api_hands_a_bearer_client_the_credential_in_its_new_language():
    saved = {"contact_id": "c1", "client_id": "cl1", "email_locale": "de_DE", "version": 2}
    c, _ = portal(None, client_locale="en_US", answers={("billing", "update_notification_preferences"): saved})
    answer = c.simulate_patch(
        "/api/portal/v1/notification-preferences", json={"email_locale": "de_DE"}, headers=c.bearer
    )
    assert answer.status_code == 200, answer.text
    assert credentials.read(answer.headers[REFRESHED_TOKEN_HEADER], c.config.session_keys).locale == "de_DE"


def test_a_german_reader_pays_an_amount_written_the_german_way():
    """The pay page shows a German contact German amounts, so it reads the one typed the same way."""
    client_answer = {"id": "cl1", "name": "Demo", "currency": "USD", "locale": "en_US", "timezone": "UTC"}
    c, rpc = portal(
        "de_DE",
        answers={
            ("billing", "get_client"): client_answer,
            ("billing", "plan_payment"): {"invoices": [], "currency": "USD", "amount": 200000, "balance_usable": 0},
            ("payments", "start_payment"): {"id": "pa1", "status": "open"},
            ("billing", "note_payment_payer"): None,
        },
    )
    page = c.simulate_post("/pay", body="invoice=i1&amount=1234,50&key=k1", headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 303, page.text
    [call] = [call for call in rpc.calls if call[1] == "start_payment"]
    assert call[2][2]["amount"] == 123450


def test_filter_labels_statuses_and_pages_are_german():
    page_of_invoices = {
        "items": [INVOICE_ROW],
        "total": 1,
        "offset": 0,
        "limit": 20,
        "client": dashboard("de_DE")["client"],
    }  # a portal listing carries the reader's locale
    c, rpc = portal("de_DE", answers={("billing", "list_invoices"): page_of_invoices})
    page = c.simulate_get("/invoices", params={"status": "partially_paid"}, cookies=c.session_cookie)
    assert page.status_code == 200
    assert [call[:2] for call in rpc.calls] == [("billing", "list_invoices")]  # no call to auth
    assert rpc.calls[0][4]["filters"]["fields"] == "listing"  # what the page shows of each invoice
    for text in (
        "Rechnungen",
        "Alle",
        "Unbezahlt",
        "Teilweise bezahlt",
        "Neueste zuerst",
        "Höchster Betrag",
        "Seite 1 von 1",
        "Anwenden",
        "Nummer",
    ):
        assert text in page.text, text
    assert 'href="?status=partially_paid&amp;sort=-date" aria-current="page" class="active"' in page.text


@pytest.mark.parametrize(
    ("locale", "says"),
    [
        ("de_DE", "Es gibt weniger Rechnungen, als diese Seite zeigen würde."),
        ("en_US", "There are fewer invoices than this page would show."),
    ],
)
def test_a_page_past_the_last_invoice_says_so_and_leads_back_not_that_there_are_none(locale, says):
    past_the_end = {"items": [], "total": 7, "offset": 1960, "limit": 20, "client": dashboard(locale)["client"]}
    c, _ = portal(locale, answers={("billing", "list_invoices"): past_the_end})
    page = c.simulate_get("/invoices", params={"page": "99", "status": "unpaid", "q": "0"}, cookies=c.session_cookie)
    assert page.status_code == 200 and says in page.text
    assert 'href="/invoices?status=unpaid&amp;sort=-date&amp;q=0">' in page.text
    assert "Keine Rechnungen" not in page.text and "No invoices" not in page.text


def test_an_older_billing_without_the_readers_settings_in_the_listing_still_renders():
    """During a rolling upgrade billing may not send "client" yet: the page asks for it."""
    page_of_invoices = {"items": [INVOICE_ROW], "total": 1, "offset": 0, "limit": 20}
    c, rpc = portal(
        "de_DE",
        answers={
            ("billing", "list_invoices"): page_of_invoices,
            ("billing", "get_client"): dashboard("de_DE")["client"],
        },
    )
    page = c.simulate_get("/invoices", cookies=c.session_cookie)
    assert page.status_code == 200 and "Rechnungen" in page.text
    assert any(call[:2] == ("billing", "get_client") for call in rpc.calls)


def test_german_text_with_values_keeps_escaping_them():
    quote = {
        "id": "q1",
        "number": "Q-7",
        "display_status": "sent",
        "issue_date": "2026-11-01",
        "expiry_date": None,
        "accepted_at": None,
        "rejected_at": None,
        "lines": [],
        "currency": "EUR",
        "subtotal": 12000,
        "tax_total": 0,
        "tax_breakdown": [{"category": "Z", "rate": "0", "base": 12000, "tax": 0}],
        "total": 12000,
        "locale": "de_DE",
        "timezone": "Europe/Berlin",
    }
    c, _ = portal("de_DE", answers={("billing", "view_quote"): {"quote": quote, "comments": []}})
    page = c.simulate_post(
        "/quotes/q1/accept", body="signature_name=%3Cb%3EDana%3C%2Fb%3E", headers=FORM, cookies=c.session_cookie
    )
    assert page.status_code == 200
    assert "Sie nehmen das Angebot Q-7 über 120,00\xa0€ als <strong>&lt;b&gt;Dana&lt;/b&gt;</strong> an." in page.text
    assert "<b>Dana" not in page.text and "Annahme bestätigen" in page.text and ">Offen</span>" in page.text


def test_an_error_page_speaks_the_signed_in_contacts_language():
    c, _ = portal("de_DE", answers={("billing", "view_invoice"): NotFound("No such invoice.")})
    page = c.simulate_get("/invoices/nope", cookies=c.session_cookie)
    assert page.status_code == 404 and '<html lang="de">' in page.text
    assert "Nicht gefunden" in page.text and "Diese Rechnung gibt es nicht." in page.text
    assert "Zurück zum Portal" in page.text and "Referenz: " in page.text
    assert "Abmelden" in page.text and 'href="/invoices"' in page.text  # the signed-in header and menu

    english, _ = portal("en_US", answers={("billing", "view_invoice"): NotFound("No such invoice.")})
    page = english.simulate_get("/invoices/nope", cookies=english.session_cookie)
    assert page.status_code == 404 and '<html lang="en">' in page.text and "Not found" in page.text


@pytest.mark.parametrize("path", ["/nope", "/invoices/i1/nothing", "/no/such/page/"])
def test_an_address_no_route_answers_is_the_portal_page_in_the_contacts_language(path):
    c, _ = portal("de_DE")
    page = c.simulate_get(path, cookies=c.session_cookie)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="de">' in page.text and "Seite nicht gefunden" in page.text and "Referenz: " in page.text
    assert "Abmelden" in page.text and 'href="/invoices"' in page.text  # the signed-in header and menu
    assert "Page not found" not in page.text

    signed_out = c.simulate_get(path)
    assert signed_out.status_code == 404 and '<html lang="en">' in signed_out.text
    assert "Page not found" in signed_out.text and "Client portal" in signed_out.text
    assert "Sign out" not in signed_out.text


def test_an_ended_session_or_auth_not_answering_gives_the_signed_out_404():
    """Nothing is refused on a 404: the session only dresses the page."""
    revoked = RevocationList(ready=True)
    revoked.end_session("s1", NOW + timedelta(days=1))  # signed out elsewhere
    c, _ = client(session={**SESSION, "locale": "de_DE"}, revocations=revoked)
    for cookies in (c.session_cookie, {"portal_session": "forged"}):
        page = c.simulate_get("/nope", cookies=cookies)
        assert page.status_code == 404 and '<html lang="en">' in page.text and "Sign out" not in page.text

    # the revocation list not ready yet: auth is asked, and it does not answer
    c, _ = client(
        {("auth", "check_session"): ServiceUnavailable("down")},
        session={**SESSION, "locale": "de_DE"},
        revocations=RevocationList(ready=False),
    )
    page = c.simulate_get("/nope", cookies=c.session_cookie)
    assert page.status_code == 404 and '<html lang="en">' in page.text and "Page not found" in page.text


def test_the_json_apis_404_stays_problem_json():
    c, _ = portal("de_DE")
    for answer in (
        c.simulate_get("/api/portal/v1/nope", headers=c.bearer),
        c.simulate_get("/api/nope", cookies=c.session_cookie),
    ):
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
        assert answer.json["title"] == "Page not found"


@pytest.mark.parametrize(
    "path,german,english",
    [
        ("/invoices?page=abc", "Die Seitenzahl ist ungültig.", "The page number is not valid."),
        ("/invoices?page=0", "Die Seitenzahl ist ungültig.", "The page number is not valid."),
        ("/invoices/i1?print=maybe", "Die Druckansicht ist ungültig.", "The printable view is not valid."),
    ],
)
def test_a_bad_query_parameter_names_it_in_the_readers_language(path, german, english):
    answers = {
        ("billing", "list_invoices"): {"items": [], "total": 0, "offset": 0, "limit": 20},
        ("billing", "view_invoice"): {"invoice": INVOICE_ROW, "comments": []},
    }
    c, _ = portal("de_DE", answers=answers)
    page = c.simulate_get(path, cookies=c.session_cookie)
    assert page.status_code == 400 and '<html lang="de">' in page.text
    assert "Prüfen Sie die Adresse" in page.text and german in page.text
    assert "parameter" not in page.text

    c, _ = portal("en_US", answers=answers)
    page = c.simulate_get(path, cookies=c.session_cookie)
    assert page.status_code == 400 and "Check the address" in page.text and english in page.text


def test_a_bad_query_parameter_without_a_name_for_readers_is_still_translated():
    from services.gateway.app import ErrorRenderer

    unnamed = ErrorRenderer._invalid_param(falcon.HTTPInvalidParam("The value must be an integer.", "zoom"))
    assert unnamed == "A value in the address is not valid."
    assert ErrorRenderer._invalid_param(falcon.HTTPInvalidParam("Too big.", "page")) == "The page number is not valid."


def test_pages_without_a_session_are_english():
    c, _ = client()
    for page in (c.simulate_get("/no/such/page"), c.simulate_get("/login")):
        assert '<html lang="en">' in page.text and "Kundenportal" not in page.text
    assert "Page not found" in c.simulate_get("/no/such/page").text


def test_one_shared_env_per_language():
    assert views.env_for("de_DE") is views.env_for("de_AT") is views.env_for("de")
    assert views.env_for("en_US") is views.env_for(None) is views.env_for("fr_FR") is views.make_env()
    assert views.env_for("de_DE") is not views.env_for("en_US")


@pytest.mark.parametrize("autoescape", [True, False])
def test_gettext_answers_what_jinjas_own_newstyle_gettext_does(autoescape):
    """The remembered translations change nothing a page shows: literal text, text with values (escaped
    when the template escapes), a literal percent sign, and trans blocks, in German, as Jinja renders them."""
    from jinja2 import Environment

    from chassis.i18n import translations

    source = (
        "{{ _('Pay now') }}|{{ _('Pay now') }}|{{ _('%(n)s%% of <b>%(who)s</b>', n=5, who=who) }}|"
        "{% trans %}Hello {{ who }}{% endtrans %}|{{ gettext('Sign in') }}|{{ _('All of it: 100%%') }}|"
        "{{ _('Pay now') | upper }}|{{ _('Pay now') ~ who }}|{% set said = _('Sign in') %}{{ said }}"
    )
    ours = views.env_for("de").overlay(autoescape=autoescape)
    theirs = Environment(extensions=["jinja2.ext.i18n"], autoescape=autoescape)
    getattr(theirs, "install_gettext_translations")(translations("de", views.LOCALE_DIR), newstyle=True)
    for who in ("<i>Dana</i>", "Kim & Co"):
        assert ours.from_string(source).render(who=who) == theirs.from_string(source).render(who=who)
    assert views.env_for("de").from_string("{{ _('Pay now') }}").render() == "Jetzt bezahlen"


def test_a_literals_translation_is_compiled_into_the_template_and_a_call_with_values_stays_a_call():
    source = "{{ _('Pay now') }}|{{ _('%(n)s overdue', n=n) }}|{{ x._('Pay now') }}"
    code = views.env_for("de").compile(source, raw=True)
    assert "Jetzt bezahlen" in code  # the translation, as text of the template
    assert code.count("'Pay now'") == 1  # only the attribute's call, which is no gettext, is left as it was
    assert "'%(n)s overdue'" in code  # translated with its values on each render


# --- the German catalogue is complete -------------------------------------------------------------


def portal_messages() -> dict:
    """{msgid or (singular, plural): file} for every message babel.cfg extracts (templates and views.py)."""
    with (GATEWAY / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(str(GATEWAY), method_map, options_map):
        found.setdefault(message, filename)
    return found


@pytest.fixture(scope="module")
def german():
    with DE_PO.open("rb") as handle:
        return read_po(handle, locale="de")


def test_every_portal_message_has_a_german_translation(german):
    messages = portal_messages()
    assert len(messages) > 200 and "Continue to your portal" in messages and "Page not found" in messages
    problems = []
    for message, filename in messages.items():
        msgid = message[0] if isinstance(message, tuple) else message
        entry = german.get(msgid)
        strings = (entry.string if isinstance(entry.string, tuple) else (entry.string,)) if entry else ("",)
        if entry is None or entry.fuzzy or not all(strings):
            problems.append(f"{filename}: {message!r} has no German translation")
        elif isinstance(message, tuple) != isinstance(entry.id, tuple):
            problems.append(f"{filename}: {message!r} is singular in one place and plural in the other")
        elif any(set(PLACEHOLDER.findall(text)) != set(PLACEHOLDER.findall(msgid)) for text in strings):
            problems.append(f"{filename}: {message!r} has other %(name)s placeholders in German")
    assert not problems, "\n".join(problems)


def test_every_label_the_python_code_shows_is_extracted_and_translated(german):
    messages = portal_messages()
    labels = [
        label
        for pairs in (
            usecases.INVOICE_FILTERS,
            usecases.INVOICE_SORTS,
            usecases.QUOTE_FILTERS,
            usecases.PAYMENT_KINDS,
            usecases.PAYMENT_SORTS,
        )
        for _key, label in pairs
    ]
    labels += [text for pair in sign_in.LINK_PROBLEMS.values() for text in pair]
    labels += [*views.STATUS_LABELS.values(), *views.METHOD_LABELS.values(), *views.QUERY_PARAMETERS.values()]
    labels += [*payment_labels.PAID_WITH_MEANS, payment_labels.PAID_WITH_ENDING]  # the payment_label filter's
    missing = [label for label in labels if label not in messages or not getattr(german.get(label), "string", "")]
    assert not missing, f"add to views.CODE_MESSAGES and the German catalogue: {missing}"


def test_templates_translate_only_literal_text():
    """_() marks its result safe, so a value (not a literal) would skip escaping: values use `| translate`."""
    env = views.env_for("en")
    for template in sorted((GATEWAY / "templates").glob("*.html")):
        for lineno, function, message in env.extract_translations(template.read_text()):
            strings = message if isinstance(message, tuple) else (message,)
            assert None not in strings[: 2 if function == "ngettext" else 1], (
                f"{template.name}:{lineno}: {function}() of a value; use | translate"
            )


def test_a_dicts_keys_read_as_attributes_first_and_everything_else_as_jinja_reads_it():
    template = views.env_for("en").from_string(
        "{{ d.name }}|{{ d.items | length }}|{{ d.missing is undefined }}|{{ d.get('name') }}|{{ s.upper() }}"
    )
    assert template.render(d={"name": "Ann", "items": [1, 2]}, s="ok") == "Ann|2|True|Ann|OK"


class _Html:
    def __html__(self):
        return "<em>safe</em>"


class _Text(str):
    pass


@pytest.mark.parametrize("autoescape", [True, False])
def test_what_a_page_prints_is_escaped_exactly_as_jinja_escapes_it(autoescape):
    """Values printed through the portal's own output escaping: text with every character HTML
    escapes, already-safe markup, numbers, None, objects with __html__, a str subclass; in text, in
    attributes, in set blocks, macros, call and filter blocks, concatenated and formatted into a
    translated message. The page is the same, character for character, as Jinja's own."""
    from decimal import Decimal

    from jinja2 import Environment
    from markupsafe import Markup

    source = (
        '{% macro box(v) %}<b title="{{ v }}">{{ v }}{{ caller() if caller }}</b>{% endmacro %}'
        "{% for v in values %}<p data-v=\"{{ v }}\">{{ v }}|{{ v | e }}|{{ v ~ '&' }}|{{ box(v) }}"
        "{% call box(v) %}[{{ v }}]{% endcall %}{% set kept %}<i>{{ v }}</i>{% endset %}{{ kept }}"
        "{% filter upper %}{{ v }}{% endfilter %}|{{ _('%(v)s & more', v=v) }}</p>{% endfor %}"
    )
    values = [
        "<script>alert('x')</script>",
        'Kim & Co "quoted"',
        Markup("<b>bold</b> &amp;"),
        5,
        1.5,
        Decimal("2.50"),
        None,
        _Html(),
        _Text("<sub>"),
        "",
    ]
    ours = views.env_for("en").overlay(autoescape=autoescape)
    theirs = Environment(extensions=["jinja2.ext.i18n"], autoescape=autoescape)
    getattr(theirs, "install_null_translations")(newstyle=True)
    assert ours.from_string(source).render(values=values) == theirs.from_string(source).render(values=values)
    page = ours.from_string(source)
    assert page.root_render_func.__globals__["escape"] is views.escaped_output  # the portal's own is what ran
    assert ("<script>" in page.render(values=values)) is not autoescape


def test_a_value_printed_is_escaped_with_markupsafes_entities():
    from markupsafe import Markup, escape

    for value in ("a<b>&'\"c", "plain", Markup("<i>kept</i>"), 7, None, _Html(), _Text("<x>")):
        assert views.escaped_output(value) == escape(value)


def test_a_page_built_of_blocks_is_the_same_as_jinja_streams_it():
    """Blocks hand on what they print in one piece (views.BufferedBlocks): a page that extends a
    layout, overrides and nests blocks, calls super(), includes, loops, sets and calls macros reads the
    same, character for character, as Jinja's own, and a block's error still names its line."""
    import traceback

    from jinja2 import DictLoader, Environment, TemplateRuntimeError

    templates = {
        "layout.html": (
            "<title>{% block title %}Portal{% endblock %}</title>"
            "<main>{% block main %}<p>empty</p>{% endblock %}</main>"
            "{% block foot %}<footer>{{ who }}</footer>{% endblock %}"
        ),
        "row.html": "<li>{{ item }}</li>",
        "page.html": (
            "{% extends 'layout.html' %}{% block title %}{{ super() }} &ndash; {{ who }}{% endblock %}"
            "{% macro cell(v) %}<td>{{ v }}</td>{% endmacro %}"
            "{% block main %}<h1>{{ who }}</h1>{% for item in items %}{% include 'row.html' %}"
            "{{ cell(item) }}{% if loop.last %}<hr>{% endif %}{% endfor %}{% set note %}<b>{{ who }}</b>{% endset %}"
            "{{ note }}{% block inner %}<i>{{ items | length }}</i>{% endblock %}{{ self.inner() }}{% endblock %}"
        ),
        "broken.html": "{% extends 'layout.html' %}\n{% block main %}\n<p>{{ fail() }}</p>{% endblock %}",
    }
    ours = views.env_for("en").overlay(loader=DictLoader(templates))
    theirs = Environment(loader=DictLoader(templates), autoescape=True)
    values = {"who": "Kim & <Co>", "items": ["a<b", "c&d", 3]}
    page = ours.get_template("page.html")
    assert page.render(**values) == theirs.get_template("page.html").render(**values)
    assert len(list(page.blocks["inner"](page.new_context(values)))) == 1  # the block's output, in one piece

    def fail():
        raise TemplateRuntimeError("refused")

    with pytest.raises(TemplateRuntimeError) as raised:
        ours.get_template("broken.html").render(fail=fail)
    assert "line 3, in block 'main'" in "".join(traceback.format_tb(raised.value.__traceback__))


def test_a_status_badge_reads_as_its_filter_does():
    """A quote the list badges as one word must be found under the filter of the same word."""
    for filters in (usecases.INVOICE_FILTERS, usecases.QUOTE_FILTERS):
        for status, label in filters:
            if status in views.STATUS_LABELS:
                assert views.STATUS_LABELS[status] == label.lower(), status


def test_billings_statement_date_message_reads_in_german():
    refused = Invalid("The start date must be a date like 2026-11-23.", fields={"from": "not a date"})
    c, _ = portal("de_DE", answers={("billing", "statement"): refused})
    page = c.simulate_get("/statement", params={"from": "soon"}, cookies=c.session_cookie)
    assert page.status_code == 422 and "Das Startdatum muss ein Datum wie 2026-11-23 sein." in page.text


# Refusals at the door (app.SecurityMiddleware, csrf.py): answered before any page or session is read.
TOO_LARGE = "email=" + "a" * 70_000
GERMAN_BROWSER = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"}
DOOR = {
    "too large": (
        lambda c, **kw: c.simulate_post("/login", body=TOO_LARGE, **kw),
        413,
        ("Anfrage zu groß", "Eine Anfrage darf höchstens 65.536 Bytes groß sein."),
        ("Request too large", "Requests may be at most 65,536 bytes."),
    ),
    "NUL in the address": (
        lambda c, **kw: c.simulate_get("/invoices/a%00b", **kw),
        400,
        ("Unzulässige Zeichen", "Die Adresse oder das Formular enthält ein NUL-Zeichen."),
        ("Characters that are not allowed", "The address or the form contains a NUL character."),
    ),
    "NUL in the form": (
        lambda c, **kw: c.simulate_post("/contact", body="subject=Hallo&message=a%00b", **kw),
        400,
        ("Unzulässige Zeichen", "Die Adresse oder das Formular enthält ein NUL-Zeichen."),
        ("Characters that are not allowed", "The address or the form contains a NUL character."),
    ),
    "a form that is not URL-encoded text": (
        lambda c, **kw: c.simulate_post("/login", body=b"email=d\xc3\xa9mo@example.com", **kw),
        400,
        ("Das Formular konnte nicht gelesen werden", "Gehen Sie zurück, laden Sie die Seite neu"),
        ("The form could not be read", "Go back, reload the page and try again."),
    ),
    "a cross-site form": (
        lambda c, headers, **kw: c.simulate_post(
            "/login", body="email=a@example.com", headers={**headers, "Sec-Fetch-Site": "cross-site"}, **kw
        ),
        403,
        ("Anfrage von fremder Website abgelehnt", "Portal"),
        ("Cross-site request refused", "This form must be sent from the portal itself."),
    ),
    "an expired form": (
        lambda c, **kw: c.simulate_post("/login", body="email=a@example.com", csrf=False, **kw),
        403,
        ("Dieses Formular ist abgelaufen", "Gehen Sie zurück"),
        ("This form has expired", "The page was open too long or came from elsewhere."),
    ),
}


def at_the_door(refusal: str, c, cookies=None, headers=None):
    ask, status, german, english = DOOR[refusal]
    page = ask(c, headers={**FORM, **(headers or {})}, cookies=cookies or {})
    assert page.status_code == status and page.headers["content-type"].startswith("text/html")
    return page, german, english


@pytest.mark.parametrize("refusal", list(DOOR))
def test_a_refusal_at_the_door_speaks_the_signed_in_contacts_language(refusal):
    c, rpc = portal("de_DE", answers={})
    page, german, english = at_the_door(refusal, c, cookies=c.session_cookie)
    assert '<html lang="de">' in page.text and all(text in page.text for text in german)
    assert english[0] not in page.text and "Referenz: " in page.text and "Zurück zum Portal" in page.text
    assert "Abmelden" not in page.text  # refused before the session was read: the page only speaks its language
    assert rpc.calls == []  # nothing was asked of any service, auth included

    # the contact's language before the browser's
    english_contact, _ = portal("en_US")
    page, _, english = at_the_door(refusal, english_contact, english_contact.session_cookie, GERMAN_BROWSER)
    assert '<html lang="en">' in page.text and all(text in page.text for text in english)


@pytest.mark.parametrize("refusal", list(DOOR))
def test_a_refusal_at_the_door_without_a_session_speaks_the_browsers_language(refusal):
    c, rpc = client()
    page, german, english = at_the_door(refusal, c, headers=GERMAN_BROWSER)
    assert '<html lang="de">' in page.text and all(text in page.text for text in german)
    assert english[0] not in page.text

    page, _, english = at_the_door(refusal, c, headers={"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7"})
    assert '<html lang="en">' in page.text and all(text in page.text for text in english)
    page, _, english = at_the_door(refusal, c)  # no preference at all: English
    assert '<html lang="en">' in page.text and all(text in page.text for text in english)
    assert rpc.calls == []


def test_a_session_that_is_not_live_does_not_choose_the_language_of_a_refusal():
    revoked = RevocationList(ready=True)
    revoked.end_session("s1", NOW + timedelta(days=1))  # signed out elsewhere
    c, _ = client(session={**SESSION, "locale": "de_DE"}, revocations=revoked)
    for cookies in (c.session_cookie, {"portal_session": "forged"}):
        page, _, english = at_the_door("too large", c, cookies=cookies)
        assert '<html lang="en">' in page.text and english[0] in page.text
        page, german, _ = at_the_door("too large", c, cookies=cookies, headers=GERMAN_BROWSER)
        assert '<html lang="de">' in page.text and german[0] in page.text  # the browser's, then

    # gone idle: a session credential past its limit
    c, _ = client(session={**SESSION, "locale": "de_DE"}, now=NOW + timedelta(days=2))
    page, _, english = at_the_door("too large", c, cookies=c.session_cookie)
    assert '<html lang="en">' in page.text and english[0] in page.text


def test_while_the_revocation_list_is_not_ready_a_refusal_asks_auth_nothing():
    """Only auth could tell whether the session still lives: a refusal does not wait for it."""
    c, rpc = client(
        {("auth", "check_session"): "active"},
        session={**SESSION, "locale": "de_DE"},
        revocations=RevocationList(ready=False),
    )
    page, _, english = at_the_door("too large", c, cookies=c.session_cookie)
    assert '<html lang="en">' in page.text and english[0] in page.text and rpc.calls == []
    page, german, _ = at_the_door("too large", c, cookies=c.session_cookie, headers=GERMAN_BROWSER)
    assert '<html lang="de">' in page.text and german[0] in page.text and rpc.calls == []


def test_an_address_no_route_answers_speaks_the_browsers_language_without_a_session():
    c, _ = client()
    page = c.simulate_get("/no/such/page", headers=GERMAN_BROWSER)
    assert page.status_code == 404 and '<html lang="de">' in page.text and "Seite nicht gefunden" in page.text
    assert "Abmelden" not in page.text


@pytest.mark.parametrize("session_locale", ["de_DE", "en_US"])
def test_the_json_apis_refusals_at_the_door_stay_english_problem_json(session_locale):
    c, rpc = portal(session_locale)
    too_large = c.simulate_post(
        "/api/portal/v1/contact",
        body='{"message": "' + "a" * 70_000 + '"}',
        headers={"Content-Type": "application/json", **GERMAN_BROWSER, **c.bearer},
    )
    nul = c.simulate_get("/api/portal/v1/invoices", params={"q": "a\x00b"}, headers={**GERMAN_BROWSER, **c.bearer})
    for answer, status, title in (
        (too_large, 413, "Request too large"),
        (nul, 400, "Characters that are not allowed"),
    ):
        assert answer.status_code == status and answer.headers["content-type"] == "application/problem+json"
        assert answer.json["title"] == title and answer.json["status"] == status and answer.json["request_id"]
    assert too_large.json["detail"] == "Requests may be at most 65,536 bytes."
    assert rpc.calls == []


@pytest.mark.parametrize(
    "header, locale",
    [
        ("de-AT", "de_DE"),
        ("DE", "de_DE"),
        ("de_DE", "de_DE"),
        ("en;q=0.9, de;q=0.9", "en_US"),  # equally preferred: the first
        ("de; q=0.8, en; q=0.9", "en_US"),
        ("en;q=0, de;q=0.1", "de_DE"),  # q=0: not acceptable at all
        ("de;q=0", "en_US"),
        ("de;q=1.5", "en_US"),  # not a weight: the tag is not read
        ("de;level=1;q=0.5, fr", "de_DE"),
        ("*", "en_US"),
        ("fr-FR, fr;q=0.9", "en_US"),
        ("deu, de-x;q=0.5", "de_DE"),
        (None, "en_US"),
        (", ;, de", "de_DE"),
    ],
)
def test_the_browsers_language_is_the_best_of_the_portals_it_accepts(header, locale):
    assert views.browser_locale(header) == locale


# --- signed-out pages: no contact yet, so the browser's language (Accept-Language) ------------------


def signed_out(answers=None):
    return client(
        {
            ("auth", "passwords_offered"): True,
            ("auth", "request_link"): {"accepted": True},
            ("auth", "request_password_reset"): {"accepted": True},
            ("auth", "password_reset_state"): "valid",
            **(answers or {}),
        }
    )


SIGNED_OUT_PAGES = {
    "sign in": (lambda c, **kw: c.simulate_get("/login", **kw), 200, "Im Portal anmelden", "Sign in to your portal"),
    "signed out": (
        lambda c, **kw: c.simulate_get("/login?signed_out=1", **kw),
        200,
        "Sie sind abgemeldet.",
        "You are signed out.",
    ),
    "session ended": (
        lambda c, **kw: c.simulate_get("/login?expired=1", **kw),
        200,
        "Ihre Sitzung ist abgelaufen",
        "Your session has ended.",
    ),
    "a malformed address": (
        lambda c, **kw: c.simulate_post("/login", body="email=nope", headers={**FORM, **kw.pop("headers")}, **kw),
        400,
        "Geben Sie eine gültige E-Mail-Adresse ein",
        "Enter a valid email address",
    ),
    "check your email": (
        lambda c, **kw: c.simulate_post(
            "/login", body="email=a@example.com", headers={**FORM, **kw.pop("headers")}, **kw
        ),
        200,
        "Prüfen Sie Ihre E-Mails",
        "Check your email",
    ),
    "a sign-in link": (
        lambda c, **kw: c.simulate_get("/login/verify", params={"token": "t" * 43}, **kw),
        200,
        "Weiter zu Ihrem Portal",
        "Continue to your portal",
    ),
    "a used link": (
        lambda c, **kw: c.simulate_get("/login/verify", params={"token": "used"}, **kw),
        410,
        "Dieser Link wurde bereits verwendet",
        "This link has already been used",
    ),
    "an invalid link": (
        lambda c, **kw: c.simulate_get("/login/verify", **kw),
        400,
        "Neuen Anmeldelink anfordern",
        "Request a new sign-in link",
    ),
    "a used link, pressed": (
        lambda c, **kw: c.simulate_post(
            "/login/verify", body="token=used", headers={**FORM, **kw.pop("headers")}, **kw
        ),
        410,
        "Dieser Link wurde bereits verwendet",
        "This link has already been used",
    ),
    "a wrong password": (
        lambda c, **kw: c.simulate_post(
            "/login/password", body="email=a@example.com&password=", headers={**FORM, **kw.pop("headers")}, **kw
        ),
        400,
        "Geben Sie Ihr Passwort ein.",
        "Enter your password.",
    ),
    "forgot password": (
        lambda c, **kw: c.simulate_get("/password/forgot", **kw),
        200,
        "Passwort vergessen?",
        "Forgot your password?",
    ),
    "reset link sent": (
        lambda c, **kw: c.simulate_post(
            "/password/forgot", body="email=a@example.com", headers={**FORM, **kw.pop("headers")}, **kw
        ),
        200,
        "Passwort vergessen?",
        "Forgot your password?",
    ),
    "a password reset link": (
        lambda c, **kw: c.simulate_get("/password/reset", params={"token": "t" * 43}, **kw),
        200,
        "Neues Passwort wählen",
        "Choose a new password",
    ),
}


def _link_state(token, *_):
    return "valid" if token == "t" * 43 else "used"


@pytest.mark.parametrize("name", list(SIGNED_OUT_PAGES))
def test_a_signed_out_page_speaks_the_browsers_language(name):
    ask, status, german, english = SIGNED_OUT_PAGES[name]
    answers = {("auth", "link_state"): _link_state, ("auth", "consume_link"): Unauthorized("used")}
    c, _ = signed_out(answers)
    page = ask(c, headers=GERMAN_BROWSER)
    assert page.status_code == status and '<html lang="de">' in page.text
    assert german in page.text and english not in page.text

    for header in ({"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7"}, {}):
        page = ask(c, headers=header)
        assert page.status_code == status and '<html lang="en">' in page.text
        assert english in page.text and german not in page.text


def test_a_refused_sign_in_link_reads_the_rate_limit_in_the_browsers_language():
    limited = RateLimited(
        "Too many sign-in links that do not work came from your network. "
        "Wait a few minutes, then use the link from your latest email."
    )
    c, _ = signed_out({("auth", "link_state"): limited})
    page = c.simulate_get("/login/verify", params={"token": "x"}, headers=GERMAN_BROWSER)
    assert page.status_code == 429 and '<html lang="de">' in page.text
    assert "Zu viele Anmeldeversuche" in page.text and "Aus Ihrem Netzwerk kamen zu viele Anmeldelinks" in page.text


# --- German wording ------------------------------------------------------------------------------


def test_the_sessions_page_names_the_time_zone_in_the_nominative():
    devices = {"sessions": [], "sign_in_links": [], "document_links": []}
    rpc_client = {"id": "cl1", "name": "Demo", "locale": "de_DE", "timezone": "Europe/Berlin", "contacts": []}
    c, _ = portal("de_DE", answers={("auth", "list_devices"): devices, ("billing", "get_client"): rpc_client})
    page = c.simulate_get("/profile/sessions", cookies=c.session_cookie)
    assert page.status_code == 200
    assert "Zeitzone: Mitteleuropäische Zeit. „Zuletzt aktiv“ kann eine Minute nachgehen." in page.text
    assert "Zeiten in" not in page.text


@pytest.mark.parametrize(
    ("category", "asked", "done"),
    [
        (
            "quotes",
            "Keine E-Mails mehr zu diesem Thema an anna@example.com senden: Neuen Angeboten?",
            "anna@example.com erhält keine E-Mails mehr zu diesem Thema: Neuen Angeboten.",
        ),
        (
            "monthly_statement",
            "Keine E-Mails mehr zu diesem Thema an anna@example.com senden: Einem monatlichen Kontoauszug?",
            "anna@example.com erhält keine E-Mails mehr zu diesem Thema: Einem monatlichen Kontoauszug.",
        ),
    ],
)
def test_the_unsubscribe_page_asks_and_answers_in_german_that_reads(monkeypatch, category, asked, done):
    """The category labels are datives, as the profile's "Mir E-Mails senden zu" needs them: the
    unsubscribe sentences take them after "zu diesem Thema", which needs the same case."""
    from chassis import unsubscribe

    monkeypatch.setenv("UNSUBSCRIBE_SECRET", "s" * 32)
    token = unsubscribe.issue(b"s" * 32, "ws1", "cl1", "c1", category, NOW)
    preferences = {"email": "anna@example.com", "email_locale": "de_DE"}
    c, _ = client(
        {
            ("billing", "get_notification_preferences"): preferences,
            ("billing", "update_notification_preferences"): preferences,
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_get("/unsubscribe", params={"token": token})
    assert page.status_code == 200 and asked in page.text
    page = c.simulate_post("/unsubscribe", params={"token": token}, body="List-Unsubscribe=One-Click", headers=FORM)
    assert page.status_code == 200 and done in page.text


@pytest.mark.parametrize(
    ("client_locale", "asked"), [("de_DE", "Keine E-Mails mehr zu diesem Thema"), ("en_US", "Stop")]
)
def test_the_unsubscribe_page_of_a_contact_without_a_language_speaks_its_clients(monkeypatch, client_locale, asked):
    """Its email came in the client's language: the page its link opens speaks the same."""
    from chassis import unsubscribe

    monkeypatch.setenv("UNSUBSCRIBE_SECRET", "s" * 32)
    token = unsubscribe.issue(b"s" * 32, "ws1", "cl1", "c1", "invoices", NOW)
    preferences = {"email": "karl@example.com", "email_locale": None}
    c, _ = client(
        {
            ("billing", "get_notification_preferences"): preferences,
            ("billing", "update_notification_preferences"): preferences,
            ("billing", "get_client"): {"id": "cl1", "name": "Kunde AG", "locale": client_locale},
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_get("/unsubscribe", params={"token": token})
    assert page.status_code == 200 and asked in page.text
    assert f'<html lang="{client_locale[:2]}">' in page.text


def test_the_dashboards_retainer_tile_has_a_german_label_that_fits_and_tiles_hyphenate():
    c, _ = portal("de_DE")
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert "<h2>Vorschuss</h2>" in page.text and '<html lang="de">' in page.text
    css = (GATEWAY / "static" / "portal.css").read_text()
    rule = re.search(r"^\.tile h2 \{([^}]*)\}", css, re.M).group(1)
    assert "text-transform: uppercase" in rule and "hyphens: auto" in rule


def test_the_profiles_default_email_language_is_named_as_the_clients_company_not_the_business():
    """No language of its own means the client's: in German that is "Ihre Firma", the profile's heading
    for the client's company; "das Unternehmen" is what the portal calls the business everywhere else."""
    profile = {
        "id": "cl1",
        "name": "Kunde AG",
        "address": "",
        "phone": "",
        "locale": "de_DE",
        "timezone": "Europe/Berlin",
        "contacts": [{"id": SESSION["contact_id"], "name": "Karl", "email": SESSION["email"], "phone": ""}],
    }
    c, _ = portal(
        "de_DE",
        answers={
            ("billing", "get_client"): profile,
            ("billing", "get_notification_preferences"): {"email_locale": None},
            ("auth", "password_status"): {},
        },
    )
    page = c.simulate_get("/profile", cookies=c.session_cookie)
    assert page.status_code == 200 and "<h2>Firma</h2>" in page.text
    assert '<option value="" selected>Die Sprache Ihrer Firma</option>' in page.text
    assert "Die Sprache des Unternehmens" not in page.text


BOOKING_LINK = {"id": "consultation-30", "name": "30-minute consultation", "duration_minutes": 30}
BOOKED = "2026-12-08T14:00:00+00:00"  # 15:00 in Berlin


@pytest.mark.parametrize("locale, when", [("de_DE", "08.12.2026, 15:00"), ("en_US", "Dec 8, 2026, 3:00\u202fPM")])
def test_a_booked_time_reads_to_the_minute_as_its_email_writes_it(locale, when):
    berlin = {"id": "cl1", "name": "Kunde AG", "locale": "de_DE", "timezone": "Europe/Berlin", "contacts": []}
    c, _ = portal(
        locale,
        answers={
            ("billing", "get_client"): berlin,
            ("billing", "booking_options"): {"links": [BOOKING_LINK], "link": BOOKING_LINK, "slots": [BOOKED]},
            ("billing", "list_bookings"): [{"id": "b1", "title": BOOKING_LINK["name"], "start": BOOKED}],
        },
    )
    confirm = c.simulate_get(
        "/bookings/new/consultation-30/confirm", params={"start": BOOKED}, cookies=c.session_cookie
    )
    listed = c.simulate_get("/bookings", cookies=c.session_cookie)
    assert confirm.status_code == 200 and listed.status_code == 200
    assert f'<dd data-testid="when">{when} (' in confirm.text
    assert f'<td data-label="{"Wann" if locale == "de_DE" else "When"}">{when}</td>' in listed.text
    assert "15:00:00" not in confirm.text + listed.text and "3:00:00" not in confirm.text + listed.text


@pytest.mark.parametrize(
    ("currency", "banks", "heading", "bank_section"),
    [
        ("EUR", [], "Gespeicherte Karten und Bankkonten", True),  # SEPA: bank accounts may be added
        ("USD", [], "Gespeicherte Karten", False),  # no empty "Bankkonten" heading
        ("USD", [{"id": "pm_b", "type": "sepa_debit", "holder_name": "Kunde AG", "last4": "3000"}], None, True),
    ],
)
def test_the_saved_payment_methods_page_is_named_for_what_it_holds(currency, banks, heading, bank_section):
    reader = {"id": "cl1", "name": "Kunde AG", "currency": currency, "locale": "de_DE", "timezone": "Europe/Berlin"}
    c, _ = portal(
        "de_DE",
        answers={
            ("billing", "get_client"): reader,
            ("payments", "list_cards"): banks,
            ("payments", "list_mandates"): [],
        },
    )
    page = c.simulate_get("/payment-methods", cookies=c.session_cookie)
    assert page.status_code == 200
    if heading:
        assert f"<h1>{heading}</h1>" in page.text
    assert ("<h2>Bankkonten</h2>" in page.text) is bank_section


@pytest.mark.parametrize(
    ("start", "says"),
    [
        ("2026-12-08T15:00:00+00:00", "That time is no longer available. Please choose another."),  # gone
        ("garbage", "That is not one of the times offered. Please choose one below."),
        ("2026-02-30T10:00:00+00:00", "That is not one of the times offered. Please choose one below."),
        ("", "That is not one of the times offered. Please choose one below."),
    ],
)
def test_a_time_that_is_gone_and_one_that_never_was_are_told_apart(start, says):
    berlin = {"id": "cl1", "name": "Kunde AG", "locale": "en_US", "timezone": "Europe/Berlin", "contacts": []}
    c, _ = portal(
        "en_US",
        answers={
            ("billing", "get_client"): berlin,
            ("billing", "booking_options"): {"links": [BOOKING_LINK], "link": BOOKING_LINK, "slots": [BOOKED]},
        },
    )
    confirm = c.simulate_get("/bookings/new/consultation-30/confirm", params={"start": start}, cookies=c.session_cookie)
    assert confirm.status_code == 303
    slots = c.simulate_get(confirm.headers["location"], cookies=c.session_cookie)
    assert slots.status_code == 200 and says in slots.text
