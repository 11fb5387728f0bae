"""Alembic environment for the payments service's own database."""

from chassis.db import run_migrations_env
from services.payments.tables import metadata

run_migrations_env(metadata)
