"""`approval-bridge demo`: the whole loop on this machine as a timeline, with no credentials.

The reference ERP, the DingTalk sandbox and the bridge run on loopback; the bridge is the real
service (`create_app` with the DingTalk client, the stream connection and reconciliation), and
the approvers act through the sandbox's control API, as its web page does.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from rich.console import Console
from rich.text import Text
from sqlalchemy import select

from approvals.config import (
    ApprovalsConfig,
    DatabaseConfig,
    JobConfig,
    ProcessConfig,
)
from approvals.db.engine import Database
from approvals.db.migrate import upgrade
from approvals.db.tables import approval, audit
from approvals.price_import import import_prices
from bot.app import create_app
from bot.demo_native import native_erp_config, native_scenario, simulator
from bot.demo_script import MATERIALS, Actors, history_csv, scenario
from bot.keys import DATABASE
from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import Sandbox
from bot.settings import DingTalkConfig, Settings
from erp_adapter.config import ErpConfig
from erp_adapter.reference.erp import ReferenceErp

STYLES = {
    "setup": "dim",
    "erp": "cyan",
    "bridge": "green",
    "dingtalk": "magenta",
    "approver": "yellow",
    "result": "bold",
}


class Timeline:
    """Prints what happens, as it happens, with the time since the start (plain when piped)."""

    def __init__(self, out: TextIO) -> None:
        self._console = Console(file=out, highlight=False, soft_wrap=True)
        self._start = time.monotonic()

    def say(self, who: str, text: str) -> None:
        """One line of the timeline."""
        line = Text(f"{time.monotonic() - self._start:6.2f}s  ")
        line.append(f"{who:<9}", style=STYLES.get(who) or None)
        line.append(f" {text}")
        self._console.print(line)


class AuditWatcher:
    """Prints every audit entry as the bridge writes it, in order."""

    def __init__(self, db: Database, tl: Timeline) -> None:
        self._db, self._tl = db, tl
        self._last = 0
        self._lock = asyncio.Lock()

    async def catch_up(self) -> None:
        """Print what was written since the last look."""
        async with self._lock, self._db.read() as conn:
            # Built under the lock: two catch-ups from the same `_last` printed rows twice.
            query = (
                select(audit.c.id, approval.c.doc_no, audit.c.revision, audit.c.action)
                .add_columns(audit.c.to_state, audit.c.detail)
                .join_from(audit, approval, audit.c.approval_id == approval.c.id)
                .where(audit.c.id > self._last)
                .order_by(audit.c.id)
            )
            for row_id, doc_no, rev, action, to_state, detail in await conn.execute(query):
                self._last = row_id
                details = ", ".join(f"{k}={v}" for k, v in (detail or {}).items() if v is not None)
                moved = f" → {to_state}" if to_state and to_state != action else ""
                text = f"{doc_no} r{rev}: {action}{moved}" + (f" ({details})" if details else "")
                self._tl.say("bridge", text)

    async def say(self, who: str, text: str) -> None:
        """A line of the demo's own, after what the bridge did before it."""
        await self.catch_up()
        self._tl.say(who, text)

    async def follow(self) -> None:
        """Keep printing until cancelled."""
        while True:
            await self.catch_up()
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def demo_settings(url: str, erp: ReferenceErp, sandbox_url: str) -> Settings:
    """The bridge's configuration for the demo: everything on loopback."""
    return settings_for(
        url, ErpConfig(base_url=erp.url, webhook_secret=SecretStr(erp.secret)), sandbox_url
    )


def settings_for(url: str, erp: ErpConfig, sandbox_url: str) -> Settings:
    """The demo's configuration with the given ERP side."""
    return Settings(
        database=DatabaseConfig(url=url),
        erp=erp,
        dingtalk=DingTalkConfig(
            api_base=sandbox_url,
            oapi_base=sandbox_url,
            app_key="dingdemoappkey",
            app_secret=SecretStr(secrets.token_hex(16)),
            robot_code="dingdemoappkey",
            admins=["dt-admin"],
        ),
        approvals=ApprovalsConfig(
            purchase_order=ProcessConfig(process_code="PROC-DEMO-PURCHASE"),
            replenishment=ProcessConfig(process_code="PROC-DEMO-REPLENISH"),
        ),
        users={"u1001": "dt-buyer-zhang", "u1002": "dt-keeper-li"},
        jobs=JobConfig(poll_interval_s=0.1, backoff_initial_s=0.5),
    )


