"""The auth rules in plain Python: no broker, no database."""

from datetime import datetime, timedelta, timezone

import pytest

from chassis.errors import Invalid
from services.auth import domain

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
POLICY = domain.Policy()


def test_secrets_carry_at_least_256_random_bits_and_differ():
    tokens = {domain.new_secret() for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) >= 43 for t in tokens)  # 32 bytes, base64url without padding


def test_only_a_sha256_digest_is_stored():
    token = domain.new_secret()
    digest = domain.hash_secret(token)
    assert len(digest) == 64 and token not in digest
    assert digest == domain.hash_secret(token)
    assert digest != domain.hash_secret(token + "x")


def test_link_is_valid_until_its_ttl_then_expired():
    _, link = domain.issue_link("c1", NOW, POLICY)
    assert link.expires_at - link.created_at == timedelta(hours=24)
    assert link.state(NOW + timedelta(hours=23, minutes=59)) == "valid"
    assert link.state(link.expires_at) == "expired"


def test_used_link_reports_used_even_before_expiry():
    _, link = domain.issue_link("c1", NOW, POLICY)
    used = domain.LinkToken(link.contact_id, link.created_at, link.expires_at, used_at=NOW)
    assert used.state(NOW + timedelta(minutes=1)) == "used"


def session(created=NOW, last_seen=NOW, revoked=None):
    return domain.Session("c1", "cl1", "ws1", created, last_seen, revoked)


def test_session_expires_after_idle_timeout():
    s = session()
    assert s.state(NOW + timedelta(minutes=29), POLICY) == "active"
    assert s.state(NOW + timedelta(minutes=30), POLICY) == "idle"


def test_activity_slides_the_idle_timeout_but_not_the_absolute_one():
    late_activity = session(last_seen=NOW + timedelta(hours=11, minutes=50))
    assert late_activity.state(NOW + timedelta(hours=11, minutes=59), POLICY) == "active"
    assert late_activity.state(NOW + timedelta(hours=12), POLICY) == "expired"
    assert late_activity.expires_at(POLICY) == NOW + timedelta(hours=12)


def test_revoked_session_is_never_active():
    assert session(revoked=NOW).state(NOW, POLICY) == "revoked"


def test_last_seen_is_written_at_most_once_a_minute():
    s = session()
    assert not s.needs_touch(NOW + timedelta(seconds=59), POLICY)
    assert s.needs_touch(NOW + timedelta(seconds=60), POLICY)


@pytest.mark.parametrize("raw", ["", "not-an-email", "a@", "@b.com", "a b@c.com", "x" * 250 + "@e.com", None, 42])
def test_malformed_emails_are_rejected(raw):
    with pytest.raises(Invalid):
        domain.normalise_email(raw)


def test_emails_are_normalised_to_lower_case():
    assert domain.normalise_email("  Demo@Example.COM ") == "demo@example.com"
