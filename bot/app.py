"""The composition root: builds every service from `Settings`, their lifetimes tied to the app."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from approvals.db.engine import Database
from approvals.db.migrate import SchemaStatus, status
from approvals.decisions import DecisionService
from approvals.errors import Throttled
from approvals.intake import IntakeService
from approvals.jobs import JobHandler, JobRunner
from approvals.notices import NOTIFY, NotifyHandler
from approvals.ports import (
    ApprovalGateway,
    Clock,
    ErpWriteBack,
    InstanceDirectory,
    Notifier,
    SystemClock,
)
from approvals.reconcile import Reconciler
from approvals.reminders import REMIND, ReminderService
from approvals.rules import CREATE_INSTANCE, TERMINATE_INSTANCE
from approvals.submit import CreateInstanceHandler, TerminateHandler
from approvals.writeback import WRITE_BACK, WriteBackHandler
from bot import callback, dashboard, dingtalk
from bot import metrics as metrics_routes
from bot import web as routes
from bot.chat import ChatResponder
from bot.events import ChatHandler, EventSink
from bot.keys import (
    CLIENT,
    DATABASE,
    DECISIONS,
    HTTP_SESSION,
    INTAKE,
    JOBS,
    METER,
    POLLER,
    RECONCILER,
    SINK,
    STREAM,
    WEBHOOK,
)
from bot.metrics import Metrics
from bot.notify import BudgetAlert
from bot.quota import QuotaAlert
from bot.reminders import ReminderSender, reminder_policy, schedule_reminders
from bot.scheduler import Scheduler
from bot.settings import Settings
from cards.renderer import Renderer
from erp_adapter.generic.adapter import GenericAdapter
from erp_adapter.native import hints, registry
from erp_adapter.native.poller import Poller
from erp_adapter.native.writeback import NativeWriteBack
from erp_adapter.webhooks import ErpWebhook

log = logging.getLogger(__name__)


class SchemaOutdated(RuntimeError):
    """The database needs `approval-bridge db upgrade` before the service can run."""

    @classmethod
    def of(cls, schema: SchemaStatus) -> SchemaOutdated:
        """The error for a schema that is behind, naming the command that fixes it."""
        return cls(
            f"the database schema is at {schema.current or 'nothing'}, this version needs "
            f"{schema.head}: run `approval-bridge db upgrade` first"
        )


@dataclass(frozen=True)
class Ports:
    """The approval-system side, when the caller brings it (the in-memory one in tests)."""

    gateway: ApprovalGateway
    notifier: Notifier
    erp: ErpWriteBack | None = None
    """Overrides the configured ERP adapter (tests)."""
    directory: InstanceDirectory | None = None
    """Enables reconciliation against it."""


PORTS = web.AppKey("ports", Ports)


def create_app(
    settings: Settings,
    ports: Ports | None = None,
    clock: Clock | None = None,
    chat: ChatHandler | None = None,
) -> web.Application:
    """The service as an aiohttp application; every resource lives in `cleanup_ctx`.

    Without `ports` it talks to DingTalk as configured: OpenAPI client, stream or HTTP callbacks,
    reconciliation, reminders, and chat commands over the stream (or `chat`, when given).
    """
    clock = clock or SystemClock()
    renderer = Renderer()
    app = web.Application(
        middlewares=[routes.errors], client_max_size=settings.erp.max_body_bytes + 1
    )
    routes.add_routes(app)
    if settings.erp.adapter in registry.NATIVE:
        app.router.add_post("/erp/hooks/{adapter}", _hint_route(settings))
    metrics = Metrics(clock)
    metrics_routes.add_routes(app, metrics)
    dashboard.add_routes(app, settings, renderer, clock)
    if settings.dingtalk.mode == "http":
        callback.add_route(app)
    if chat is None and ports is None and settings.dingtalk.mode == "stream":
        # Robot messages arrive over the stream; the responder finds the services at call time.
        chat = ChatResponder.for_app(
            app, settings, clock=clock, renderer=renderer, client_key=CLIENT
        )

    async def database(app: web.Application) -> AsyncIterator[None]:
        db = Database.from_config(settings.database)
        try:
            schema = await status(db)
            if not schema.up_to_date:
                raise SchemaOutdated.of(schema)
            app[DATABASE] = db
            yield
        finally:
            await db.dispose()

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            app[HTTP_SESSION] = session
            yield

    async def approval_system(app: web.Application) -> AsyncIterator[None]:
        if ports is not None:
            app[PORTS] = ports
            yield
            return
        async with dingtalk.connect(settings, app[DATABASE], app[HTTP_SESSION], renderer) as side:
            app[PORTS] = Ports(side.gateway, side.notifier, directory=side.gateway)
            app[METER] = side.meter
            app[CLIENT] = side.client
            yield

    async def services(app: web.Application) -> AsyncIterator[None]:
        db, chosen = app[DATABASE], app[PORTS]
        secret = settings.erp.webhook_secret
        secret_bytes = None if secret is None else secret.get_secret_value().encode()
        native = None
        if chosen.erp is not None:
            erp: ErpWriteBack = chosen.erp
        elif settings.erp.adapter in registry.NATIVE:
            try:
                native = registry.build(settings.erp, app[HTTP_SESSION])
            except registry.AdapterMissing as exc:
                raise dingtalk.StartupError(str(exc)) from exc
            erp = NativeWriteBack(native, db, clock)
        else:
            erp = GenericAdapter(
                app[HTTP_SESSION],
                settings.erp.base_url,
                secret_bytes or b"",
                settings.erp.timeout_s,
            )
        jobs = settings.jobs
        dingtalk_deadline = dt.timedelta(hours=jobs.dingtalk_deadline_h)
        handlers: dict[str, JobHandler] = {
            CREATE_INSTANCE: CreateInstanceHandler(
                db, clock, chosen.gateway, settings.prices, dingtalk_deadline
            ),
            TERMINATE_INSTANCE: TerminateHandler(db, clock, chosen.gateway, dingtalk_deadline),
            WRITE_BACK: WriteBackHandler(
                db, clock, erp, dt.timedelta(hours=jobs.write_back_deadline_h)
            ),
            NOTIFY: NotifyHandler(chosen.notifier, dingtalk_deadline),
        }
        client = app.get(CLIENT)
        if client is not None:
            handlers[REMIND] = ReminderSender(
                db,
                clock,
                client,
                renderer,
                reminder_policy(settings),
                admins=settings.dingtalk.admins,
                conversation=settings.reminders.escalation_conversation,
                prices=settings.prices,
                api_base=settings.dingtalk.api_base,
                used_fraction=app[METER].used_fraction,
                deadline=dingtalk_deadline,
            )
        runner = JobRunner(db, clock, jobs, handlers, observer=metrics.job_done)
        intake = IntakeService(db, clock, settings.intake, on_commit=runner.wake)
        decisions = DecisionService(db, clock, settings.prices, on_commit=runner.wake)
        sink = EventSink(decisions, clock)
        app[JOBS] = runner
        app[INTAKE] = intake
        app[DECISIONS] = decisions
        app[SINK] = sink
        app[WEBHOOK] = ErpWebhook(
            intake,
            secret_bytes,
            settings.erp.timestamp_tolerance_s,
            settings.erp.max_body_bytes,
            observer=metrics.erp_event,
        )
        if settings.dingtalk.mode == "http":
            try:
                app[callback.CALLBACK] = callback.from_config(sink, settings.dingtalk)
            except callback.CallbackKeysMissing as exc:
                raise dingtalk.StartupError(str(exc)) from exc
        async with contextlib.AsyncExitStack() as stack:
            if native is not None:
                stack.push_async_callback(native.close)
            await stack.enter_async_context(runner.running())
            await stack.enter_async_context(intake.running())
            if ports is None and settings.dingtalk.mode == "stream":
                app[STREAM] = await stack.enter_async_context(
                    dingtalk.stream(settings, app[HTTP_SESSION], sink, chat)
                )
            if METER in app:
                alert = await stack.enter_async_context(BudgetAlert(db, clock, runner.wake))
                alert.watch(app[METER])
            if client is not None:
                quota = QuotaAlert(
                    db,
                    clock,
                    probe_every_s=client.quota.probe_every_s,
                    timezone=settings.timezone,
                    on_commit=runner.wake,
                )
                client.quota.listen(await stack.enter_async_context(quota))
            scheduler = Scheduler(db, settings.timezone)
            if chosen.directory is not None:
                reconciler = Reconciler(
                    db,
                    clock,
                    chosen.directory,
                    decisions,
                    settings.approvals,
                    dt.timedelta(minutes=settings.dingtalk.sweep_interval_min),
                )
                app[RECONCILER] = reconciler
                scheduler.every(
                    "reconcile",
                    settings.dingtalk.reconcile_interval_min,
                    _reconcile_tick(app, reconciler),
                    run_now=True,
                )
            if native is not None:
                poller = Poller(native, db, intake, clock)
                app[POLLER] = await stack.enter_async_context(poller.running())
                minutes = getattr(settings.erp, native.name).poll_interval_s / 60
                scheduler.every(f"erp-poll-{native.name}", minutes, poller.tick, run_now=True)
            if REMIND in handlers and settings.reminders.enabled:
                policy = reminder_policy(settings)
                used = app[METER].used_fraction
                reminders = ReminderService(db, clock, policy, used, on_commit=runner.wake)
                schedule_reminders(scheduler, reminders)
            await stack.enter_async_context(scheduler.running())
            yield

    app.cleanup_ctx.extend([database, http_session, approval_system, services])
    return app


def _hint_route(settings: Settings) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`POST /erp/hooks/{adapter}`: the native ERP's own webhook, as a hint to poll now."""
    form = registry.hint_format(settings.erp)

    async def route(request: web.Request) -> web.StreamResponse:
        poller = request.app.get(POLLER)
        if poller is None:
            return web.json_response({"error": "not_ready"}, status=503)
        return await hints.HintHandler(poller.source, poller.wake, form).handle(request)

    return route


def _reconcile_tick(
    app: web.Application, reconciler: Reconciler
) -> Callable[[], Awaitable[object]]:
    """The scheduled check; a stream that reconnected since the last tick may have lost events."""
    seen = [-1]

    async def tick() -> object:
        intake = app.get(STREAM)
        if intake is not None and intake.connections != seen[0]:
            if seen[0] >= 0:
                reconciler.events_may_be_missing()
            seen[0] = intake.connections
        try:
            return await reconciler.tick()
        except Throttled as exc:
            # DingTalk asks us to wait (its quota spent, throttling): said once where it
            # happens, not with a traceback every tick; the next tick sweeps again.
            log.info("reconcile: not swept, DingTalk asks to wait: %s", exc)
            return None

    return tick
