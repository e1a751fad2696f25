"""Reminders, escalations and the daily digest: decided here, each claimed once, sent as a job.

A tick finds revisions that have waited too many working hours, claims each (approval, revision,
level) in the `reminder` table and enqueues a `remind` job in the same transaction. The claim's
primary key makes a second replica, a retry or a restart find the message taken, and the job
makes the message itself durable. What can wait does: nothing is claimed outside working hours
or while the month's DingTalk budget is nearly spent.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from approvals.db import jobs as job_repo
from approvals.db import reminders as reminder_repo
from approvals.db.engine import Database
from approvals.db.reminders import ClaimKey, Waiting
from approvals.ports import Clock
from approvals.workhours import WorkingHours

log = logging.getLogger(__name__)

REMIND = "remind"
"""The job kind; its payload's `level` says which message."""


class Level(StrEnum):
    """Which message a claim stands for."""

    REMIND = "remind"
    """The current approvers, once the approval has waited `remind_after_h` working hours."""
    ESCALATE = "escalate"
    """The admins (or a group), after `escalate_after_h`."""
    DIGEST = "digest"
    """The admins, once a working day: what is overdue."""


PER_APPROVAL = (Level.REMIND, Level.ESCALATE)
"""The levels claimed per revision; the digest is claimed per day."""


@dataclass(frozen=True)
class ReminderPolicy:
    """When to remind, escalate and send the digest."""

    hours: WorkingHours
    remind_after_h: float = 4.0
    escalate_after_h: float = 24.0
    digest_at: dt.time = dt.time(9, 0)
    defer_at: float = 0.95
    """Share of the month's DingTalk budget from which reminders wait."""


@dataclass(frozen=True)
class TickReport:
    """What one tick did; `skipped` says why it did nothing ("" when it ran)."""

    waiting: int = 0
    reminded: int = 0
    escalated: int = 0
    skipped: str = ""


def waited_hours(item: Waiting, now: dt.datetime, policy: ReminderPolicy) -> float:
    """Working hours a revision has waited."""
    return policy.hours.elapsed(item.pending_since, now).total_seconds() / 3600


def after_hours(policy: ReminderPolicy) -> dict[Level, float]:
    """The working hours after which each per-approval message is due."""
    return {Level.REMIND: policy.remind_after_h, Level.ESCALATE: policy.escalate_after_h}


def due_levels(waited_h: float, policy: ReminderPolicy) -> list[Level]:
    """The per-approval messages due after this many working hours."""
    return [level for level, after in after_hours(policy).items() if waited_h >= after]


def item(w: Waiting, waited_h: float) -> dict[str, Any]:
    """One approval as an escalation or digest job lists it."""
    return {
        "approval_id": w.approval_id,
        "revision": w.revision,
        "doc_no": w.doc_no,
        "doc_type": w.doc_type.value,
        "instance_id": w.instance_id,
        "waited_h": round(waited_h, 1),
    }


class ReminderService:
    """The scheduled entry points: `tick` (reminders, escalations) and `digest`."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        policy: ReminderPolicy,
        used_fraction: Callable[[], float] = lambda: 0.0,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._policy = policy
        self._used_fraction = used_fraction
        self._on_commit = on_commit

    def _deferred(self) -> bool:
        used = self._used_fraction()
        if used >= self._policy.defer_at:
            log.info("reminders: deferred, %.0f%% of the DingTalk budget is used", used * 100)
            return True
        return False

    async def tick(self, now: dt.datetime | None = None) -> TickReport:
        """Claim and enqueue the reminders and escalations that are due."""
        now = now or self._clock.now()
        if not self._policy.hours.is_working(now):
            return TickReport(skipped="outside working hours")
        if self._deferred():
            return TickReport(skipped="budget")
        # Working hours never outrun the clock: what waited less wall-clock time is not due.
        due = {
            level.value: now - dt.timedelta(hours=after)
            for level, after in after_hours(self._policy).items()
        }
        async with self._db.write() as conn:
            rows = await reminder_repo.waiting(conn, max(due.values()), due)
            taken = await reminder_repo.claims_of(conn, (w.approval_id for w in rows))
            wanted: dict[ClaimKey, dict[str, Any]] = {}
            for w in rows:
                keys = [(w.approval_id, w.revision, level.value) for level in PER_APPROVAL]
                if all(key in taken for key in keys):
                    continue  # nothing left to send for it: skip the working-hours sum
                waited = waited_hours(w, now, self._policy)
                for level in due_levels(waited, self._policy):
                    key = (w.approval_id, w.revision, level.value)
                    if key not in taken:
                        wanted[key] = item(w, waited)
            won = await reminder_repo.claim_many(conn, wanted, now)
            reminded = [wanted[k] for k in won if k[2] == Level.REMIND]
            escalated = [wanted[k] for k in won if k[2] == Level.ESCALATE]
            specs: list[job_repo.JobSpec] = [
                (REMIND, i["approval_id"], i["revision"], {"level": Level.REMIND.value, **i})
                for i in reminded
            ]
            if escalated:
                # One message for all that crossed the line in this tick: calls are metered.
                specs.append(
                    (REMIND, None, None, {"level": Level.ESCALATE.value, "items": escalated})
                )
            await job_repo.enqueue(conn, specs, now)
        if specs:
            self._on_commit()
        return TickReport(len(rows), len(reminded), len(escalated))

    async def digest(self, now: dt.datetime | None = None) -> int | None:
        """Once a working day at `digest_at` or later: what is overdue; None when not sent now."""
        now = now or self._clock.now()
        hours = self._policy.hours
        local = now.astimezone(hours.zone)
        # On days off, working-hour clocks stand still: nothing became more overdue.
        if not hours.is_working_day(now) or local.time() < self._policy.digest_at:
            return None
        if self._deferred():
            return None
        day = local.date().isoformat()
        async with self._db.write() as conn:
            if not await reminder_repo.claim(conn, (f"digest:{day}", 0, Level.DIGEST.value), now):
                return None
            cutoff = now - dt.timedelta(hours=self._policy.remind_after_h)
            rows = await reminder_repo.waiting(conn, cutoff)
            overdue = [(w, waited_hours(w, now, self._policy)) for w in rows]
            items = [item(w, h) for w, h in overdue if h >= self._policy.remind_after_h]
            items.sort(key=lambda i: -float(i["waited_h"]))
            if items:
                payload = {"level": Level.DIGEST.value, "day": day, "items": items}
                await job_repo.enqueue(conn, [(REMIND, None, None, payload)], now)
        if items:
            self._on_commit()
        return len(items)
