"""Seeding a database with synthetic users: `goalport seed`, `goalport demo`, tests, bench.

Migrates the database, generates the users (`synthetic.population`) and bulk loads them
(`synthetic.load`), refusing a database that already holds users the seed would create.
The same arguments always give the same rows.
"""

from __future__ import annotations

import sqlalchemy as sa

from migrations import upgrade
from resources.schema import user
from synthetic.load import BULK_ROWS, load_population
from synthetic.population import generate_population, generated_user_ids


def seed_database(
    database_url: str, n_users: int, seed: int = 0, heavy_every: int = 2000
) -> dict[str, int]:
    """Migrate the database, generate `n_users` users and load them; returns rows per table.

    Refuses (ValueError) when the database already holds users this seed would create.
    """
    upgrade(database_url)
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        _refuse_existing_users(engine, n_users, seed)
        tables = generate_population(n_users, seed=seed, heavy_every=heavy_every)
        counts = load_population(engine, tables)
        if engine.dialect.name == "postgresql" and sum(counts.values()) > BULK_ROWS:
            # Fresh statistics, so the first extraction is planned for the new row counts.
            names = ", ".join(f'"{name}"' for name in counts)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f"ANALYZE {names}"))
        return counts
    finally:
        engine.dispose()


def _refuse_existing_users(engine: sa.Engine, n_users: int, seed: int) -> None:
    ids = generated_user_ids(n_users, seed).to_pylist()
    clashes = 0
    example = None
    with engine.connect() as conn:
        for i in range(0, len(ids), 10_000):
            chunk = ids[i : i + 10_000]
            found = conn.execute(sa.select(user.c.id).where(user.c.id.in_(chunk))).scalars().all()
            clashes += len(found)
            example = example or (found[0] if found else None)
    if clashes:
        raise ValueError(
            f"the database already has {clashes} of the {n_users} users that seed {seed} "
            f"generates (User.id {example!r} among them); seed an empty database, "
            f"or choose another --seed"
        )
