"""Notices as DingTalk robot messages: admins' alerts, buyers' outcomes; deduplicated, rate-limited.

Each notice arrives as one `notify` outbox job. Per topic (a kind of alert, or one buyer's
outcomes) the first notice goes out at once; the rest of the window is held: their jobs are
rescheduled (`Throttled`) to the window's end, when the first to come back carries one summary
of them all and the others find themselves delivered. Identical notices within the window
collapse. A notice is finished only once a message carrying it went out, so a crash loses none.
The window is in memory: each replica keeps its own, so with N replicas a burst yields at most
N first messages and N summaries per topic and window.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from sqlalchemy.exc import DBAPIError

from approvals.db.engine import Database
from approvals.errors import Throttled
from approvals.outcomes import OUTCOME, enqueue_budget_warning
from approvals.ports import Clock, Notice, SystemClock
from bot.meter import CallMeter
from bot.openapi import DingTalkClient
from cards.renderer import Renderer

log = logging.getLogger(__name__)

TITLES = {
    "submit_failed": "审批未能发起 / approval not raised",
    "write_back_failed": "回写ERP失败 / write-back failed",
    "stale": "单据已在ERP中变更 / document changed in the ERP",
    "withdrawn": "审批已撤回 / approval withdrawn",
    "terminate_failed": "审批实例未能终止 / instance not terminated",
    "unmapped_user": "用户未映射 / ERP user without a DingTalk id",
    "dingtalk_auth": "钉钉鉴权失败 / DingTalk refused the app",
    "budget": "钉钉调用额度 / DingTalk call budget",
    "quota_exhausted": "钉钉调用额度已用完 / DingTalk quota spent",
    "quota_restored": "钉钉调用已恢复 / DingTalk calls allowed again",
    OUTCOME: "审批结果 / approval outcome",
}
# Alerts whose cause shows only in the parked job's error text (the `Notice` has no error type).
_CAUSES = (("DingTalkAuthError", "dingtalk_auth"), ("has no DingTalk user id", "unmapped_user"))
RECHECK_S = 2.0
"""How soon a notice whose summary is on its way looks again."""

Key = tuple[str, str | None, str | None, str]


def _key(notice: Notice) -> Key:
    return notice.kind, notice.approval_id, notice.doc_no, notice.text


@dataclass
class _Topic:
    last_sent: dt.datetime | None = None
    held: dict[Key, Notice] = field(default_factory=dict)
    held_until: dt.datetime | None = None
    inflight: dict[Key, Notice] = field(default_factory=dict)


class NoticeGate:
    """Decides per notice: deliver (alone or with those held), hold until a time, or drop."""

    def __init__(self, window: dt.timedelta) -> None:
        self.window = window
        self._topics: dict[str, _Topic] = {}
        self._done: dict[Key, dt.datetime] = {}
        # Held notices a sent summary carried, whose jobs have yet to come back and finish.
        self._summarized: dict[Key, dt.datetime] = {}

    def admit(
        self, topic: str, notice: Notice, now: dt.datetime
    ) -> tuple[Notice, ...] | dt.datetime | None:
        """Notices to send now, or when to ask again, or None when it was already delivered."""
        self._prune(now)
        key, t = _key(notice), self._topics.setdefault(topic, _Topic())
        if self._summarized.pop(key, None) is not None or key in self._done:
            return None
        if key in t.inflight:
            recheck = min(RECHECK_S, self.window.total_seconds() / 2)
            return now + dt.timedelta(seconds=recheck)
        recent = t.last_sent is not None and now - t.last_sent < self.window
        if not (t.held or recent or t.inflight):
            t.inflight[key], t.last_sent = notice, now
            return (notice,)
        t.held.setdefault(key, notice)
        if t.held_until is None:
            t.held_until = (t.last_sent or now) + self.window
        if now < t.held_until:
            return t.held_until
        batch, t.held, t.held_until, t.last_sent = t.held, {}, None, now
        t.inflight.update(batch)
        return tuple(batch.values())

    def delivered(
        self, topic: str, batch: Sequence[Notice], carrier: Notice, now: dt.datetime
    ) -> None:
        """The message carrying these notices (on behalf of `carrier`'s job) went out."""
        t = self._topics.setdefault(topic, _Topic())
        for notice in batch:
            key = _key(notice)
            t.inflight.pop(key, None)
            self._done[key] = now
            if key != _key(carrier):
                self._summarized[key] = now

    def failed(self, topic: str, batch: Sequence[Notice], now: dt.datetime) -> None:
        """Sending failed: hold the notices again, due at once for whichever job comes back."""
        t = self._topics.setdefault(topic, _Topic())
        for notice in batch:
            t.inflight.pop(_key(notice), None)
            t.held.setdefault(_key(notice), notice)
        t.held_until = now

    def _prune(self, now: dt.datetime) -> None:
        self._done = {k: at for k, at in self._done.items() if now - at < self.window}
        # Held jobs come back right after their summary; forget any that never do (taken by
        # another replica) after a while, so memory stays bounded.
        keep = max(10 * self.window, dt.timedelta(minutes=10))
        self._summarized = {k: at for k, at in self._summarized.items() if now - at < keep}
        for name, t in list(self._topics.items()):
            idle = t.last_sent is None or now - t.last_sent >= self.window
            if idle and not t.held and not t.inflight:
                del self._topics[name]


class DingTalkNotifier:
    """Sends notices as robot one-to-one Markdown: alerts to admins, outcomes to the buyer."""

    def __init__(
        self,
        client: DingTalkClient,
        admins: Sequence[str],
        renderer: Renderer,
        *,
        users: Mapping[str, str] | None = None,
        window: dt.timedelta = dt.timedelta(minutes=5),
        clock: Clock | None = None,
        used_fraction: Callable[[], float] = lambda: 0.0,
        skip_outcomes_at: float = 0.95,
    ) -> None:
        self._client = client
        self._admins = list(admins)
        self._renderer = renderer
        self._users = dict(users or {})
        self._clock = clock or SystemClock()
        self._used_fraction = used_fraction
        self._skip_outcomes_at = skip_outcomes_at
        self.gate = NoticeGate(window)

    async def notify(self, notice: Notice) -> None:
        """Deliver a notice, fold it into a summary, or hold it (raises `Throttled`) for one."""
        if notice.kind == OUTCOME and self._used_fraction() >= self._skip_outcomes_at:
            # A courtesy that costs a metered call: the month's last calls go to approvals.
            log.info("outcome of %s not sent: the DingTalk budget is nearly spent", notice.doc_no)
            return
        notice, recipients, topic = self._route(notice)
        if not recipients:
            log.warning("notice not sent, no dingtalk.admins configured: %s", notice.text)
            return
        now = self._clock.now()
        verdict = self.gate.admit(topic, notice, now)
        if verdict is None:
            return
        if isinstance(verdict, dt.datetime):
            wait = max((verdict - now).total_seconds(), 0.1)
            raise Throttled(f"held for the {topic} summary", retry_after=wait)
        try:
            await self._send(recipients, topic, verdict)
        except BaseException:
            self.gate.failed(topic, verdict, self._clock.now())
            raise
        self.gate.delivered(topic, verdict, notice, self._clock.now())

    def _route(self, notice: Notice) -> tuple[Notice, list[str], str]:
        """(the notice, who gets it, its topic); an unmapped buyer's outcome goes to admins."""
        if notice.kind == OUTCOME:
            erp_user = notice.details.get("erp_user", "")
            user = self._users.get(erp_user)
            if user:
                return notice, [user], f"{OUTCOME}:{user}"
            text = f"ERP用户 {erp_user} 未映射钉钉账号，无法告知：{notice.text}"
            notice = Notice("unmapped_user", text, notice.approval_id, notice.doc_no)
        topic = next((t for needle, t in _CAUSES if needle in notice.text), notice.kind)
        return notice, self._admins, topic

    async def _send(self, recipients: list[str], topic: str, batch: Sequence[Notice]) -> None:
        kind = topic.split(":", 1)[0]
        title = TITLES.get(kind, kind)
        if len(batch) > 1:
            title = f"{title} ×{len(batch)}"
        template = "chat/outcome.md.j2" if kind == OUTCOME else "chat/notice.md.j2"
        minutes = round(self.gate.window.total_seconds() / 60)
        text = self._renderer.render(template, title=title, notices=batch, window_min=minutes)
        result = await self._client.send_robot_oto(
            recipients, "sampleMarkdown", {"title": title, "text": text}
        )
        if result.invalid:
            log.warning("users not reachable by the robot: %s", ", ".join(result.invalid))


class BudgetAlert:
    """The meter's (synchronous) budget hook made durable: a notice claimed once a month."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
        threshold: float = 0.8,
    ) -> None:
        self._db = db
        self._clock = clock
        self._on_commit = on_commit
        self.threshold = threshold
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def watch(self, meter: CallMeter) -> None:
        """Ask the meter to call us when the month's usage reaches the threshold."""
        meter.on_budget(self.threshold, self.hook)

    def hook(self, used: float) -> None:
        """Called by the meter; the warning is written by a tracked task."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._warn(used), name="budget-warning")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _warn(self, used: float) -> None:
        try:
            async with self._db.write() as conn:
                sent = await enqueue_budget_warning(conn, used, self.threshold, self._clock.now())
        except (DBAPIError, OSError):
            log.exception("budget warning not recorded; the next start tries again")
            return
        if sent:
            self._on_commit()

    async def __aenter__(self) -> BudgetAlert:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
