"""The migrations build the whole schema on both supported databases."""

import sqlalchemy as sa

from migrations import downgrade, upgrade
from resources.schema import metadata


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_postgres_database_has_every_table(pg_url):
    assert _tables(pg_url) == set(metadata.tables)


def test_sqlite_migrates_down_and_up_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    upgrade(url)
    assert _tables(url) == set(metadata.tables)
    downgrade(url, "base")
    assert _tables(url) == set()
    upgrade(url)
    assert _tables(url) == set(metadata.tables)


def test_migrations_build_exactly_the_declared_schema(pg_url):
    """resources/schema.py and the migrations must not drift apart."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()
