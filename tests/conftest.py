"""Shared fixtures: real databases (SQLite files, PostgreSQL) for every storage test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.tables import metadata
from tests import dbutil


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per run, copied for each test."""
    return dbutil.sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this run; skips (outside CI) when there is no server."""
    admin, reason = dbutil.postgres_admin_dsn()
    if admin is None:
        if dbutil.in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    url, name = dbutil.create_pg_database(admin)
    yield url
    dbutil.drop_pg_database(admin, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[Database]:
    """A migrated, empty database: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        url = dbutil.copy_sqlite(sqlite_template, tmp_path / "bridge.db")
        database = Database.from_config(DatabaseConfig(url=url))
    else:
        url = request.getfixturevalue("postgres_url")
        database = Database.from_config(DatabaseConfig(url=url, pool_size=5))
        names = ", ".join(t.name for t in metadata.sorted_tables)
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    try:
        yield database
    finally:
        await database.dispose()
