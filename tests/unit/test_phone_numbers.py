"""A phone number is one a phone could dial (libphonenumber), read as dialled where the client is; it is
stored as typed. Text that is no number is refused with a field error, and the profile form says so in
the reader's language and keeps what was typed. A number stored before is not checked again."""

from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from chassis.errors import Invalid
from chassis.fields import NOT_A_PHONE, check_phone, region_of
from services.billing import handlers as h
from services.billing.tables import clients, contacts
from tests.unit.test_billing_handlers import db, ws  # noqa: F401 - the same fixtures
from tests.unit.test_gateway import FORM, client
from tests.unit.test_gateway import SESSION as TEST_SESSION
from tests.unit.test_gateway_usecases import PROFILE_CLIENT


@pytest.mark.parametrize(
    "number, region",
    [
        ("+49 30 1234567", None),
        ("+1 212 555 0100", "DE"),
        ("(212) 555-0100", "US"),
        ("030 1234567", "DE"),
        ("+44 20 7946 0958 ext. 12", None),
        ("+1 555 0100", None),  # a local number: possible, if not in service
    ],
)
def test_a_number_a_phone_could_dial_is_kept_as_typed(number, region):
    assert check_phone(number, "phone", region) == number


@pytest.mark.parametrize(
    "typed, region",
    [("abc", "US"), ("1", "US"), ("12345678901234567890", "DE"), ("212-555-0100", None), ("+", None)],
)
def test_text_that_is_no_phone_number_is_refused_with_a_field_error(typed, region):
    with pytest.raises(Invalid) as refused:
        check_phone(typed, "company_phone", region)
    assert refused.value.fields == {"company_phone": NOT_A_PHONE}
    assert "+1 212 555 0100" in refused.value.detail


def test_a_number_without_its_country_code_is_read_where_the_client_is_or_in_its_language():
    assert region_of("DE", "en_US") == "DE"
    assert region_of("", "en_US") == "US"
    assert region_of("", "de") is None and region_of(None, None) is None


def me(db, ws_id, client_id):
    return db(h.get_client, ws_id, client_id)["contacts"][0]


@pytest.mark.parametrize("field", ["phone", "company_phone"])
def test_the_profile_refuses_text_that_is_no_phone_number_and_saves_nothing(db, ws, field):
    ws_id, client_id = ws
    before = db(h.get_client, ws_id, client_id)
    with pytest.raises(Invalid) as refused:
        db(h.update_profile, ws_id, client_id, me(db, ws_id, client_id)["id"], {"name": "Jana", field: "abc"})
    assert refused.value.fields == {field: NOT_A_PHONE}
    assert db(h.get_client, ws_id, client_id) == before


def test_the_profile_reads_a_number_without_country_code_as_dialled_in_the_clients_country(db, ws):
    ws_id, client_id = ws
    db(h.update_client, ws_id, client_id, {"country": "DE"})
    saved = db(h.update_profile, ws_id, client_id, me(db, ws_id, client_id)["id"], {"company_phone": "030 1234567"})
    assert saved["client"]["phone"] == "030 1234567"


def test_contacts_and_clients_from_the_admin_api_refuse_what_is_no_phone_number(db, ws):
    ws_id, client_id = ws
    with pytest.raises(Invalid) as refused:
        db(h.add_contact, ws_id, client_id, {"email": "new@example.com", "phone": "call me"})
    assert refused.value.fields == {"phone": NOT_A_PHONE}
    with pytest.raises(Invalid):
        db(h.update_contact, ws_id, me(db, ws_id, client_id)["id"], {"phone": "n/a"})
    with pytest.raises(Invalid):
        db(h.update_client, ws_id, client_id, {"phone": "abc"})
    with pytest.raises(Invalid):
        db(h.create_client, ws_id, {"name": "Two", "phone": "abc"})
    added = db(h.add_contact, ws_id, client_id, {"email": "two@example.com", "phone": "(212) 555-0100"})
    assert added["phone"] == "(212) 555-0100"  # the workspace's en_US: dialled in the US


def test_a_number_stored_before_is_not_checked_again_when_the_profile_is_saved(db, ws):
    ws_id, client_id = ws
    contact_id = me(db, ws_id, client_id)["id"]
    with db.engine.begin() as conn:  # what an older version let through
        conn.execute(sa.update(contacts).where(contacts.c.id == contact_id).values(phone="ask reception"))
        conn.execute(sa.update(clients).where(clients.c.id == client_id).values(phone="n/a"))
    typed = {"name": "Jana", "phone": "ask reception", "company": "Client One", "company_phone": "n/a"}
    saved = db(h.update_profile, ws_id, client_id, contact_id, typed)
    assert (saved["contact"]["name"], saved["client"]["phone"]) == ("Jana", "n/a")


@pytest.mark.parametrize(
    "locale, says",
    [
        ("en_US", "The company phone number is not a phone number. Write it with its country code"),
        ("de_DE", "Die Telefonnummer der Firma ist keine Telefonnummer. Schreiben Sie sie mit Ländervorwahl"),
    ],
)
def test_a_phone_billing_refuses_is_the_profile_form_again_saying_so_with_what_was_typed(locale, says):
    refused = Invalid("company_phone is not a phone number.", company_phone=NOT_A_PHONE)

    def update_profile(*_args):
        raise refused

    c, _ = client(
        {
            ("billing", "get_client"): PROFILE_CLIENT,
            ("billing", "get_workspace"): {"id": "ws1", "name": "Acme"},
            ("billing", "get_notification_preferences"): {},
            ("auth", "password_status"): {},
            ("billing", "update_profile"): update_profile,
        },
        session={**TEST_SESSION, "locale": locale},
    )
    typed = {"name": "Dana", "company": "Demo Client Ltd", "company_phone": "abc"}
    page = c.simulate_post("/profile", body=urlencode(typed), headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 400
    assert says in page.text and 'value="abc"' in page.text
