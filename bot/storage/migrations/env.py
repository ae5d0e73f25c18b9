"""Alembic environment: runs on the connection init_db hands over (config.attributes),
or on QC_DATABASE_URL when called from the alembic command line."""
from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import bot.storage.all_tables  # noqa: F401  (every feature's tables, for autogenerate)
from bot.storage.tables import metadata

config = context.config


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001, ANN201
    # Tables still created by create_all (features without a migration yet) stay out of
    # autogenerate diffs until their owner writes one; see bot.storage.engine.MIGRATED_TABLES.
    if type_ == "table":
        from bot.storage.engine import MIGRATED_TABLES

        return name in MIGRATED_TABLES or config.attributes.get("all_tables", False)
    return True


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table copies for ALTER
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    from bot.storage.engine import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.begin() as conn:
        run(conn)
