"""Step-up for money: payments refuses a contact's payment or card change unless the session proved
presence (passkey or sign-in link) in the last 10 minutes, when the workspace asks for it."""

from datetime import datetime, timedelta, timezone

import pytest

from chassis.errors import Unauthorized
from chassis.scope import Scope, acting_for
from services.payments import step_up

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ON = {"step_up_for_payments": True}


def contact(proved_at):
    return Scope("ws1", "cl1", role="payer", proved_at=proved_at)


@pytest.mark.parametrize("minutes_ago", [0, 1, 9.9])
def test_a_recent_proof_passes(minutes_ago):
    step_up.check(NOW, ON, contact((NOW - timedelta(minutes=minutes_ago)).isoformat()))


@pytest.mark.parametrize(
    "proved_at",
    [
        None,
        (NOW - timedelta(minutes=10, seconds=1)).isoformat(),  # too old
        (NOW + timedelta(minutes=5)).isoformat(),  # from the future: forged or a broken clock
        "2026-11-23T11:59:00",  # no time zone
        "yesterday",
    ],
)
def test_a_missing_old_or_malformed_proof_is_refused(proved_at):
    with pytest.raises(Unauthorized) as refused:
        step_up.check(NOW, ON, contact(proved_at))
    assert refused.value.fields == {"step_up": "required"}


def test_nothing_is_asked_when_the_workspace_does_not_ask_or_the_business_acts():
    step_up.check(NOW, {}, contact(None))
    step_up.check(NOW, {"step_up_for_payments": False}, contact(None))
    step_up.check(NOW, ON, Scope("ws1"))  # the admin API: the business, not a contact


class FakePayments:
    def __init__(self, settings):
        self.billing = self
        self.settings = settings
        self.asked = 0

    def get_workspace(self, workspace_id):
        self.asked += 1
        return {"id": workspace_id, "settings": self.settings}

    def clock(self):
        return NOW

    @step_up.required
    def start_payment(self, workspace_id, client_id):
        return "charged"


def test_the_decorated_entrypoint_runs_only_after_the_check():
    service = FakePayments(ON)
    with acting_for(contact(None)), pytest.raises(Unauthorized):
        service.start_payment("ws1", "cl1")
    with acting_for(contact(NOW.isoformat())):
        assert service.start_payment("ws1", "cl1") == "charged"
    with acting_for(Scope("ws1")):  # the business: billing is not even asked
        assert service.start_payment("ws1", "cl1") == "charged"
    assert service.asked == 2


def test_the_proof_travels_in_the_scope_between_services():
    from chassis.scope import from_context

    sent = contact(NOW.isoformat()).to_context()
    assert from_context(sent).proved_at == NOW.isoformat()
    assert from_context({"workspace_id": "ws1", "proved_at": NOW.isoformat()}) == Scope("")  # no client: refused
    assert from_context({"workspace_id": "ws1", "client_id": "c", "proved_at": 5}) == Scope("")


def test_every_entrypoint_that_moves_money_or_changes_how_asks_for_step_up():
    from services.payments.service import PaymentsService

    money = {"start_payment", "card_setup", "confirm_attempt", "save_card", "set_default_card", "remove_card"}
    money |= {"add_bank_account"}
    assert {name for name in money if getattr(getattr(PaymentsService, name), "asks_for_step_up", False)} == money
