"""The database handle: one async engine, serialized writers on SQLite, schema checks."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from approvals.config import DatabaseConfig


class Database:
    """Owns the engine; hands out read connections and write transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time: queue writers here instead of spinning on SQLITE_BUSY.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @classmethod
    def from_config(cls, config: DatabaseConfig) -> Database:
        """Build the engine for a configured URL (SQLite in WAL mode, or PostgreSQL)."""
        return cls(create_engine(config))

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on exit, rolled back on error."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading."""
        async with self.engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def singleton(self, name: str) -> AsyncIterator[bool]:
        """True inside for exactly one process at a time (a PostgreSQL advisory lock).

        Scheduled work that must run once per tick across replicas takes it; SQLite serves one
        process, so there it is always granted.
        """
        if self.is_sqlite:
            yield True
            return
        key = zlib.crc32(name.encode())
        async with self.engine.connect() as conn:
            got = bool(
                (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
            )
            try:
                yield got
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()

    async def ping(self) -> None:
        """Raise when the database cannot be reached."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def create_engine(config: DatabaseConfig) -> AsyncEngine:
    """An async engine for the URL, with SQLite tuned for WAL and a busy timeout."""
    url = config.url
    kwargs: dict[str, Any] = {"pool_pre_ping": not url.startswith("sqlite")}
    if url.startswith("postgresql"):
        kwargs.update(pool_size=config.pool_size, max_overflow=config.pool_size)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        synchronous = config.sqlite_synchronous

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine
