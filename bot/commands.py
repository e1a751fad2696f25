"""Admin chat commands (CONTRACT section 7): the command table, who may run what, the handlers."""

from __future__ import annotations

import datetime as dt
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from approvals import queries
from approvals.db import jobs as job_repo
from approvals.db import repo
from approvals.db.engine import Database
from approvals.decisions import DecisionService
from approvals.errors import NotFound
from approvals.ports import Clock, SystemClock
from approvals.readmodels import FailureKind
from approvals.reconcile import Reconciler
from approvals.rules import TERMINATE_INSTANCE
from approvals.states import OPEN_STATES, State, Trigger
from bot.meter import CallMeter
from bot.quota import QuotaGate, QuotaState
from bot.settings import Settings
from bot.stream import StreamIntake
from cards import chat as views
from cards.chat import CommandInfo, Reply

log = logging.getLogger(__name__)

Handler = Callable[["CommandRouter", list[str], str], Awaitable[Reply]]
"""(router, arguments, sender's staff id) -> the reply."""

LIST_SHOWN = 20
"""Longer lists are cut in chat (the dashboard shows them whole)."""
MAX_DAYS = 366


@dataclass(frozen=True)
class Command:
    """One row of the command table."""

    info: CommandInfo
    run: Handler


class CommandRouter:
    """Parses a chat message, checks who may run it, and runs it; every answer is a `Reply`."""

    def __init__(
        self,
        db: Database,
        decisions: DecisionService,
        settings: Settings,
        *,
        reconciler: Reconciler | None = None,
        stream: StreamIntake | None = None,
        meter: CallMeter | None = None,
        quota: QuotaGate | None = None,
        clock: Clock | None = None,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._decisions = decisions
        self._settings = settings
        self._reconciler = reconciler
        self._stream = stream
        self._meter = meter
        self._quota = quota
        self._clock = clock or SystemClock()
        self._wake = wake
        """Called after a commit that queued jobs, so workers run them at once."""

    def is_admin(self, sender: str) -> bool:
        """Whether a DingTalk user id is in `dingtalk.admins`."""
        return bool(sender) and sender in self._settings.dingtalk.admins

    def may_run(self, sender: str, info: CommandInfo) -> bool:
        """Admins run everything; others read-only commands, if `allow_readonly_for_all`."""
        if self.is_admin(sender):
            return True
        return not info.admin_only and self._settings.dingtalk.allow_readonly_for_all

    async def route(self, sender: str, text: str) -> Reply:
        """The reply to one message; unknown input gets the help text."""
        word, args = parse(text)
        command = COMMANDS.get(word)
        if command is None:
            if not (self.is_admin(sender) or self._settings.dingtalk.allow_readonly_for_all):
                return Reply("chat/refused.md.j2", views.RefusedView(None))
            return self._help(sender, text.strip() or None)
        if not self.may_run(sender, command.info):
            return Reply("chat/refused.md.j2", views.RefusedView(command.info))
        try:
            return await command.run(self, args, sender)
        except NotFound as exc:
            return Reply("chat/not_found.md.j2", views.NotFoundView(" ".join(args), str(exc)))
        except Exception:
            # One funnel: logged with context, answered briefly, never swallowed silently.
            log.exception("chat: %s from %s failed", command.info.name, sender)
            return Reply("chat/error.md.j2", views.ErrorView(command.info.name))

    def _help(self, sender: str, unknown: str | None = None) -> Reply:
        shown = tuple(c.info for c in TABLE if self.may_run(sender, c.info))
        return Reply("chat/help.md.j2", views.HelpView(shown, unknown))

    async def help(self, args: list[str], sender: str) -> Reply:
        """The commands this sender may run."""
        return self._help(sender)

    async def status(self, args: list[str], sender: str) -> Reply:
        """One document's approval."""
        if not args:
            return _usage("status", "请给出单据编号。/ Which document?")
        async with self._db.read() as conn:
            found = await queries.status(conn, args[0])
        if found is None:
            return Reply("chat/not_found.md.j2", views.NotFoundView(args[0]))
        return Reply("chat/status.md.j2", views.StatusReplyView(found, self._clock.now()))

    async def pending(self, args: list[str], sender: str) -> Reply:
        """Open approvals, oldest first."""
        async with self._db.read() as conn:
            items = await queries.pending(conn, self._clock.now())
        return Reply("chat/pending.md.j2", views.ListView(tuple(items[:LIST_SHOWN]), len(items)))

    async def stuck(self, args: list[str], sender: str) -> Reply:
        """Open approvals older than a threshold (default: `reminders.remind_after_h`)."""
        older = (
            _span(args[0]) if args else dt.timedelta(hours=self._settings.reminders.remind_after_h)
        )
        if older is None:
            return _usage("stuck", f"看不懂时长 {views.code(args[0])} / unreadable duration.")
        async with self._db.read() as conn:
            items = await queries.stuck(conn, self._clock.now(), older)
        view = views.ListView(tuple(items[:LIST_SHOWN]), len(items), older)
        return Reply("chat/pending.md.j2", view)

    async def stats(self, args: list[str], sender: str) -> Reply:
        """Outcomes and decision times over the last N days (default 7)."""
        days = _days(args[0]) if args else 7
        if days is None:
            return _usage("stats", f"看不懂天数 {views.code(args[0])} / unreadable period.")
        async with self._db.read() as conn:
            result = await queries.stats(conn, self._clock.now(), days)
        return Reply("chat/stats.md.j2", views.StatsReplyView(days, result))

    async def failed(self, args: list[str], sender: str) -> Reply:
        """Parked write-backs and other failures."""
        async with self._db.read() as conn:
            items = await queries.failed(conn)
        return Reply("chat/failed.md.j2", views.FailedView(tuple(items[:LIST_SHOWN]), len(items)))

    async def health(self, args: list[str], sender: str) -> Reply:
        """Stream, reconciliation, job queue, parked work and the call budget."""
        async with self._db.read() as conn:
            depth, oldest = await job_repo.depth(conn)
            failures = await queries.failed(conn)
        parked = sum(f.kind is FailureKind.WRITE_BACK for f in failures)
        meter, reconciler, stream = self._meter, self._reconciler, self._stream
        quota = self._quota.state() if self._quota is not None else QuotaState(None, 0, 0, None)
        view = views.HealthView(
            now=self._clock.now(),
            stream_connected=None if stream is None else stream.connected,
            last_sweep=None if reconciler is None else reconciler.last,
            reconciling=reconciler is not None,
            queue_depth=depth,
            oldest_job_at=oldest,
            parked_write_backs=parked,
            other_failures=len(failures) - parked,
            calls_used=None if meter is None else meter.month_used(),
            call_budget=None if meter is None else meter.budget,
            quota_exhausted_since=quota.exhausted_since,
            quota_next_probe_s=quota.next_probe_s,
        )
        return Reply("chat/health.md.j2", view)

    async def retry(self, args: list[str], sender: str) -> Reply:
        """Re-run a parked write-back (or a submission that failed)."""
        if not args:
            return _usage("retry", "请给出单据编号或审批号。/ Which document or approval?")
        row = await self._decisions.retry(args[0], actor=f"chat:{sender}")
        view = views.RetriedView(
            row.approval_id, row.doc_no, row.revision, row.decision is not None
        )
        return Reply("chat/retried.md.j2", view)

    async def sync(self, args: list[str], sender: str) -> Reply:
        """Reconcile open approvals with DingTalk now."""
        report = None if self._reconciler is None else await self._reconciler.sweep()
        return Reply("chat/sync.md.j2", views.SyncView(report))

    async def cancel(self, args: list[str], sender: str) -> Reply:
        """Cancel an open approval and terminate its DingTalk instance; nothing is written back."""
        if not args:
            return _usage("cancel", "请给出单据编号或审批号。/ Which document or approval?")
        view = await cancel_approval(self._db, self._clock, args[0], f"chat:{sender}")
        if view.terminating:
            self._wake()
        return Reply("chat/cancelled.md.j2", view)


async def cancel_approval(
    db: Database, clock: Clock, approval_id_or_doc_no: str, actor: str
) -> views.CancelledView:
    """Move the open revision to cancelled and ask for its instance's termination, in one commit."""
    now = clock.now()
    async with db.write() as conn:
        rows = await repo.revisions_of(conn, approval_id_or_doc_no)
        if not rows:
            raise NotFound(f"no approval for {approval_id_or_doc_no}")
        current = rows[0]  # newest first: revisions only grow, so this is the current one
        cancelled = current.state in OPEN_STATES and await repo.move(
            conn,
            current.approval_id,
            current.revision,
            current.state,
            Trigger.CANCEL,
            now,
            actor,
            {"reason": "cancelled by an admin in chat"},
        )
        # A revision still `submitting` may have an instance we have not recorded yet: its create
        # job finds the revision cancelled when it finishes and terminates what it raised.
        terminating = cancelled and current.state in (State.PENDING, State.SUBMITTING)
        if cancelled and current.state is State.PENDING:
            payload = {"reason": "cancelled by an admin"}
            spec = (TERMINATE_INSTANCE, current.approval_id, current.revision, payload)
            await job_repo.enqueue(conn, [spec], now)
        after = await repo.get_revision(conn, current.approval_id, current.revision)
    state = current.state if after is None else after.state
    return views.CancelledView(
        current.approval_id, current.doc_no, current.revision, state, cancelled, terminating
    )


def parse(text: str) -> tuple[str, list[str]]:
    """(command word, arguments): full-width forms folded, the word lower-cased, a `/` dropped."""
    # NFKC folds full-width letters, digits and the ideographic space (U+3000) to ASCII.
    words = unicodedata.normalize("NFKC", text).split()
    if not words:
        return "", []
    first, args = words[0].lstrip("/"), words[1:]
    if first.lower() not in COMMANDS:
        # Chinese is often typed without a space: `状态PO-1`.
        glued = next((name for name in GLUED if first.startswith(name)), None)
        if glued is not None:
            return glued, [first[len(glued) :], *args]
    return first.lower(), args


def _usage(name: str, problem: str) -> Reply:
    return Reply("chat/usage.md.j2", views.UsageView(COMMANDS[name].info, problem))


_NUMBER = r"(\d+(?:\.\d+)?)"
_UNITS = {"m": 60, "min": 60, "分钟": 60, "h": 3600, "小时": 3600, "d": 86400, "天": 86400}


def _span(text: str) -> dt.timedelta | None:
    """`4h`, `30m`, `2d`, `4` (hours), `4小时`; None when unreadable or over a year."""
    match = re.fullmatch(_NUMBER + r"\s*(m|min|分钟|h|小时|d|天)?", text.lower())
    seconds = float(match[1]) * _UNITS[match[2] or "h"] if match else -1.0
    return dt.timedelta(seconds=seconds) if 0 <= seconds <= MAX_DAYS * 86400 else None


def _days(text: str) -> int | None:
    """`7d`, `30`, `7天`; None when unreadable or out of range."""
    match = re.fullmatch(r"(\d+)\s*(d|天|日)?", text.lower())
    return int(match[1]) if match and 1 <= int(match[1]) <= MAX_DAYS else None


def _command(
    name: str, zh: str, args: str, summary: str, run: Handler, admin_only: bool = False
) -> Command:
    return Command(CommandInfo(name, zh, args, summary, admin_only), run)


R = CommandRouter
TABLE: tuple[Command, ...] = (
    _command("help", "帮助", "", "命令列表 / this list", R.help),
    _command("status", "状态", "<单据编号 doc_no>", "单据的审批状态 / one approval", R.status),
    _command("pending", "待审批", "", "未决审批，最早的在前 / open approvals", R.pending),
    _command("stuck", "超时", "[4h]", "等待过久的审批 / waiting too long", R.stuck),
    _command("stats", "统计", "[7d]", "结果与决策用时 / outcomes and times", R.stats),
    _command("failed", "失败", "", "搁置的回写与其他失败 / parked work", R.failed),
    _command("health", "健康", "", "连接、对账、队列、调用额度 / health", R.health),
    _command("retry", "重试", "<单据编号或审批号>", "重新回写或发起 / re-run", R.retry, True),
    _command("sync", "同步", "", "立即与钉钉对账 / reconcile now", R.sync, True),
    _command("cancel", "撤销", "<单据编号>", "撤销未决审批 / cancel an approval", R.cancel, True),
)
COMMANDS: dict[str, Command] = {
    **{c.info.name: c for c in TABLE},
    **{c.info.zh: c for c in TABLE},
    "?": TABLE[0],
}
GLUED = sorted((c.info.zh for c in TABLE), key=len, reverse=True)
"""Chinese names, longest first, for input typed without a space."""
