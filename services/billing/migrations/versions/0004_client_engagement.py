"""client engagement rollup (collection signals), backfilled from the activity timeline

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import chassis.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The timeline's kinds that are collection signals. The fold below is a frozen copy of
# services/billing/engagement.apply_signal as it was for this revision: a migration must not change
# meaning when that module changes later.
SIGNAL_OF = {
    "invoice.viewed": "view",
    "portal.signed_in": "sign_in",
    "payment.attempted": "attempt",
    "payment.failed": "failure",
    "reminder.sent": "reminder",
    "payment.recorded": "payment",
}
COUNTERS = ("portal_views", "payment_attempts", "failed_payments", "successful_payments", "reminders_sent")


def upgrade() -> None:
    op.create_table(
        "client_engagement",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("portal_views", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_viewed_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_signed_in_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("payment_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_payments", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_failed_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("previous_failed_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("successful_payments", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_paid_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_reminder_at", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("unanswered_reminder_since", chassis.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", chassis.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
        ),
        sa.PrimaryKeyConstraint("workspace_id", "client_id"),
    )
    _backfill()


def _backfill() -> None:
    """One rollup row per client with signals in its timeline, folded in time order. Card payments
    only count as successful payments (offline ones are the business's own records)."""
    meta = sa.MetaData()
    activities = sa.Table(
        "activities",
        meta,
        sa.Column("id", sa.Integer),
        sa.Column("workspace_id", sa.String),
        sa.Column("client_id", sa.String),
        sa.Column("kind", sa.String),
        sa.Column("data", sa.JSON),
        sa.Column("occurred_at", chassis.db.UtcDateTime),
    )
    clients = sa.Table("clients", meta, sa.Column("id", sa.String), sa.Column("workspace_id", sa.String))
    payments = sa.Table("payments", meta, sa.Column("id", sa.String), sa.Column("source", sa.String))
    engagement = sa.Table(
        "client_engagement",
        meta,
        *(sa.Column(c, sa.Integer) for c in COUNTERS),
        sa.Column("workspace_id", sa.String),
        sa.Column("client_id", sa.String),
        *(
            sa.Column(c, chassis.db.UtcDateTime)
            for c in (
                "last_viewed_at",
                "last_signed_in_at",
                "last_failed_at",
                "previous_failed_at",
                "last_paid_at",
                "last_reminder_at",
                "unanswered_reminder_since",
                "updated_at",
            )
        ),
    )
    conn = op.get_bind()
    card_payments = set(conn.execute(sa.select(payments.c.id).where(payments.c.source == "stripe")).scalars())
    rows = conn.execute(
        sa.select(activities)
        .join(clients, (clients.c.id == activities.c.client_id) & (clients.c.workspace_id == activities.c.workspace_id))
        .where(activities.c.kind.in_(sorted(SIGNAL_OF)))
        .order_by(activities.c.occurred_at, activities.c.id)
    )
    rollups: dict = {}
    for row in rows:
        signal = SIGNAL_OF[row.kind]
        if signal == "payment" and (row.data or {}).get("payment_id") not in card_payments:
            continue
        key = (row.workspace_id, row.client_id)
        r = rollups.setdefault(
            key,
            {
                **{c: 0 for c in COUNTERS},
                "workspace_id": key[0],
                "client_id": key[1],
                "last_viewed_at": None,
                "last_signed_in_at": None,
                "last_failed_at": None,
                "previous_failed_at": None,
                "last_paid_at": None,
                "last_reminder_at": None,
                "unanswered_reminder_since": None,
            },
        )
        at = row.occurred_at  # in time order, so the latest is the current one
        r["updated_at"] = at
        if signal == "view":
            r["portal_views"] += 1
            r["last_viewed_at"] = at
            r["unanswered_reminder_since"] = None
        elif signal == "sign_in":
            r["last_signed_in_at"] = at
        elif signal == "attempt":
            r["payment_attempts"] += 1
        elif signal == "failure":
            r["failed_payments"] += 1
            r["previous_failed_at"], r["last_failed_at"] = r["last_failed_at"], at
        elif signal == "payment":
            r["successful_payments"] += 1
            r["last_paid_at"] = at
        elif signal == "reminder":
            r["reminders_sent"] += 1
            r["last_reminder_at"] = at
            if r["unanswered_reminder_since"] is None:
                r["unanswered_reminder_since"] = at
    if rollups:
        conn.execute(engagement.insert(), list(rollups.values()))


def downgrade() -> None:
    op.drop_table("client_engagement")
