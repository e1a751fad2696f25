"""DingTalk's throttling (QPS per app per API, a monthly org quota) and per-API call accounting."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.sandbox.options import Clock

Verdict = Literal["ok", "qps", "quota"]
Outcome = Literal["ok", "error", "throttled", "quota", "fault"]


class Limiter:
    """Sliding one-second windows per (app, API), and a call counter per calendar month."""

    def __init__(
        self,
        clock: Clock,
        qps: int | None,
        monthly_quota: int | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.qps = qps
        self.monthly_quota = monthly_quota
        self._clock = clock
        self._monotonic = monotonic
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._months: Counter[str] = Counter()

    def admit(self, app_key: str, api: str, *, counted: bool) -> Verdict:
        """Whether this call may proceed; `counted` calls also use up the monthly quota."""
        window: deque[float] | None = None
        now = self._monotonic()
        if self.qps is not None:
            window = self._windows.setdefault((app_key, api), deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= self.qps:
                return "qps"
        if counted and self.monthly_quota is not None:
            if self._months[self._month()] >= self.monthly_quota:
                return "quota"
            self._months[self._month()] += 1
        if window is not None:
            window.append(now)
        return "ok"

    def used_this_month(self) -> int:
        """Quota-counted calls in the current month."""
        return self._months[self._month()]

    def _month(self) -> str:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC).strftime("%Y-%m")


@dataclass
class ApiCalls:
    """How calls to one API went."""

    calls: int = 0
    ok: int = 0
    errors: int = 0
    throttled: int = 0
    quota: int = 0
    faults: int = 0

    def to_json(self) -> dict[str, int]:
        """The counters as the stats show them."""
        return {
            "calls": self.calls,
            "ok": self.ok,
            "errors": self.errors,
            "throttled": self.throttled,
            "quota": self.quota,
            "faults": self.faults,
        }


@dataclass
class CallStats:
    """Call accounting per API (`METHOD /path`)."""

    apis: dict[str, ApiCalls] = field(default_factory=dict)

    def record(self, api: str, outcome: Outcome) -> None:
        """Count one call and how it ended."""
        calls = self.apis.setdefault(api, ApiCalls())
        calls.calls += 1
        if outcome == "ok":
            calls.ok += 1
        elif outcome == "error":
            calls.errors += 1
        elif outcome == "throttled":
            calls.throttled += 1
        elif outcome == "quota":
            calls.quota += 1
        else:
            calls.faults += 1

    def to_json(self) -> dict[str, Any]:
        """Every API's counters, and totals."""
        total = ApiCalls()
        for calls in self.apis.values():
            for name in ("calls", "ok", "errors", "throttled", "quota", "faults"):
                setattr(total, name, getattr(total, name) + getattr(calls, name))
        return {
            "apis": {api: c.to_json() for api, c in sorted(self.apis.items())},
            "total": total.to_json(),
        }
