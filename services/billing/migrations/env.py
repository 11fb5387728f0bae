"""Alembic environment for the billing service's own database."""

from chassis.db import run_migrations_env
from services.billing.tables import metadata

run_migrations_env(metadata)