async def run_demo(
    keep_running: bool = False, out: TextIO = sys.stdout, erp: str | None = None
) -> int:
    """Run the demo; 0 when every document reached its expected end state.

    `erp`: a native ERP's simulator to poll (kingdee, odoo, erpnext) instead of the reference
    ERP's webhooks.
    """
    tl = Timeline(out)
    with tempfile.TemporaryDirectory(prefix="approval-bridge-demo-") as folder:
        if erp is not None:
            return await _native_demo(Path(folder), tl, erp, keep_running)
        return await _demo(Path(folder), tl, keep_running)


async def _prepare(folder: Path, tl: Timeline, history: bool = True) -> str:
    url = f"sqlite+aiosqlite:///{folder / 'bridge.db'}"
    db = Database.from_config(DatabaseConfig(url=url))
    try:
        await upgrade(db)
        tl.say("setup", f"database created: {folder / 'bridge.db'}")
        if not history:
            return url
        csv = folder / "price-history.csv"
        await asyncio.to_thread(csv.write_text, history_csv(), encoding="utf-8")
        report = await import_prices(db, csv)
        tl.say(
            "setup",
            f"price history imported: {report.loaded} purchases of {len(MATERIALS)} materials",
        )
    finally:
        await db.dispose()
    return url


async def _demo(folder: Path, tl: Timeline, keep_running: bool) -> int:
    url = await _prepare(folder, tl)
    # The sandbox runs on its own loop in a thread, as DingTalk would be another machine.
    sandbox = Sandbox(SandboxOptions()).start_in_thread()
    try:
        async with (
            ReferenceErp(secret=secrets.token_hex(16)) as erp,
            aiohttp.ClientSession() as http,
        ):
            app = create_app(demo_settings(url, erp, sandbox.url))
            async with _serve(app) as bridge_url:
                erp.bridge_url = bridge_url
                tl.say(
                    "setup", f"bridge {bridge_url} · DingTalk sandbox {sandbox.url} · ERP {erp.url}"
                )
                watcher = AuditWatcher(app[DATABASE], tl)
                follow = asyncio.create_task(watcher.follow())
                try:
                    ok = await scenario(Actors(watcher.say, sandbox.url, http, app), erp)
                finally:
                    follow.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follow
                if keep_running:
                    erp_line = f"reference ERP:    {erp.url}/ref/orders  (control API under /ref/)"
                    await _keep_running(bridge_url, sandbox.url, erp_line)
    finally:
        await sandbox.stop_async()
    return 0 if ok else 1


async def _native_demo(folder: Path, tl: Timeline, name: str, keep_running: bool) -> int:
    url = await _prepare(folder, tl, history=False)
    sim = simulator(name)
    sandbox = Sandbox(SandboxOptions()).start_in_thread()
    try:
        erp_url = await sim.start()
        async with aiohttp.ClientSession() as http:
            app = create_app(settings_for(url, native_erp_config(sim), sandbox.url))
            async with _serve(app) as bridge_url:
                tl.say(
                    "setup",
                    f"bridge {bridge_url} · DingTalk sandbox {sandbox.url} · {name} {erp_url} "
                    "(polled every second)",
                )
                watcher = AuditWatcher(app[DATABASE], tl)
                follow = asyncio.create_task(watcher.follow())
                try:
                    ok = await native_scenario(Actors(watcher.say, sandbox.url, http, app), sim)
                finally:
                    follow.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follow
                if keep_running:
                    await _keep_running(bridge_url, sandbox.url, f"{name + ':':<18}{erp_url}")
    finally:
        await sim.stop()
        await sandbox.stop_async()
    return 0 if ok else 1


async def _keep_running(bridge_url: str, sandbox_url: str, erp_line: str) -> None:
    # Wait for the signal ourselves, so that everything above is torn down in order; the
    # handlers go in before the prompt, so an early Ctrl-C is handled the same way.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        print(f"\nbridge:           {bridge_url}  (POST /erp/events, GET /healthz, /readyz)")
        print(f"DingTalk sandbox: {sandbox_url}/sandbox/  (approve or reject pending instances)")
        print(erp_line)
        print("press Ctrl-C to stop", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
