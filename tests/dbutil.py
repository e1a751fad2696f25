"""Test databases: a migrated SQLite file per test, and a migrated PostgreSQL database per run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.migrate import upgrade

T = TypeVar("T")

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
PG_ENV = "APPROVAL_BRIDGE_TEST_PG"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a loop of its own, even when called from a running loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def in_ci() -> bool:
    """True under CI, where PostgreSQL tests must run rather than skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


async def _pg_reachable(dsn: str) -> str | None:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def postgres_admin_dsn() -> tuple[str | None, str]:
    """The PostgreSQL server to test against, or None and why not."""
    dsn = os.environ.get(PG_ENV, DEFAULT_PG)
    if dsn.lower() in {"", "0", "off", "none"}:
        return None, f"PostgreSQL tests disabled by {PG_ENV}={dsn!r}"
    problem = _run(_pg_reachable(dsn))
    if problem is not None:
        return None, f"PostgreSQL not reachable at {dsn} ({problem}); set {PG_ENV} to a server URL"
    return dsn, ""


def create_pg_database(admin_dsn: str) -> tuple[str, str]:
    """Create an empty migrated database for this run; returns (SQLAlchemy URL, name)."""
    name = f"ab_test_{uuid.uuid4().hex[:10]}"

    async def _create() -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    _run(_create())
    url = make_url(admin_dsn).set(drivername="postgresql+asyncpg", database=name)
    sa_url = url.render_as_string(hide_password=False)

    async def _migrate() -> None:
        db = Database.from_config(DatabaseConfig(url=sa_url))
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    _run(_migrate())
    return sa_url, name


def drop_pg_database(admin_dsn: str, name: str) -> None:
    """Drop a database created by `create_pg_database`."""

    async def _drop() -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(_drop())


def sqlite_template(folder: Path) -> Path:
    """A migrated SQLite file to copy for each test."""
    path = folder / "template.db"
    url = f"sqlite+aiosqlite:///{path}"

    async def _migrate() -> None:
        db = Database.from_config(DatabaseConfig(url=url))
        try:
            await upgrade(db)
            async with db.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await db.dispose()

    _run(_migrate())
    return path


def copy_sqlite(template: Path, target: Path) -> str:
    """Copy the migrated template to a fresh file; returns its URL."""
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"
