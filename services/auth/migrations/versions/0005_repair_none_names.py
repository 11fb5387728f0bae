"""Contact names that billing stored as Python's spelling of a null ("None") are empty here too: auth keeps
its own copy of each contact (the name the navigation shows), which billing's repair cannot reach

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    contacts = sa.table("contacts", sa.column("name", sa.Text), sa.column("locale", sa.Text))
    op.execute(contacts.update().where(contacts.c.name == "None").values(name=""))
    op.execute(contacts.update().where(contacts.c.locale == "None").values(locale=None))


def downgrade() -> None:
    pass  # what was repaired was never a value anyone sent
