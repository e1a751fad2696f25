"""Chat replies: the view models command handlers fill, and how `cards` renders them to Markdown."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

from approvals.readmodels import FailedItem, PendingItem, StatsView, StatusView
from approvals.reconcile import SweepReport
from cards.renderer import Renderer


class Reply(NamedTuple):
    """What a chat command returns: a template under `cards/templates/` and its view model."""

    template: str
    view: object


@dataclass(frozen=True)
class CommandInfo:
    """One chat command as help and usage show it."""

    name: str
    zh: str
    args: str
    summary: str
    admin_only: bool


@dataclass(frozen=True)
class HelpView:
    """The commands this user may run; `unknown` is what they typed when it matched nothing."""

    commands: tuple[CommandInfo, ...]
    unknown: str | None = None


@dataclass(frozen=True)
class UsageView:
    """A command given a missing or unreadable argument."""

    command: CommandInfo
    problem: str


@dataclass(frozen=True)
class RefusedView:
    """The sender may not run this (None: may not use the bot at all)."""

    command: CommandInfo | None


@dataclass(frozen=True)
class NotFoundView:
    """Nothing matched the document number or id given."""

    query: str
    detail: str = ""


@dataclass(frozen=True)
class StatusReplyView:
    """`status` of one approval, as of `now`."""

    status: StatusView
    now: dt.datetime


@dataclass(frozen=True)
class ListView:
    """Waiting approvals (`pending`, or `stuck` with its threshold), oldest first."""

    items: tuple[PendingItem, ...]
    total: int
    older_than: dt.timedelta | None = None


@dataclass(frozen=True)
class FailedView:
    """Failures that need an admin, newest first."""

    items: tuple[FailedItem, ...]
    total: int


@dataclass(frozen=True)
class StatsReplyView:
    """`stats` over a number of days."""

    days: int
    stats: StatsView


@dataclass(frozen=True)
class HealthView:
    """How the bridge is doing; None where this process has no such part (e.g. no stream)."""

    now: dt.datetime
    stream_connected: bool | None
    last_sweep: SweepReport | None
    reconciling: bool
    queue_depth: int
    oldest_job_at: dt.datetime | None
    parked_write_backs: int
    other_failures: int
    calls_used: int | None
    call_budget: int | None
    quota_exhausted_since: dt.datetime | None = None
    """When DingTalk began refusing calls for its monthly quota, while it still does."""
    quota_next_probe_s: float | None = None

    @property
    def budget_used(self) -> float | None:
        """The share of the monthly call budget used."""
        if self.calls_used is None or not self.call_budget:
            return None
        return self.calls_used / self.call_budget


@dataclass(frozen=True)
class RetriedView:
    """An admin's retry was queued."""

    approval_id: str
    doc_no: str
    revision: int
    write_back: bool
    """True: the write-back is sent again; False: the approval is raised again."""


@dataclass(frozen=True)
class SyncView:
    """A reconciliation run on demand (None: this process has no approval directory)."""

    report: SweepReport | None


@dataclass(frozen=True)
class CancelledView:
    """An admin's cancel: done, or why not."""

    approval_id: str
    doc_no: str
    revision: int
    state: str
    """The state after the attempt."""
    cancelled: bool
    terminating: bool
    """Whether a DingTalk instance is being terminated."""


@dataclass(frozen=True)
class ErrorView:
    """A command failed on our side; the log has the details."""

    command: str


STATE_ZH = {
    "received": "已接收",
    "submitting": "发起中",
    "pending": "审批中",
    "approved": "已同意",
    "rejected": "已拒绝",
    "writing_back": "回写中",
    "done": "已完成",
    "superseded": "已被新版本取代",
    "cancelled": "已撤销",
    "stale": "ERP 已变更",
    "failed": "失败",
}
DOC_TYPE_ZH = {"purchase_order": "采购订单", "replenishment": "补货申请"}
WRITE_BACK_ZH = {
    "none": "无需回写",
    "waiting": "待回写",
    "done": "已回写",
    "stale": "ERP 拒收（单据已变更）",
    "failed": "回写失败",
}
FAILURE_ZH = {
    "write_back": "回写失败",
    "submit": "发起失败",
    "stale": "ERP 已变更",
    "job": "任务搁置",
}

TITLES = {
    "chat/help.md.j2": "帮助 / help",
    "chat/usage.md.j2": "用法 / usage",
    "chat/refused.md.j2": "无权限 / not allowed",
    "chat/not_found.md.j2": "未找到 / not found",
    "chat/status.md.j2": "审批状态 / status",
    "chat/pending.md.j2": "待审批 / pending",
    "chat/failed.md.j2": "失败 / failed",
    "chat/stats.md.j2": "统计 / stats",
    "chat/health.md.j2": "健康 / health",
    "chat/retried.md.j2": "重试 / retry",
    "chat/sync.md.j2": "同步 / sync",
    "chat/cancelled.md.j2": "撤销 / cancel",
    "chat/error.md.j2": "出错 / error",
}


def code(text: object, limit: int = 80) -> str:
    """User text as inline code: no backticks or line breaks can escape it, long text is cut."""
    flat = " ".join(str(text).replace("`", "'").split())
    return f"`{flat[: limit - 1]}…`" if len(flat) > limit else f"`{flat}`"


def render_reply(renderer: Renderer, reply: Reply, zone: str) -> tuple[str, str]:
    """(title, Markdown text) of a reply, times shown in `zone`."""
    text = renderer.render(
        reply.template,
        view=reply.view,
        zone=zone,
        code=code,
        state_zh=STATE_ZH,
        doc_type_zh=DOC_TYPE_ZH,
        write_back_zh=WRITE_BACK_ZH,
        failure_zh=FAILURE_ZH,
    )
    return TITLES.get(reply.template, "approval-bridge"), text
