"""The database handle: one async engine, serialized writers on SQLite, schema checks."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from approvals.config import DatabaseConfig

T = TypeVar("T")


class Database:
    """Owns the engine; hands out read connections and write transactions."""

    def __init__(
        self,
        engine: AsyncEngine,
        sync_engine: Engine | None = None,
        lock_timeout_s: float = 5.0,
        batch_engine: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        # PostgreSQL: `write_sync` (intake's group commit) has a pool of its own. While a table
        # is locked, every other writer holds a pooled connection for up to the lock timeout;
        # sharing their pool, intake first queued for a connection, then waited out the lock
        # (a 503 in 3.1 s against a 3 s bound with the lock timeout at 1 s).
        self._batch_engine = batch_engine
        self.lock_timeout_s = lock_timeout_s
        """How long a write may wait for a lock (`database.lock_timeout_s`)."""
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time: queue writers here instead of spinning on SQLITE_BUSY.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._sync_engine = sync_engine
        self._writer: ThreadPoolExecutor | None = None
        """Started on first use, stopped by `dispose` (after which the next use starts another)."""

    @classmethod
    def from_config(cls, config: DatabaseConfig) -> Database:
        """Build the engine for a configured URL (SQLite in WAL mode, or PostgreSQL)."""
        engine = create_engine(config)
        batch = None if engine.dialect.name == "sqlite" else create_engine(config, pool_size=2)
        return cls(engine, create_sqlite_writer(config), config.lock_timeout_s, batch)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on exit, rolled back on error."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def write_sync(
        self, fn: Callable[[Connection], T], lock_wait_s: float | None = None
    ) -> T:
        """Run `fn` in one write transaction on a synchronous connection, committed on return.

        For a transaction of many statements (intake's group commit). aiosqlite runs each call
        on its thread: three or four thread hops per statement, about 25 µs each. On a SQLite
        file the whole of `fn` runs on a writer thread instead (one hop per transaction); on
        PostgreSQL it runs through `run_sync` on the async connection.

        With `lock_wait_s`, raises `TimeoutError` (nothing written) when SQLite's other writers
        in this process keep the turn that long: while the file is locked or the disk is full,
        each of them waits out its busy timeout, and a caller answering a request cannot queue
        behind them all.
        """
        if self._sync_engine is None:
            if self._batch_engine is None:
                async with self.write() as conn:
                    return await conn.run_sync(fn)
            async with self._batch_engine.begin() as conn:
                return await conn.run_sync(fn)
        assert self._write_lock is not None
        engine = self._sync_engine
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

        def transaction() -> T:
            with engine.begin() as conn:
                return fn(conn)

        try:
            async with asyncio.timeout(lock_wait_s):
                await self._write_lock.acquire()
        except TimeoutError:
            raise TimeoutError(f"no turn to write within {lock_wait_s} s") from None
        try:
            future = asyncio.get_running_loop().run_in_executor(self._writer, transaction)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                # The transaction runs on to its end on the thread: keep the lock until it has,
                # so the next writer does not meet a busy database.
                await asyncio.wait({future})
                raise
        finally:
            self._write_lock.release()

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
        if self._batch_engine is not None:
            await self._batch_engine.dispose()
        writer, self._writer = self._writer, None
        if writer is not None and self._sync_engine is not None:
            await asyncio.get_running_loop().run_in_executor(writer, self._sync_engine.dispose)
            writer.shutdown(wait=False)


def create_engine(config: DatabaseConfig, pool_size: int | None = None) -> AsyncEngine:
    """An async engine for the URL, with SQLite tuned for WAL and a busy timeout."""
    url = config.url
    kwargs: dict[str, Any] = {"pool_pre_ping": not url.startswith("sqlite")}
    if url.startswith("postgresql"):
        size = config.pool_size if pool_size is None else pool_size
        kwargs.update(pool_size=size, max_overflow=size)
        # A table locked by someone else (a migration, a manual LOCK TABLE) fails the statement
        # after the timeout instead of holding intake, and every request behind it, for ever.
        lock_ms = str(round(config.lock_timeout_s * 1000))
        kwargs["connect_args"] = {"server_settings": {"lock_timeout": lock_ms}}
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine.sync_engine, config)
    return engine


def create_sqlite_writer(config: DatabaseConfig) -> Engine | None:
    """A synchronous engine on the same SQLite file for `write_sync`; None for other databases.

    An in-memory database is private to its connection, so it gets none either.
    """
    url = make_url(config.url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    engine = create_sync_engine(url.set(drivername="sqlite+pysqlite"), pool_size=1)
    _sqlite_pragmas(engine, config)
    return engine


def _sqlite_pragmas(engine: Engine, config: DatabaseConfig) -> None:
    synchronous = config.sqlite_synchronous
    busy_ms = round(config.lock_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
