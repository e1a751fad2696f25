"""The dashboard's view models, and its decisions-per-day chart as inline SVG (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from approvals.db.meter import CallCounts
from approvals.readmodels import DayCount, FailedItem, PendingItem, StatsView

PENDING_SHOWN = 200
"""Open approvals listed on the page; the rest are counted."""
APPROVED_COLOUR, REJECTED_COLOUR = "#34a853", "#ea4335"


@dataclass(frozen=True)
class StreamStatus:
    """How DingTalk events reach the bridge."""

    mode: str
    """`stream`, `http` (encrypted callbacks) or `none` (no DingTalk connection configured)."""
    connected: bool = False
    connections: int = 0
    last_frame_s: float | None = None
    """Seconds since the stream's last frame."""


@dataclass(frozen=True)
class SweepStatus:
    """The last reconciliation sweep (None fields: none has run yet)."""

    enabled: bool
    at: dt.datetime | None = None
    pending: int = 0
    listed: int = 0
    fetched: int = 0
    applied: int = 0


@dataclass(frozen=True)
class BudgetView:
    """DingTalk calls this month against the budget, per API."""

    used: int
    budget: int
    apis: Mapping[str, CallCounts]
    quota_exhausted_since: dt.datetime | None = None
    """When DingTalk began refusing calls for its monthly quota, while it still does."""
    quota_next_probe_s: float | None = None

    @property
    def fraction(self) -> float:
        """The share of the budget used (may exceed 1)."""
        return self.used / self.budget if self.budget else 0.0

    @property
    def level(self) -> str:
        """`ok`, `warn` (80% used) or `over` (all used): the page's colour for it."""
        return "over" if self.fraction >= 1 else "warn" if self.fraction >= 0.8 else "ok"


@dataclass(frozen=True)
class QueueStatus:
    """The outbox: jobs waiting or running, and the oldest one's age."""

    depth: int
    oldest_s: float | None


@dataclass(frozen=True)
class DashboardView:
    """Everything the dashboard page shows."""

    now: dt.datetime
    zone: str
    pending: Sequence[PendingItem]
    windows: Sequence[tuple[int, StatsView]]
    """(days, outcomes over those days), shortest window first."""
    failed: Sequence[FailedItem]
    stream: StreamStatus
    sweep: SweepStatus
    budget: BudgetView | None
    queue: QueueStatus
    days: Sequence[DayCount]

    @property
    def shown(self) -> Sequence[PendingItem]:
        """The open approvals listed (the oldest ones)."""
        return self.pending[:PENDING_SHOWN]

    @property
    def chart(self) -> Markup:
        """Decisions per day as an inline SVG bar chart."""
        return bar_chart(self.days)


def bar_chart(days: Sequence[DayCount], width: int = 720, height: int = 180) -> Markup:
    """Stacked bars (approved below, rejected above) per day, with a tooltip per bar."""
    left, bottom, top = 32, 22, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((d.approved + d.rejected for d in days), default=0)
    scale = _nice(peak)
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.7, 1.0)
    total = sum(d.approved + d.rejected for d in days)
    label = f"Decisions per day: {total} in {len(days)} days"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]
    for value in (0, scale // 2, scale):
        y = top + plot_h - plot_h * value / scale
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    every = max(1, len(days) // 8)
    for i, day in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        tip = f"{day.day.isoformat()}: {day.approved} approved, {day.rejected} rejected"
        parts.append(f"<g><title>{escape(tip)}</title>")
        base: float = top + plot_h
        for count, colour in ((day.approved, APPROVED_COLOUR), (day.rejected, REJECTED_COLOUR)):
            if count:
                h = plot_h * count / scale
                base -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                    f'fill="{colour}"/>'
                )
        parts.append("</g>")
        if i % every == 0 or i == len(days) - 1:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                f"{day.day:%m-%d}</text>"
            )
    parts.append("</svg>")
    # Every interpolated text is escaped above; the rest is our own markup.
    return Markup("".join(parts))  # noqa: S704


def _nice(peak: int) -> int:
    """A round axis maximum at or above `peak` (at least 2, so the midline is a whole number)."""
    for step in (2, 4, 6, 10, 20, 40, 50, 100):
        if peak <= step:
            return step
    magnitude = 10 ** (len(str(peak)) - 1)
    return int(-(-peak // magnitude) * magnitude)
