"""What a gateway worker refuses although a session's credential is signed and in time.

Auth announces every session it ends (`session.ended`: sign-out, sign-out everywhere, a new sign-in
in the same browser, portal access removed, a new role) and billing announces a contact's portal
access being turned off or its role changed (`contact.updated`), which reaches the gateways even
while auth is down. Each gateway
worker keeps the list in memory, fed by a queue of its own bound to both services' events: a
revocation reaches every worker of every replica as soon as the broker delivers it.

A worker that starts, or reconnects after losing the broker, subscribes first and then asks auth
for the list of revocations still in force, so nothing falls between the two. Until it has the list
it is not `ready`, and sessions are checked with auth on every request instead (chassis/credentials.py
and services/gateway/sessions.py say the rest).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import kombu

from chassis.credentials import Session

log = logging.getLogger(__name__)


def _moment(text) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


class RevocationList:
    """Sessions ended early (until they would have expired anyway) and contacts barred (sessions begun
    before the bar); thread-safe, shared by a worker's request threads and its feed."""

    def __init__(self, ready: bool = False):
        self._lock = threading.Lock()
        self._sessions: dict[str, datetime] = {}
        self._contacts: dict[str, datetime] = {}
        self.ready = ready

    def end_session(self, session_id: str, until: datetime) -> None:
        with self._lock:
            self._sessions[str(session_id)] = until

    def bar_contact(self, contact_id: str, since: datetime) -> None:
        """Sessions of the contact begun before `since` are refused (a later sign-in is auth's to allow)."""
        with self._lock:
            known = self._contacts.get(contact_id)
            self._contacts[contact_id] = since if known is None else max(known, since)

    def refuses(self, session: Session) -> str | None:
        with self._lock:
            if session.session_id in self._sessions:
                return "revoked"
            barred = self._contacts.get(session.contact_id)
        if barred is not None and session.started_at <= barred:
            return "no_access"
        return None

    def load(self, snapshot: dict) -> None:
        """Auth's list of what is in force (its `revocations` answer), added to what is known."""
        for session_id, until in snapshot.get("sessions", []):
            moment = _moment(until)
            if moment is not None:
                self.end_session(session_id, moment)
        for contact_id, since in snapshot.get("contacts", []):
            moment = _moment(since)
            if moment is not None:
                self.bar_contact(contact_id, moment)

    def prune(self, now: datetime, absolute: timedelta) -> None:
        """Forget what no credential can outlive: sessions past their end, bars older than any session."""
        with self._lock:
            self._sessions = {key: until for key, until in self._sessions.items() if until > now}
            self._contacts = {key: since for key, since in self._contacts.items() if since > now - absolute}

    def apply(self, event_type: str, event: dict) -> None:
        """One event from the feed."""
        data = event.get("data") or {}
        if event_type == "session.ended":
            until = _moment(data.get("remember_until"))
            if data.get("session_id") and until is not None:
                self.end_session(data["session_id"], until)
        elif event_type == "contact.updated" and data.get("id") and _bars(data):
            since = _moment(event.get("occurred_at"))
            if since is not None:
                self.bar_contact(data["id"], since)


def _bars(contact: dict) -> bool:
    """Whether a contact event ends the contact's sessions: access taken away, or a new role (the next
    sign-in carries it)."""
    return contact.get("portal_access") is False or contact.get("role_changed") is True


FEED = (("auth", "session.ended"), ("billing", "contact.updated"))


def events_exchange(service: str) -> kombu.Exchange:
    """A service's events exchange exactly as nameko declares it (declaring it again is a no-op)."""
    return kombu.Exchange(f"{service}.events", type="topic", durable=True, auto_delete=False)


class RevocationFeed(threading.Thread):
    """Keeps a worker's RevocationList current: a server-named, exclusive queue bound to the events
    above (gone with the worker), then auth's snapshot, then every event as it comes."""

    def __init__(
        self,
        amqp_uri: str,
        revocations: RevocationList,
        snapshot: Callable[[], dict],
        clock: Callable[[], datetime],
        absolute: timedelta,
    ):
        super().__init__(name="revocation-feed", daemon=True)
        self.amqp_uri = amqp_uri
        self.revocations = revocations
        self.snapshot = snapshot
        self.clock = clock
        self.absolute = absolute
        self.stopped = threading.Event()

    def run(self) -> None:
        delay = 0.5
        while not self.stopped.is_set():
            try:
                self._follow()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - the broker or auth is away: try again shortly
                self.revocations.ready = False
                log.warning("revocation feed interrupted", extra={"error": repr(exc)})
                self.stopped.wait(delay)
                delay = min(delay * 2, 10.0)

    def _follow(self) -> None:
        with kombu.Connection(self.amqp_uri, heartbeat=30, connect_timeout=5) as connection:
            bindings = [kombu.binding(events_exchange(service), routing_key=event_type) for service, event_type in FEED]
            queue = kombu.Queue("", bindings=bindings, exclusive=True, auto_delete=True, durable=False)
            with kombu.Consumer(connection, queues=[queue], callbacks=[self._on_message], accept=["json"]):
                self.revocations.load(self.snapshot())  # after subscribing: nothing falls in between
                self.revocations.ready = True
                log.info("revocation list ready")
                last_prune = time.monotonic()
                while not self.stopped.is_set():
                    try:
                        connection.drain_events(timeout=1)
                    except TimeoutError:
                        connection.heartbeat_check()
                    if time.monotonic() - last_prune > 60:
                        self.revocations.prune(self.clock(), self.absolute)
                        last_prune = time.monotonic()

    def _on_message(self, body, message) -> None:
        try:
            self.revocations.apply(message.delivery_info.get("routing_key", ""), body)
        finally:
            message.ack()

    def stop(self) -> None:
        self.stopped.set()
