"""Alembic environment: dsft passes the connection in (see dsft.registry.db.migrate)."""

from alembic import context

from dsft.registry.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
