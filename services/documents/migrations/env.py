"""Alembic environment for the documents service's own database."""

from chassis.db import run_migrations_env
from services.documents.tables import metadata

run_migrations_env(metadata)
