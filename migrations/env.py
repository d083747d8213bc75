"""Alembic environment: migrations run on the connection modbot hands over.

modbot applies migrations itself at start (``Store.open``), so no alembic.ini is needed; the
connection arrives in ``config.attributes["connection"]``.
"""

from alembic import context

from modbot.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through modbot (modbot db upgrade), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
