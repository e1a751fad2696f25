"""DingTalk's monthly call quota spent (90020 `ApiCountLimitForOrg`): hold calls, probe, tell.

Once DingTalk refuses a call for the organisation's monthly quota (spec section 8.2), every
other metered call would be refused too: the gate holds them here instead of sending them, and
lets one call through every `probe_every_s` (a real call, whichever comes first: it does useful
work when the quota is back). When a probe is answered, calls flow again at once; jobs that were
held come back at the probe time, so work resumes within about one probe interval of DingTalk
allowing calls, without a restart. DingTalk sees one refused call per interval, not a stream.

Admins hear of it through DingTalk itself, which is refusing calls: the notice is queued (an
outbox job) when the quota runs out and delivered by the first calls allowed again, with a
second one saying that calls flow again. Meanwhile the ERROR log (once), `/metrics`, `/readyz`,
the dashboard and the `health` command show it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError

from approvals.db import reminders as claims
from approvals.db.engine import Database
from approvals.notices import enqueue_notice
from approvals.ports import Clock, Notice, SystemClock
from bot.errors import QuotaExhausted

log = logging.getLogger(__name__)

QUOTA_CODE = "Forbidden.AccessDenied.ApiCountLimitForOrg"
EXHAUSTED, RESTORED = "quota_exhausted", "quota_restored"
"""The kinds of the two admin notices."""
PROBE_ANSWER_S = 2.0
"""How soon a call held while the probe is out comes back (the probe's answer is near)."""


@dataclass(frozen=True)
class QuotaState:
    """Whether DingTalk refuses calls for the quota, since when, and what it cost."""

    exhausted_since: dt.datetime | None
    refused: int
    """Calls DingTalk refused with 90020, since this process started."""
    held: int
    """Calls not sent because the quota was spent, since this process started."""
    next_probe_s: float | None
    """Seconds until a call may go through as the probe (0: the next call is the probe)."""


class QuotaListener(Protocol):
    """Told when the quota runs out and when calls are allowed again (must not block)."""

    def exhausted(self, since: dt.datetime) -> None:
        """DingTalk refused a call for the quota; calls are held from now."""
        ...

    def restored(self, since: dt.datetime, at: dt.datetime, refused: int, held: int) -> None:
        """A probe was answered: calls flow again."""
        ...


class QuotaGate:
    """A circuit breaker on DingTalk's monthly quota, used by the client for metered calls."""

    def __init__(
        self,
        probe_every_s: float,
        *,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe_every_s = probe_every_s
        self._clock = clock or SystemClock()
        self._monotonic = monotonic
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._since: dt.datetime | None = None
        self._next_probe = 0.0
        self._probing = False
        self._episode_refused = self._episode_held = 0
        self.refused = 0
        self.held = 0
        self._listeners: list[QuotaListener] = []

    def listen(self, listener: QuotaListener) -> None:
        """Tell `listener` of every change from now on."""
        self._listeners.append(listener)

    @property
    def exhausted_since(self) -> dt.datetime | None:
        """When DingTalk first refused a call for the quota, while it still does."""
        return self._since

    def state(self) -> QuotaState:
        """The gate as health, metrics and the dashboard show it."""
        wait = None
        if self._since is not None:
            wait = max(0.0, self._next_probe - self._monotonic())
        return QuotaState(self._since, self.refused, self.held, wait)

    def admit(self, api: str) -> bool:
        """Let a metered call go (True when it is the probe), or raise `QuotaExhausted`."""
        if self._since is None:
            return False
        now = self._monotonic()
        if not self._probing and now >= self._next_probe:
            self._probing = True
            return True
        self.held += 1
        self._episode_held += 1
        wait = PROBE_ANSWER_S if self._probing else self._next_probe - now
        # Jittered, so the calls held come back one after another, the first as the probe.
        wait += self._rng.uniform(0.0, 1.0)
        raise QuotaExhausted(
            f"DingTalk's monthly call quota is spent (since {self._since:%Y-%m-%d %H:%M} UTC): "
            f"{api} held until the next probe",
            wait,
            api=api,
            code=QUOTA_CODE,
        )

    def refused_call(self, probe: bool) -> float:
        """DingTalk answered 90020: open (or keep open) the gate; seconds the caller should wait."""
        self.refused += 1
        self._episode_refused += 1
        now = self._monotonic()
        if self._since is None:
            self._since = self._clock.now()
            self._probing = False
            self._next_probe = now + self.probe_every_s
            log.error(
                "DingTalk refuses calls: the organisation's monthly call quota is spent "
                "(90020 ApiCountLimitForOrg). DingTalk calls are held and probed every %.0f s; "
                "approvals resume when calls are allowed again (raise the quota in DingTalk's "
                "admin console, or wait for the month to turn). Admins are told then.",
                self.probe_every_s,
            )
            for listener in self._listeners:
                _tell(listener.exhausted, self._since)
        elif probe:
            self._probing = False
            self._next_probe = now + self.probe_every_s
            log.info(
                "DingTalk still refuses calls for the quota; next probe in %.0f s",
                (self.probe_every_s),
            )
        return max(1.0, self._next_probe - now) + self._rng.uniform(0.0, 1.0)

    def succeeded(self, probe: bool) -> None:
        """A call was answered; if it was the probe, calls flow again."""
        if not probe or self._since is None:
            return  # a call sent before the quota ran out proves nothing
        since, at = self._since, self._clock.now()
        refused, held = self._episode_refused, self._episode_held
        self._since, self._probing = None, False
        self._episode_refused = self._episode_held = 0
        log.warning(
            "DingTalk allows calls again, %s after it refused them for the quota (since %s): "
            "%d calls were refused, %d held back",
            _duration((at - since).total_seconds()),
            f"{since:%Y-%m-%d %H:%M} UTC",
            refused,
            held,
        )
        for listener in self._listeners:
            _tell(listener.restored, since, at, refused, held)

    def release(self, probe: bool) -> None:
        """The call ended otherwise (a 5xx, a timeout): the next call probes instead."""
        if probe:
            self._probing = False


def _tell(hook: Callable[..., None], *args: object) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("quota: a listener failed")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(0, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


class QuotaAlert:
    """The gate's (synchronous) changes made durable: admin notices, queued as outbox jobs.

    Each notice is claimed in the database per hour of its moment, so replicas, or a restart
    that meets the spent quota again, do not repeat it.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        probe_every_s: float,
        timezone: str = "Asia/Shanghai",
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._probe_every_s = probe_every_s
        self._zone = ZoneInfo(timezone)
        self._on_commit = on_commit
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def exhausted(self, since: dt.datetime) -> None:
        """Queue the notice that calls are held."""
        every = _duration(self._probe_every_s)
        text = (
            f"钉钉本月接口调用额度已用完（90020 ApiCountLimitForOrg），自 {self._local(since)} "
            f"起暂停调用，每 {every} 试探一次；额度恢复后审批自动继续。 / DingTalk's monthly call "
            f"quota is spent (90020 ApiCountLimitForOrg): calls are held since "
            f"{self._local(since)} and probed every {every}; approvals resume by themselves "
            f"when calls are allowed again (raise the quota, or wait for the month to turn)."
        )
        self._spawn(EXHAUSTED, since, text, {"since": since.isoformat()})

    def restored(self, since: dt.datetime, at: dt.datetime, refused: int, held: int) -> None:
        """Queue the notice that calls flow again."""
        took = _duration((at - since).total_seconds())
        text = (
            f"钉钉接口调用已恢复（{self._local(at)}，暂停了 {took}；被拒 {refused} 次，暂缓 {held} "
            f"次）。 / DingTalk allows calls again since {self._local(at)}, after {took} of "
            f"refusing them for the quota (from {self._local(since)}): {refused} calls refused, "
            f"{held} held back; the work they were for is running now."
        )
        details = {"since": since.isoformat(), "at": at.isoformat(), "refused": str(refused)}
        self._spawn(RESTORED, at, text, details)

    def _local(self, when: dt.datetime) -> str:
        return when.astimezone(self._zone).strftime("%Y-%m-%d %H:%M")

    def _spawn(self, kind: str, at: dt.datetime, text: str, details: dict[str, str]) -> None:
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(
            self._enqueue(kind, at, text, details), name=kind
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enqueue(
        self, kind: str, at: dt.datetime, text: str, details: dict[str, str]
    ) -> None:
        hour = int(at.timestamp() // 3600)
        try:
            async with self._db.write() as conn:
                if not await claims.claim(conn, ("quota", hour, kind), self._clock.now()):
                    return
                await enqueue_notice(conn, Notice(kind, text, details=details), self._clock.now())
        except (DBAPIError, OSError):
            log.exception("quota: the %s notice could not be queued", kind)
            return
        self._on_commit()

    async def __aenter__(self) -> QuotaAlert:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
