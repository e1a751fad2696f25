"""The read-only dashboard under `/`: behind a bearer token or basic auth, closed without either."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from aiohttp import web

from approvals import queries
from approvals.db import jobs as job_repo
from approvals.ports import Clock, SystemClock
from bot.keys import CLIENT, DATABASE, METER, RECONCILER, STREAM
from bot.settings import DashboardConfig, Settings
from cards.renderer import Renderer
from cards.web import BudgetView, DashboardView, QueueStatus, StreamStatus, SweepStatus

REALM = "approval-bridge"
WINDOWS = (7, 30)
"""Days over which outcomes and decision times are shown."""
CHART_DAYS = 30
REFRESH_S = 30
TEMPLATE = "web/dashboard.html.j2"
HEADERS = {
    # Everything is inline: no script, no request for anything but the page itself.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CLOSED = (
    "The dashboard is closed: set APPROVAL_BRIDGE__DASHBOARD__TOKEN (bearer token), or "
    "dashboard.username with APPROVAL_BRIDGE__DASHBOARD__PASSWORD (basic auth).\n"
)


def _same(given: str, expected: str) -> bool:
    """Constant-time equality that does not even reveal the length (both sides are hashed)."""
    digest = hashlib.sha256
    return hmac.compare_digest(digest(given.encode()).digest(), digest(expected.encode()).digest())


class Gate:
    """Who may read the dashboard: `[dashboard]` token and/or username and password."""

    def __init__(self, config: DashboardConfig) -> None:
        self._token = None if config.token is None else config.token.get_secret_value()
        password = None if config.password is None else config.password.get_secret_value()
        self._basic = (config.username, password) if config.username and password else None

    @property
    def closed(self) -> bool:
        """No credentials are configured: nobody gets in."""
        return not self._token and self._basic is None

    def challenges(self) -> list[str]:
        """`WWW-Authenticate` values for the schemes configured."""
        found = [f'Bearer realm="{REALM}"'] if self._token else []
        if self._basic is not None:
            found.append(f'Basic realm="{REALM}", charset="UTF-8"')
        return found

    def allows(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header carries the configured credentials."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self._token:
            return _same(value, self._token)
        if scheme.lower() == "basic" and self._basic is not None:
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            # Both compared every time: which half was wrong takes no different time.
            user_ok, password_ok = _same(user, self._basic[0]), _same(password, self._basic[1])
            return bool(sep) and user_ok and password_ok
        return False


class Dashboard:
    """Gathers the page's data from the services and renders it."""

    def __init__(self, settings: Settings, renderer: Renderer, clock: Clock | None = None) -> None:
        self.gate = Gate(settings.dashboard)
        self._renderer = renderer
        self._clock = clock or SystemClock()
        self._zone = settings.timezone
        self._mode = settings.dingtalk.mode

    async def view(self, app: web.Application) -> DashboardView:
        """Everything on the page, read now in one database connection."""
        now = self._clock.now()
        async with app[DATABASE].read() as conn:
            pending = await queries.pending(conn, now)
            windows = [(days, await queries.stats(conn, now, days)) for days in WINDOWS]
            failed = await queries.failed(conn)
            days = await queries.decisions_per_day(conn, now, CHART_DAYS, self._zone)
            depth, oldest = await job_repo.depth(conn)
        queue = QueueStatus(depth, None if oldest is None else (now - oldest).total_seconds())
        return DashboardView(
            now,
            self._zone,
            pending,
            windows,
            failed,
            self._stream(app),
            _sweep(app),
            _budget(app),
            queue,
            days,
        )

    def render(self, view: DashboardView) -> str:
        """The page's HTML (autoescaped)."""
        return self._renderer.render(TEMPLATE, v=view, refresh_s=REFRESH_S)

    def _stream(self, app: web.Application) -> StreamStatus:
        intake = app.get(STREAM)
        if intake is not None:
            return StreamStatus("stream", intake.connected, intake.connections, intake.frame_age())
        return StreamStatus("http" if self._mode == "http" else "none")


def _sweep(app: web.Application) -> SweepStatus:
    reconciler = app.get(RECONCILER)
    if reconciler is None:
        return SweepStatus(enabled=False)
    last = reconciler.last
    if last is None:
        return SweepStatus(enabled=True)
    return SweepStatus(True, last.at, last.pending, last.listed, last.fetched, last.applied)


def _budget(app: web.Application) -> BudgetView | None:
    meter = app.get(METER)
    if meter is None:
        return None
    client = app.get(CLIENT)
    quota = None if client is None else client.quota.state()
    return BudgetView(
        meter.month_used(),
        meter.budget,
        meter.month_counts(),
        None if quota is None else quota.exhausted_since,
        None if quota is None else quota.next_probe_s,
    )


DASHBOARD = web.AppKey("dashboard", Dashboard)


async def page(request: web.Request) -> web.Response:
    """`GET /`: the dashboard, or 401 with a challenge, or 403 when it is closed."""
    dashboard = request.app[DASHBOARD]
    gate = dashboard.gate
    if gate.closed:
        return web.Response(status=403, text=CLOSED, headers=HEADERS)
    if not gate.allows(request.headers.get("Authorization")):
        response = web.Response(status=401, text="authentication required\n", headers=HEADERS)
        for challenge in gate.challenges():
            response.headers.add("WWW-Authenticate", challenge)
        return response
    html = dashboard.render(await dashboard.view(request.app))
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=HEADERS)


def add_routes(
    app: web.Application, settings: Settings, renderer: Renderer, clock: Clock | None = None
) -> None:
    """Mount the dashboard at `/` (GET and HEAD only: it changes nothing)."""
    app[DASHBOARD] = Dashboard(settings, renderer, clock)
    app.router.add_get("/", page)
