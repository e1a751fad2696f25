"""`GET /metrics`: Prometheus text format from a registry of the app's own (not the global one).

Counters are fed by observers the composition root injects (the ERP webhook, the job runner).
Everything else is read at scrape time: approvals by state and the job queue from the database,
DingTalk calls from the `CallMeter`, the stream and the last reconciliation from their services.
Decisions (for the time-to-decision histogram and reconciliation's fixes) are read from the
audit trail incrementally, after the last entry seen. Database-derived numbers are the same on
every replica: aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.db import jobs as job_repo
from approvals.db.jobs import JobRow
from approvals.db.meter import CallCounts
from approvals.db.tables import audit, revision
from approvals.ports import Clock, SystemClock
from approvals.states import State, Trigger
from approvals.writeback import WRITE_BACK
from bot.keys import CLIENT, DATABASE, METER, RECONCILER, STREAM
from bot.quota import QuotaState

log = logging.getLogger(__name__)

NS = "approval_bridge"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus reads (our names are all plain ASCII)."""
DECISION_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800, 1209600)
"""Seconds from receipt to decision: a minute to two weeks."""
_DECIDED = (Trigger.APPROVE.value, Trigger.REJECT.value, Trigger.TERMINATED.value)
_BATCH = 5000


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a scrape read from the database and the services."""

    database_up: bool = False
    states: Mapping[str, int] = field(default_factory=dict)
    queued: int = 0
    oldest_job_age_s: float = 0.0
    calls: Mapping[str, CallCounts] | None = None
    budget: int | None = None
    stream: tuple[bool, int] | None = None
    """(connected, connections made) when the DingTalk stream runs."""
    last_sweep: tuple[float, int] | None = None
    """(unix time, outcomes applied) of the last reconciliation sweep."""
    quota: QuotaState | None = None
    """The DingTalk quota gate, when this process calls DingTalk."""


class Metrics:
    """The app's metrics: observer callbacks for the edges, and the scrape."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self.registry = CollectorRegistry()
        reg = self.registry
        self.erp_events = Counter(
            f"{NS}_erp_events",
            "ERP webhook deliveries by event type and outcome.",
            ["type", "outcome"],
            registry=reg,
        )
        self.write_back_attempts = Counter(
            f"{NS}_write_back_attempts", "Write-back attempts to the ERP.", registry=reg
        )
        self.write_back_failures = Counter(
            f"{NS}_write_back_failures",
            "Failed write-back attempts: retry (tried again later) or parked (given up).",
            ["outcome"],
            registry=reg,
        )
        self.job_runs = Counter(
            f"{NS}_job_runs",
            "Outbox job runs by kind and outcome (done, retry, parked).",
            ["kind", "outcome"],
            registry=reg,
        )
        self.decision_time = Histogram(
            f"{NS}_time_to_decision_seconds",
            "From receipt of a revision to the approvers' decision.",
            buckets=DECISION_BUCKETS,
            registry=reg,
        )
        self.reconcile_fixes = Counter(
            f"{NS}_reconcile_fixes",
            "Decisions and withdrawals applied by reconciliation because their event was missed.",
            registry=reg,
        )
        self.connections_cut = Counter(
            f"{NS}_http_connections_cut",
            "HTTP connections cut by the server's guards: limit (past http.max_connections), "
            "header_timeout, body_timeout.",
            ["reason"],
            registry=reg,
        )
        self.snapshot = Snapshot()
        reg.register(_SnapshotCollector(self))
        self._audit_seen: int | None = None
        self._lock = asyncio.Lock()

    def erp_event(self, event_type: str, outcome: str) -> None:
        """Observer for `ErpWebhook`: one delivery answered."""
        self.erp_events.labels(event_type, outcome).inc()

    def connection_cut(self, reason: str) -> None:
        """Observer for the HTTP server: one connection cut (`bot.server`)."""
        self.connections_cut.labels(reason).inc()

    def job_done(self, job: JobRow, outcome: str) -> None:
        """Observer for `JobRunner`: one run of a job ended (`done`, `retry` or `parked`)."""
        self.job_runs.labels(job.kind, outcome).inc()
        if job.kind == WRITE_BACK:
            self.write_back_attempts.inc()
            if outcome != "done":
                self.write_back_failures.labels(outcome).inc()

    async def start(self, app: web.Application) -> None:
        """Count decisions from now on (on_startup, once the database is open)."""
        async with app[DATABASE].read() as conn:
            self._audit_seen = int((await conn.execute(select(func.max(audit.c.id)))).scalar() or 0)

    async def refresh(self, app: web.Application) -> None:
        """Read the scrape-time numbers; the database part is left out when it cannot be read."""
        now = self._clock.now()
        meter, stream, reconciler = app.get(METER), app.get(STREAM), app.get(RECONCILER)
        last = None if reconciler is None else reconciler.last
        client = app.get(CLIENT)
        services = Snapshot(
            quota=None if client is None else client.quota.state(),
            calls=None if meter is None else meter.month_counts(),
            budget=None if meter is None else meter.budget,
            stream=None if stream is None else (stream.connected, stream.connections),
            last_sweep=None if last is None else (last.at.timestamp(), last.applied),
        )
        try:
            async with app[DATABASE].read() as conn:
                states = await _states(conn)
                queued, oldest = await job_repo.depth(conn)
                await self._observe_decisions(conn)
        except (DBAPIError, OSError) as exc:
            log.warning("metrics: cannot read the database: %s", exc)
            self.snapshot = services
            return
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        self.snapshot = dataclasses.replace(
            services, database_up=True, states=states, queued=queued, oldest_job_age_s=age
        )

    async def render(self, app: web.Application) -> bytes:
        """The exposition, refreshed now; one scrape at a time."""
        async with self._lock:
            await self.refresh(app)
            return generate_latest(self.registry)

    async def _observe_decisions(self, conn: AsyncConnection) -> None:
        """Feed decisions recorded since the last scrape to the histogram and the fix counter."""
        if self._audit_seen is None:
            return
        while True:
            query = (
                select(audit.c.id, audit.c.action, audit.c.actor)
                .add_columns(revision.c.created_at, revision.c.decided_at)
                .join_from(
                    audit,
                    revision,
                    (revision.c.approval_id == audit.c.approval_id)
                    & (revision.c.revision == audit.c.revision),
                )
                .where(audit.c.id > self._audit_seen, audit.c.action.in_(_DECIDED))
                .order_by(audit.c.id)
                .limit(_BATCH)
            )
            rows = (await conn.execute(query)).all()
            for row_id, action, actor, created_at, decided_at in rows:
                self._audit_seen = row_id
                if actor == "reconcile":
                    self.reconcile_fixes.inc()
                if action != Trigger.TERMINATED.value and decided_at is not None:
                    waited = (decided_at - created_at).total_seconds()
                    self.decision_time.observe(max(0.0, waited))
            if len(rows) < _BATCH:
                return


