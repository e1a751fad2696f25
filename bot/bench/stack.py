"""One scenario's world: `approval-bridge run` as a pinned process, the DingTalk sandbox and the
reference ERP beside it (off the service's core), and a fresh database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

from approvals.config import DatabaseConfig
from approvals.db.engine import Database
from approvals.db.migrate import upgrade
from bot.bench.machine import Placement, cpu_seconds, rss_bytes
from bot.sandbox.options import FaultOptions, SandboxOptions
from bot.sandbox.server import Sandbox
from erp_adapter.reference.erp import ReferenceErp

APP_KEY, APP_SECRET = "dingbenchappkey", "bench-app-secret"
PO_PROCESS, RPL_PROCESS = "PROC-BENCH-PO", "PROC-BENCH-RPL"


@dataclass(frozen=True)
class StackOptions:
    """How the world of one scenario is set up."""

    qps: int | None = 20
    """DingTalk's per-API rate limit in the sandbox; None turns it off."""
    faults: FaultOptions = field(default_factory=FaultOptions)
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra settings for the bridge, as `APPROVAL_BRIDGE__SECTION__KEY` without the prefix."""
    seed: int = 7


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_listening(port: int, process: subprocess.Popen[bytes], wait_s: float = 30) -> None:
    """Until something accepts connections on the port; fails if the process died."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {wait_s:.0f} s")


@contextlib.asynccontextmanager
async def fresh_database(folder: Path, server_url: str | None) -> AsyncIterator[str]:
    """A migrated, empty database: a SQLite file in `folder`, or a new PostgreSQL database."""
    if server_url is None:
        url = f"sqlite+aiosqlite:///{folder / 'bridge.db'}"
        await _migrate(url)
        yield url
        return
    admin = make_url(server_url).set(drivername="postgresql")
    admin_dsn = admin.render_as_string(hide_password=False)
    name = f"ab_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    rendered = admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False
    )
    try:
        await _migrate(rendered)
        yield rendered
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def _migrate(url: str) -> None:
    db = Database.from_config(DatabaseConfig(url=url))
    try:
        await upgrade(db)
    finally:
        await db.dispose()


def bridge_config(
    database_url: str, port: int, dingtalk_url: str, erp_url: str, log_level: str = "WARNING"
) -> str:
    """A bridge's TOML configuration against the sandbox and the reference ERP (no secrets)."""
    return f"""
[database]
url = "{database_url}"
[http]
host = "127.0.0.1"
port = {port}
[dingtalk]
api_base = "{dingtalk_url}"
oapi_base = "{dingtalk_url}"
app_key = "{APP_KEY}"
robot_code = "{APP_KEY}"
admins = ["dt-admin"]
[erp]
base_url = "{erp_url}"
[approvals.purchase_order]
process_code = "{PO_PROCESS}"
[approvals.replenishment]
process_code = "{RPL_PROCESS}"
[log]
level = "{log_level}"
[users]
"u1001" = "dt-buyer"
"u1002" = "dt-keeper"
"""


class Stack:
    """The bridge process with its DingTalk and ERP; use `async with Stack.up(...) as stack`."""

    def __init__(
        self,
        folder: Path,
        database_url: str,
        placement: Placement,
        options: StackOptions,
        sandbox: Sandbox,
        erp: ReferenceErp,
    ) -> None:
        self.folder = folder
        self.database_url = database_url
        self.placement = placement
        self.options = options
        self.sandbox = sandbox
        self.erp = erp
        self.port = free_port()
        self.secret = erp.secret
        """The webhook secret the ERP signs with and the bridge checks."""
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def up(
        cls,
        folder: Path,
        placement: Placement,
        options: StackOptions,
        server_url: str | None = None,
    ) -> AsyncIterator[Stack]:
        """Database, sandbox, ERP, then the bridge; torn down in reverse."""
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        sandbox_options = SandboxOptions(
            app_key=APP_KEY,
            app_secret=APP_SECRET,
            qps=options.qps,
            faults=options.faults,
            seed=options.seed,
        )
        async with fresh_database(folder, server_url) as url:
            sandbox = Sandbox(sandbox_options).start_in_thread()
            try:
                async with ReferenceErp(secret=secrets.token_hex(16)) as erp:
                    stack = cls(folder, url, placement, options, sandbox, erp)
                    erp.bridge_url = stack.url
                    await stack.start()
                    try:
                        yield stack
                    finally:
                        stack.stop()
            finally:
                sandbox.stop()

    @property
    def url(self) -> str:
        """The bridge's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The bridge's process id."""
        assert self.process is not None
        return self.process.pid

    def config_text(self) -> str:
        """The bridge's TOML configuration (secrets go in the environment)."""
        return bridge_config(self.database_url, self.port, self.sandbox.url, self.erp.url)

    async def start(self) -> None:
        """Start `approval-bridge run` pinned to the service's core, and wait until it is ready."""
        config = self.folder / "bridge.toml"
        config.write_text(self.config_text(), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_BRIDGE")}
        env |= {
            "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET": self.secret,
            "APPROVAL_BRIDGE__DINGTALK__APP_SECRET": APP_SECRET,
        }
        env |= {f"APPROVAL_BRIDGE__{key}": value for key, value in self.options.env.items()}
        log = (self.folder / "bridge.log").open("ab")
        # Popen, not asyncio's: `stop` must work from synchronous clean-up, and it returns at once.
        self.process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter and module
            [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.placement.pin_service(self.process.pid)
        await self.until_ready()

    async def until_ready(self, wait_s: float = 30) -> None:
        """Until `/readyz` answers 200 (the database and the stream are up)."""
        assert self.process is not None
        deadline = time.monotonic() + wait_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"approval-bridge run exited: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"approval-bridge run never became ready: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the bridge and wait for it (SIGKILL after 20 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, size: int = 2000) -> str:
        """The end of what the bridge printed."""
        path = self.folder / "bridge.log"
        return path.read_bytes()[-size:].decode(errors="replace") if path.exists() else ""

    def rss(self) -> int:
        """The bridge's resident memory in bytes."""
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        """CPU seconds the bridge has used."""
        return cpu_seconds(self.pid)
