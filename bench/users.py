"""The portal benchmark's clients: CLIENTS clients of the benchmark's workspace, each with its own
portal contact and INVOICES invoices in a mix of statuses, of whom SIGNED_IN sign in with a magic
link, each with a session of its own.

They are written fast, the way `make seed` writes: billing's own handlers in this process, on the
benchmark's billing database as billing's login role, acting for the workspace (row-level security
binds it), a batch of clients per transaction. Of the events those handlers record, only the contact
events are published (auth learns each contact from them, as in production); the others (invoice
sent, payment recorded, ...) are taken out of the outbox in the same transaction, and the reminders
the open invoices had by now are recorded as told. This is an
imported history: had they been published, documents would render and email some ten thousand PDFs
on the benchmark's two cores while it measures, which is not what the portal benchmark measures.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import requests
import sqlalchemy as sa

from chassis import db as dbmod
from chassis.clock import utcnow
from chassis.events import OUTBOX
from chassis.scope import Scope, acting_for
from deploy.devstack import wait_for
from services.billing import domain
from services.billing import handlers as h
from services.billing.handlers.common import settings_of, workspace_row, workspace_today
from services.billing.handlers.schedules import due_reminders
from services.billing.tables import invoices, reminders_sent

CLIENTS = 500
INVOICES = 20
SIGNED_IN = 50
BATCH = 25  # clients per transaction
PUBLISHED = ("contact.created", "contact.updated")
DAY = timedelta(days=1)


@dataclass(frozen=True)
class User:
    email: str
    client_id: str
    cookie: str = ""  # the session cookie's value, once signed in


def email_of(run_id: str, i: int) -> str:
    return f"bench-{run_id}-{i:04d}@example.com"


def _invoice(uow, now, ws: str, client_id: str, today, j: int, i: int) -> None:
    """The j-th of a client's invoices, over the last half year: paid, part paid, sent (some of them
    overdue by now), viewed, a draft (not shown in the portal) and a void one."""
    days_ago = 3 + j * 9
    issued = now - days_ago * DAY
    kind = j % 10
    invoice = h.create_invoice(
        uow,
        issued,
        ws,
        {
            "client_id": client_id,
            "issue_date": (today - days_ago * DAY).isoformat(),
            "payment_terms_days": 30,
            "send": kind != 8,
            "lines": [
                {"description": f"Consulting, week {j + 1}", "quantity": 1 + (i + j) % 7, "unit_price": 9500},
                {"description": "Materials", "quantity": 1, "unit_price": 1200 + 100 * j, "tax_rate": 20},
            ],
        },
    )
    if kind in (0, 1, 2):
        h.record_payment(
            uow,
            issued + 5 * DAY,
            ws,
            {
                "invoice_id": invoice["id"],
                "amount": invoice["total"],
                "method": "bank_transfer",
                "reference": f"TRX-{i}-{j}",
            },
        )
    elif kind == 3:
        h.record_payment(
            uow,
            issued + 7 * DAY,
            ws,
            {
                "invoice_id": invoice["id"],
                "amount": invoice["total"] // 3,
                "method": "card",
                "reference": "Card ending 4242",
            },
        )
    elif kind == 5:
        h.mark_invoice_viewed(uow, issued + DAY, ws, client_id, invoice["id"])
    elif kind == 9:
        h.void_invoice(uow, issued + 2 * DAY, ws, invoice["id"])


def _reminded(uow, now, workspace_id: str, today, client_ids: list[str]) -> None:
    """The reminders the imported invoices had by now, as told: without them billing's first sweep
    would announce a few thousand overdue invoices at once, and documents email them, while the
    benchmark measures pages."""
    settings = settings_of(workspace_row(uow, workspace_id)).reminders
    open_invoices = uow.execute(
        sa.select(invoices.c.id, invoices.c.due_date).where(
            invoices.c.client_id.in_(client_ids), invoices.c.status.in_(sorted(domain.OPEN_STATUSES))
        )
    ).all()
    told = [
        {"invoice_id": row.id, "kind": kind, "sent_at": now}
        for row in open_invoices
        for kind in due_reminders(settings, row.due_date, today)
    ]
    if told:
        uow.execute(reminders_sent.insert(), told)


def seed(
    billing_url: str, workspace_id: str, run_id: str, count: int = CLIENTS, invoices: int = INVOICES
) -> list[User]:
    """`count` clients with a portal contact and `invoices` invoices each; their contact events published."""
    engine = dbmod.make_engine(billing_url)
    made: list[User] = []
    now = utcnow()
    try:
        with acting_for(Scope(workspace_id)):
            for first in range(0, count, BATCH):
                with dbmod.UnitOfWork(engine) as uow:
                    before = uow.execute(sa.select(sa.func.coalesce(sa.func.max(OUTBOX.c.seq), 0))).scalar_one()
                    today = workspace_today(workspace_row(uow, workspace_id), now)
                    for i in range(first, min(first + BATCH, count)):
                        email = email_of(run_id, i)
                        client = h.create_client(
                            uow,
                            now - 200 * DAY,
                            workspace_id,
                            {
                                "name": f"Bench Client {i:04d} Ltd",
                                "contacts": [
                                    {
                                        "email": email,
                                        "name": f"Bench {i:04d}",
                                        "is_primary": True,
                                        "portal_access": True,
                                    }
                                ],
                            },
                        )
                        for j in range(invoices):
                            _invoice(uow, now, workspace_id, client["id"], today, j, i)
                        made.append(User(email, client["id"]))
                    _reminded(uow, now, workspace_id, today, [user.client_id for user in made[first:]])
                    uow.finish()  # the batch's events are in the outbox now, as it would commit them
                    uow.execute(OUTBOX.delete().where(OUTBOX.c.seq > before, OUTBOX.c.event_type.not_in(PUBLISHED)))
                    uow.commit()
    finally:
        engine.dispose()
    return made


def sign_in_all(url: str, mail_dir: Path, users: list[User], timeout: float = 120) -> list[User]:
    """The magic-link sign-in of every user, as a browser does it, several at a time; their sessions."""
    sessions = {user.email: requests.Session() for user in users}
    tokens: dict[str, str] = {}

    def ask(user: User) -> str:
        session = sessions[user.email]
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', session.get(f"{url}/login", timeout=30).text).group(
            1
        )
        session.post(f"{url}/login", data={"email": user.email, "csrf_token": csrf}, timeout=30).raise_for_status()
        return csrf

    with ThreadPoolExecutor(8) as pool:
        csrf = dict(zip((u.email for u in users), pool.map(ask, users)))
    wanted = {user.email for user in users}
    seen: set[Path] = set()

    def read_mail() -> bool:
        for path in mail_dir.glob("*.eml"):
            if path in seen:
                continue
            seen.add(path)
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if message["To"] in wanted and "sign-in link" in message["Subject"]:
                tokens[message["To"]] = re.search(
                    r"token=([A-Za-z0-9_-]+)", message.get_body(("plain",)).get_content()
                ).group(1)
        return wanted <= set(tokens)

    started = time.monotonic()
    wait_for(read_mail, timeout, f"{len(users)} sign-in emails")

    def verify(user: User) -> User:
        session = sessions[user.email]
        # A new connection: the one kept from asking for the link idled while the mail was awaited, and
        # the gateway may close it (keep-alive) just as this POST, which is never retried, is sent on it.
        session.close()
        session.post(
            f"{url}/login/verify", data={"token": tokens[user.email], "csrf_token": csrf[user.email]}, timeout=30
        ).raise_for_status()
        assert session.get(f"{url}/dashboard", allow_redirects=False, timeout=30).status_code == 200, (
            f"{user.email} is not signed in"
        )
        return User(user.email, user.client_id, session.cookies["portal_session"])

    with ThreadPoolExecutor(8) as pool:
        signed = list(pool.map(verify, users))
    print(
        f"  {len(signed)} clients signed in ({time.monotonic() - started:.0f} s after the links were asked for)",
        flush=True,
    )
    return signed


def cookie_file(users: list[User], path: Path) -> Path:
    """One `Cookie` header value a line, for bench/wrk_report.lua: each wrk thread takes its own."""
    path.write_text("".join(f"portal_session={user.cookie}\n" for user in users))
    return path
