"""Alembic environment for the auth service's own database."""

from chassis.db import run_migrations_env
from services.auth.tables import metadata

run_migrations_env(metadata)
