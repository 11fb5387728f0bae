"""The payments service's own tables (Stripe objects arrive with the payments issue)."""
import sqlalchemy as sa

from chassis.events import define_tables

metadata = sa.MetaData()
define_tables(metadata)