async def _states(conn: AsyncConnection) -> dict[str, int]:
    query = select(revision.c.state, func.count()).group_by(revision.c.state)
    found = {str(state): int(n) for state, n in await conn.execute(query)}
    return {s.value: found.get(s.value, 0) for s in State}


class _SnapshotCollector:
    """Turns the last snapshot into metric families (families with no data have no samples)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        """The scrape-time families."""
        s = self._metrics.snapshot
        yield _gauge("database_up", "Whether this scrape could read the database.", s.database_up)
        states = GaugeMetricFamily(
            f"{NS}_approvals", "Approval revisions by state.", labels=["state"]
        )
        for state, count in s.states.items():
            states.add_metric([state], count)
        yield states
        yield _gauge(
            "jobs_queued", "Outbox jobs waiting or running (parked ones excluded).", s.queued
        )
        yield _gauge(
            "jobs_oldest_age_seconds",
            "Age of the oldest waiting or running job.",
            s.oldest_job_age_s,
        )
        yield from _dingtalk(s)
        yield from _quota(s.quota)
        yield from _reconcile(s)


def _gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{NS}_{name}", doc, labels=[])
    if value is not None:
        family.add_metric([], float(value))
    return family


def _dingtalk(s: Snapshot) -> Iterable[Metric]:
    calls = GaugeMetricFamily(
        f"{NS}_dingtalk_calls_this_month",
        "Metered DingTalk calls this month (all replicas) by API and outcome: ok, failed, "
        "throttled (refused before running; not counted against the budget).",
        labels=["api", "outcome"],
    )
    for api, c in sorted((s.calls or {}).items()):
        calls.add_metric([api, "ok"], c.calls - c.failed - c.throttled)
        calls.add_metric([api, "failed"], c.failed)
        calls.add_metric([api, "throttled"], c.throttled)
    yield calls
    used = None if s.calls is None else sum(c.calls - c.throttled for c in s.calls.values())
    yield _gauge("dingtalk_calls_used", "DingTalk calls counted against this month's budget.", used)
    yield _gauge("dingtalk_calls_budget", "The monthly DingTalk call budget.", s.budget)
    connected = None if s.stream is None else int(s.stream[0])
    yield _gauge(
        "dingtalk_stream_connected", "Whether the DingTalk stream is connected.", connected
    )
    connects = CounterMetricFamily(
        f"{NS}_dingtalk_stream_connects", "DingTalk stream connections opened.", labels=[]
    )
    if s.stream is not None:
        connects.add_metric([], s.stream[1])
    yield connects


def _quota(q: QuotaState | None) -> Iterable[Metric]:
    exhausted = None if q is None else int(q.exhausted_since is not None)
    yield _gauge(
        "dingtalk_quota_exhausted",
        "1 while DingTalk refuses calls for the monthly quota (90020): calls are held and probed.",
        exhausted,
    )
    since = None if q is None or q.exhausted_since is None else q.exhausted_since.timestamp()
    yield _gauge(
        "dingtalk_quota_exhausted_since_timestamp_seconds",
        "When DingTalk first refused a call for the quota (unix time), while it still does.",
        since,
    )
    refused = CounterMetricFamily(
        f"{NS}_dingtalk_quota_refused",
        "Calls DingTalk refused for the monthly quota (90020).",
        labels=[],
    )
    held = CounterMetricFamily(
        f"{NS}_dingtalk_quota_held",
        "Calls held back, not sent, while the quota was spent.",
        labels=[],
    )
    if q is not None:
        refused.add_metric([], q.refused)
        held.add_metric([], q.held)
    yield refused
    yield held


def _reconcile(s: Snapshot) -> Iterable[Metric]:
    at, applied = s.last_sweep or (None, None)
    yield _gauge(
        "reconcile_last_sweep_timestamp_seconds", "When reconciliation last swept (unix time).", at
    )
    yield _gauge("reconcile_last_sweep_applied", "Missed outcomes the last sweep applied.", applied)


METRICS = web.AppKey("metrics", Metrics)


async def scrape(request: web.Request) -> web.Response:
    """`GET /metrics`: open like `/healthz` (Prometheus scrapes without credentials)."""
    body = await request.app[METRICS].render(request.app)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application, metrics: Metrics) -> None:
    """Mount `/metrics`, keep `metrics` at `METRICS`, and start counting decisions at startup."""
    app[METRICS] = metrics

    async def start(app: web.Application) -> None:
        await metrics.start(app)

    app.on_startup.append(start)  # runs after the cleanup contexts: the database is open
    app.router.add_get("/metrics", scrape)
