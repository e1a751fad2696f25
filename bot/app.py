"""The composition root: builds every service from `Settings`, their lifetimes tied to the app."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from approvals.db.engine import Database
from approvals.db.migrate import SchemaStatus, status
from approvals.decisions import DecisionService
from approvals.intake import IntakeService
from approvals.jobs import JobHandler, JobRunner
from approvals.notices import NOTIFY, NotifyHandler
from approvals.ports import ApprovalGateway, Clock, ErpWriteBack, Notifier, SystemClock
from approvals.rules import CREATE_INSTANCE, TERMINATE_INSTANCE
from approvals.submit import CreateInstanceHandler, TerminateHandler
from approvals.writeback import WRITE_BACK, WriteBackHandler
from bot import web as routes
from bot.keys import DATABASE, DECISIONS, HTTP_SESSION, INTAKE, JOBS, WEBHOOK
from bot.settings import Settings
from erp_adapter.generic.adapter import GenericAdapter
from erp_adapter.webhooks import ErpWebhook


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
    """The approval-system side, chosen by the caller (DingTalk, or in memory for the demo)."""

    gateway: ApprovalGateway
    notifier: Notifier
    erp: ErpWriteBack | None = None
    """Overrides the configured ERP adapter (tests)."""


def create_app(settings: Settings, ports: Ports, clock: Clock | None = None) -> web.Application:
    """The service as an aiohttp application; every resource lives in `cleanup_ctx`."""
    clock = clock or SystemClock()
    app = web.Application(
        middlewares=[routes.errors], client_max_size=settings.erp.max_body_bytes + 1
    )
    routes.add_routes(app)

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

    async def services(app: web.Application) -> AsyncIterator[None]:
        db = app[DATABASE]
        secret = settings.erp.webhook_secret
        secret_bytes = None if secret is None else secret.get_secret_value().encode()
        erp = ports.erp or GenericAdapter(
            app[HTTP_SESSION], settings.erp.base_url, secret_bytes or b"", settings.erp.timeout_s
        )
        jobs = settings.jobs
        dingtalk_deadline = dt.timedelta(hours=jobs.dingtalk_deadline_h)
        handlers: dict[str, JobHandler] = {
            CREATE_INSTANCE: CreateInstanceHandler(
                db, clock, ports.gateway, settings.prices, dingtalk_deadline
            ),
            TERMINATE_INSTANCE: TerminateHandler(db, clock, ports.gateway, dingtalk_deadline),
            WRITE_BACK: WriteBackHandler(
                db, clock, erp, dt.timedelta(hours=jobs.write_back_deadline_h)
            ),
            NOTIFY: NotifyHandler(ports.notifier, dingtalk_deadline),
        }
        runner = JobRunner(db, clock, jobs, handlers)
        intake = IntakeService(db, clock, settings.intake, on_commit=runner.wake)
        app[JOBS] = runner
        app[INTAKE] = intake
        app[DECISIONS] = DecisionService(db, clock, settings.prices, on_commit=runner.wake)
        app[WEBHOOK] = ErpWebhook(
            intake, secret_bytes, settings.erp.timestamp_tolerance_s, settings.erp.max_body_bytes
        )
        async with runner.running(), intake.running():
            yield

    app.cleanup_ctx.extend([database, http_session, services])
    return app
