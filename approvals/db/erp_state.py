"""What the poller of a native ERP remembers: its cursors and the documents it has reported."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db.tables import erp_cursor, erp_document

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Tracked:
    """One ERP document (or stock position) as the poller last reported it."""

    key: str
    doc_no: str
    revision: int
    fingerprint: str
    status: str
    modified: dt.datetime


def _tracked(row: Any) -> Tracked:
    return Tracked(row.key, row.doc_no, row.revision, row.fingerprint, row.status, row.modified)


def _insert(conn: AsyncConnection, table: Any) -> Any:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"upsert on {dialect}")


async def cursor(conn: AsyncConnection, source: str, feed: str) -> tuple[dt.datetime, str]:
    """Where a feed stands; the epoch and an empty key before its first poll."""
    row = (
        await conn.execute(
            select(erp_cursor.c.at, erp_cursor.c.key).where(
                erp_cursor.c.source == source, erp_cursor.c.feed == feed
            )
        )
    ).first()
    return (EPOCH, "") if row is None else (row.at, row.key)


async def set_cursor(
    conn: AsyncConnection, source: str, feed: str, at: dt.datetime, key: str, now: dt.datetime
) -> None:
    """Move a feed's cursor forward (never back: a slow replica cannot rewind it)."""
    stmt = _insert(conn, erp_cursor).values(
        source=source, feed=feed, at=at, key=key, updated_at=now
    )
    ahead = or_(
        erp_cursor.c.at < stmt.excluded.at,
        and_(erp_cursor.c.at == stmt.excluded.at, erp_cursor.c.key < stmt.excluded.key),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["source", "feed"],
        set_={"at": stmt.excluded.at, "key": stmt.excluded.key, "updated_at": now},
        where=ahead,
    )
    await conn.execute(stmt)


async def tracked(conn: AsyncConnection, source: str, keys: Iterable[str]) -> dict[str, Tracked]:
    """The documents among `keys` the poller has reported before."""
    wanted = list(dict.fromkeys(keys))
    found: dict[str, Tracked] = {}
    for start in range(0, len(wanted), 500):  # SQLite's default variable limit is 999
        chunk = wanted[start : start + 500]
        rows = await conn.execute(
            select(erp_document).where(
                erp_document.c.source == source, erp_document.c.key.in_(chunk)
            )
        )
        for row in rows:
            found[row.key] = _tracked(row)
    return found


async def tracked_prefix(conn: AsyncConnection, source: str, prefix: str) -> list[Tracked]:
    """Every tracked key starting with `prefix` (the stock positions)."""
    rows = await conn.execute(
        select(erp_document).where(
            erp_document.c.source == source, erp_document.c.key.startswith(prefix, autoescape=True)
        )
    )
    return [_tracked(r) for r in rows]


async def remember(
    conn: AsyncConnection, source: str, items: Sequence[Tracked], now: dt.datetime
) -> None:
    """Record what was reported; a lower revision never overwrites a higher one."""
    if not items:
        return
    unique = {item.key: item for item in items}
    stmt = _insert(conn, erp_document)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source", "key"],
        set_={
            "doc_no": stmt.excluded.doc_no,
            "revision": stmt.excluded.revision,
            "fingerprint": stmt.excluded.fingerprint,
            "status": stmt.excluded.status,
            "modified": stmt.excluded.modified,
            "updated_at": stmt.excluded.updated_at,
        },
        where=erp_document.c.revision <= stmt.excluded.revision,
    )
    await conn.execute(
        stmt,
        [
            {
                "source": source,
                "key": i.key,
                "doc_no": i.doc_no,
                "revision": i.revision,
                "fingerprint": i.fingerprint,
                "status": i.status,
                "modified": i.modified,
                "updated_at": now,
            }
            for i in unique.values()
        ],
    )
