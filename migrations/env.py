"""Alembic environment: runs migrations on the URL handed over in the config's attributes."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from resources.schema import metadata

config = context.config


def run_migrations_online() -> None:
    url = config.attributes["database_url"]
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()
    engine.dispose()


run_migrations_online()
