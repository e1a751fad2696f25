"""Admin notices as outbox jobs, and the handler that delivers them through the `Notifier` port."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db import jobs as job_repo
from approvals.db.jobs import JobRow
from approvals.ports import Notice, Notifier

NOTIFY = "notify"


async def enqueue_notice(conn: AsyncConnection, notice: Notice, now: dt.datetime) -> None:
    """Ask for a notice in the same transaction as the change it reports."""
    payload = dataclasses.asdict(notice)
    await job_repo.enqueue(conn, [(NOTIFY, notice.approval_id, None, payload)], now)


class NotifyHandler:
    """Delivers notices; one that cannot be delivered is parked, never lost silently."""

    def __init__(self, notifier: Notifier, deadline: dt.timedelta) -> None:
        self._notifier = notifier
        self.deadline = deadline

    async def run(self, job: JobRow) -> bool:
        """Send the notice."""
        await self._notifier.notify(Notice(**job.payload))
        return False

    async def parked(self, conn: AsyncConnection, job: JobRow, error: str) -> None:
        """Nothing more to record: the parked job itself is what `failed` lists."""
