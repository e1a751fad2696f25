"""Reminder jobs delivered as robot messages, and how the reminder ticks are scheduled.

A reminder goes to the approvers of the instance's running tasks, read from DingTalk when it is
sent (one metered call; the task events we keep name only those who already acted). The link
is DingTalk's aflow page for the instance, or the sandbox's page when `api_base` is not DingTalk.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.config import PriceConfig
from approvals.db import jobs as job_repo
from approvals.db import reminders as reminder_repo
from approvals.db import repo
from approvals.db.engine import Database
from approvals.db.jobs import JobRow
from approvals.db.reminders import ClaimKey
from approvals.models import DocType
from approvals.ports import Clock
from approvals.reminders import Level, ReminderPolicy, ReminderService
from approvals.states import State
from approvals.submit import instance_request
from approvals.workhours import WorkingHours, parse_hhmm
from bot.errors import DingTalkBadRequest
from bot.openapi import DingTalkClient
from bot.scheduler import Scheduler
from bot.settings import Settings
from cards.renderer import Renderer
from cards.views import order_view, replenishment_view

log = logging.getLogger(__name__)

DINGTALK_API = "https://api.dingtalk.com"
AFLOW_PAGE = "https://aflow.dingtalk.com/dingtalk/pc/query/pchomepage.htm?procInstId="
TICK_MINUTES = 5.0
"""How often reminders are looked for: a reminder is due within this many minutes."""
_WAITING = frozenset({"RUNNING", "NEW"})
"""Task statuses of approvers who still have to act (spec section 3.2)."""


def instance_link(api_base: str, instance_id: str) -> str:
    """Where people open an instance: DingTalk's aflow page, or the sandbox's page."""
    base = api_base.rstrip("/")
    if base == DINGTALK_API:
        return AFLOW_PAGE + quote(instance_id, safe="")
    return f"{base}/sandbox/#{instance_id}"


def reminder_policy(settings: Settings) -> ReminderPolicy:
    """The policy from `[reminders]` and `timezone`."""
    config = settings.reminders
    hours = WorkingHours.of(
        config.working_days, config.work_start, config.work_end, settings.timezone
    )
    return ReminderPolicy(
        hours, config.remind_after_h, config.escalate_after_h, parse_hhmm(config.digest_at)
    )


def schedule_reminders(
    scheduler: Scheduler, service: ReminderService, every_min: float = TICK_MINUTES
) -> None:
    """Run the reminder tick and the digest check every few minutes, once per tick."""
    scheduler.every("reminders", every_min, service.tick)
    scheduler.every("digest", every_min, service.digest)


def current_approvers(detail: Mapping[str, Any]) -> list[str]:
    """User ids of the running tasks of an instance, in order, once each."""
    users = [
        str(t.get("userId"))
        for t in detail.get("tasks") or []
        if t.get("status") in _WAITING and t.get("userId")
    ]
    return list(dict.fromkeys(users))


class ReminderSender:
    """Runs `remind` jobs: an approver's reminder, an escalation, or the daily digest."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        client: DingTalkClient,
        renderer: Renderer,
        policy: ReminderPolicy,
        *,
        admins: Sequence[str],
        conversation: str | None,
        prices: PriceConfig,
        api_base: str,
        used_fraction: Callable[[], float],
        deadline: dt.timedelta,
    ) -> None:
        self._db = db
        self._clock = clock
        self._client = client
        self._renderer = renderer
        self._policy = policy
        self._admins = list(admins)
        self._conversation = conversation
        self._prices = prices
        self._api_base = api_base
        self._used_fraction = used_fraction
        self.deadline = deadline

    async def run(self, job: JobRow) -> bool:
        """Send the job's message; True when deferral already removed the job."""
        level = job.payload.get("level")
        items: list[dict[str, Any]] = list(job.payload.get("items") or [])
        for i in items:
            i["link"] = instance_link(self._api_base, i["instance_id"])
        if self._used_fraction() >= self._policy.defer_at:
            # Calls queued before the budget ran low still wait: hand the claims back.
            return await self._defer(job, items)
        if level == Level.REMIND:
            await self._remind(job)
        elif level == Level.ESCALATE:
            async with self._db.read() as conn:
                items = [i for i in items if await _pending(conn, i)]
            if items:
                after_h = self._policy.escalate_after_h
                text = self._renderer.render("chat/escalation.md.j2", items=items, after_h=after_h)
                await self._to_admins(f"审批超时 / approvals overdue: {len(items)}", text)
        elif level == Level.DIGEST:
            day = job.payload.get("day", "")
            after_h = self._policy.escalate_after_h
            text = self._renderer.render(
                "chat/digest.md.j2", day=day, items=items, escalate_after_h=after_h
            )
            await self._to_admins(f"每日逾期审批 / overdue approvals {day}", text)
        return False

    async def _defer(self, job: JobRow, items: list[dict[str, Any]]) -> bool:
        level = str(job.payload.get("level"))
        keys: list[ClaimKey] = [(i["approval_id"], i["revision"], level) for i in items]
        if level == Level.REMIND and job.approval_id and job.revision is not None:
            keys = [(job.approval_id, job.revision, level)]
        elif level == Level.DIGEST:
            keys = [(f"digest:{job.payload.get('day')}", 0, level)]
        async with self._db.write() as conn:
            for key in keys:
                await reminder_repo.release(conn, key)
            await job_repo.finish(conn, job.id)
        log.info("reminders: %s deferred, the DingTalk budget is nearly spent", level)
        return True

    async def _remind(self, job: JobRow) -> None:
        assert job.approval_id is not None and job.revision is not None
        async with self._db.read() as conn:
            row = await repo.get_revision(conn, job.approval_id, job.revision)
        if row is None or row.state is not State.PENDING or row.instance_id is None:
            return  # decided meanwhile: nobody to nag
        try:
            detail: Mapping[str, Any] = await self._client.get_instance(row.instance_id)
        except DingTalkBadRequest as exc:
            log.warning("reminders: cannot read instance %s: %s", row.instance_id, exc)
            detail = {}
        if detail.get("status", "RUNNING") != "RUNNING":
            return  # finished in DingTalk: its event (or reconciliation) brings the decision
        approvers = current_approvers(detail)
        to = approvers or self._admins
        if not to:
            log.warning("reminders: no approvers and no admins for %s", row.doc_no)
            return
        request = await instance_request(self._db, row, self._prices, self._clock.now())
        purchase = row.doc_type is DocType.PURCHASE_ORDER
        text = self._renderer.render(
            "chat/reminder.md.j2",
            doc_no=row.doc_no,
            waited_h=job.payload.get("waited_h"),
            link=instance_link(self._api_base, row.instance_id),
            order=order_view(request) if purchase else None,
            replenishment=None if purchase else replenishment_view(request),
            to_admins=not approvers,
        )
        title = f"待审批提醒 / waiting for your approval: {row.doc_no}"
        await self._client.send_robot_oto(to, "sampleMarkdown", {"title": title, "text": text})

    async def _to_admins(self, title: str, text: str) -> None:
        """One message: to the escalation group if there is one, else to every admin."""
        param = {"title": title, "text": text}
        if self._conversation:
            await self._client.send_group(self._conversation, "sampleMarkdown", param)
        elif self._admins:
            await self._client.send_robot_oto(self._admins, "sampleMarkdown", param)
        else:
            log.warning("reminders: no dingtalk.admins and no escalation_conversation: %s", title)

    async def parked(self, conn: AsyncConnection, job: JobRow, error: str) -> None:
        """Nothing to undo: the claim stays, so a parked reminder is not sent again later."""


async def _pending(conn: AsyncConnection, i: Mapping[str, Any]) -> bool:
    return await reminder_repo.is_pending(conn, str(i["approval_id"]), int(i["revision"]))
