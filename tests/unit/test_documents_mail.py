"""Email queueing and delivery, against a real SMTP server (aiosmtpd) started by the test."""

import socket
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from chassis.db import UnitOfWork
from chassis.logs import request_context, request_id_var
from services.documents import handlers
from services.documents.mail import FileOutbox, SmtpSender
from services.documents.tables import emails

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
SENDER = "Portal <no-reply@portal.test>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    def __init__(self, fail_with=None):
        self.messages = []
        self.fail_with = fail_with

    async def handle_DATA(self, server, session, envelope):
        if self.fail_with:
            return self.fail_with
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp():
    servers = []

    def start(fail_with=None):
        recorder = Recorder(fail_with)
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port)
        controller.start()
        servers.append(controller)
        return recorder, f"smtp://127.0.0.1:{port}"

    yield start
    for controller in servers:
        controller.stop()


def queue(engine, key="magic-link:abc", to="demo@example.com"):
    with UnitOfWork(engine) as uow:
        with engine.begin() as conn:
            handlers.apply_workspace(conn, {"id": "ws1", "name": "Acme Studio"}, NOW)
        email_id = handlers.queue_email(
            uow,
            NOW,
            SENDER,
            idempotency_key=key,
            kind="magic_link",
            to=to,
            workspace_id="ws1",
            client_id="cl1",
            context={
                "name": "Dana",
                "url": "http://portal.test/login/verify?token=T0K",
                "expires_at": "2026-11-24 12:00",
            },
        )
        uow.commit()
        return email_id


def deliver(engine, backend, now=NOW):
    with UnitOfWork(engine) as uow:
        return handlers.deliver_due(uow, backend, now)


def test_the_same_request_twice_queues_one_email(sqlite_engine):
    engine = sqlite_engine("documents")
    assert queue(engine) == queue(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(emails)).scalar_one() == 1


def test_file_outbox_gets_one_multipart_eml(sqlite_engine, tmp_path):
    engine = sqlite_engine("documents")
    email_id = queue(engine)
    outbox = FileOutbox(tmp_path / "mail")
    assert deliver(engine, outbox) == 1
    assert deliver(engine, outbox) == 0  # sent once
    [eml] = list((tmp_path / "mail").glob("*.eml"))
    assert eml.stem == email_id
    msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["Subject"] == "Your sign-in link for Acme Studio"
    assert "http://portal.test/login/verify?token=T0K" in msg.get_body(("plain",)).get_content()


def test_smtp_delivery_sends_both_parts_with_the_link(sqlite_engine, smtp):
    engine = sqlite_engine("documents")
    recorder, url = smtp()
    queue(engine)
    assert deliver(engine, SmtpSender(url)) == 1
    [(rcpts, msg)] = recorder.messages
    assert rcpts == ["demo@example.com"]
    assert msg["From"] == SENDER and msg["Message-ID"]
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert 'href="http://portal.test/login/verify?token=T0K"' in html and "Acme Studio" in html
    assert "http://portal.test/login/verify?token=T0K" in text and "<" not in text


def test_transient_smtp_failure_is_retried_later_then_sent(sqlite_engine, smtp):
    engine = sqlite_engine("documents")
    _, failing = smtp("451 Try again later")
    queue(engine)
    assert deliver(engine, SmtpSender(failing)) == 0
    with engine.connect() as conn:
        row = conn.execute(sa.select(emails)).one()
    assert row.status == "queued" and row.attempts == 1 and row.next_attempt_at > NOW
    recorder, working = smtp()
    assert deliver(engine, SmtpSender(working), now=NOW) == 0  # not due yet
    assert deliver(engine, SmtpSender(working), now=NOW + timedelta(minutes=5)) == 1
    assert len(recorder.messages) == 1


def test_permanent_smtp_failure_is_recorded_not_retried(sqlite_engine, smtp):
    engine = sqlite_engine("documents")
    _, rejecting = smtp("550 No such user")
    queue(engine)
    deliver(engine, SmtpSender(rejecting))
    with engine.connect() as conn:
        row = conn.execute(sa.select(emails)).one()
    assert row.status == "failed" and "550" in row.last_error


def test_unreachable_smtp_server_is_transient(sqlite_engine):
    engine = sqlite_engine("documents")
    queue(engine)
    deliver(engine, SmtpSender("smtp://127.0.0.1:1", timeout=2))
    with engine.connect() as conn:
        assert conn.execute(sa.select(emails.c.status)).scalar_one() == "queued"


def test_an_email_is_sent_under_the_request_id_it_was_queued_for(sqlite_engine, tmp_path, caplog):
    """The timer sends later, in a worker of its own; its log line still names the request."""
    engine = sqlite_engine("documents")
    with request_context("req-sign-in-42"):
        email_id = queue(engine)
    assert request_id_var.get() is None  # the context ended with the block

    class SeesTheRequest(FileOutbox):
        def send(self, message_id, message):
            seen.append(request_id_var.get())
            super().send(message_id, message)

    seen = []
    with caplog.at_level("INFO", logger="services.documents.handlers"):
        assert deliver(engine, SeesTheRequest(tmp_path / "mail")) == 1
    assert seen == ["req-sign-in-42"] and request_id_var.get() is None
    [record] = [r for r in caplog.records if r.getMessage() == "email sent"]
    assert (record.email_id, record.kind) == (email_id, "magic_link")


def test_a_subject_with_any_kind_of_line_break_is_sent_on_one_line():
    from datetime import datetime, timezone

    message = handlers.build_message(
        "Acme <billing@acme.example>",
        "dana@example.com",
        "Invoice\u0085question\u2028now\r\nplease",
        "text",
        "<p>html</p>",
        datetime(2026, 11, 23, tzinfo=timezone.utc),
    )
    assert "Subject: Invoice question now please" in message.replace("\r\n", "\n")
