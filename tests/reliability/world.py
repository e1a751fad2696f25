"""A reliability test's world: `approval-bridge run` replicas as real processes behind a
round-robin balancer, one database, the DingTalk sandbox and the reference ERP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp

from bot.bench.stack import APP_KEY, APP_SECRET, bridge_config, free_port, fresh_database
from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import Sandbox
from erp_adapter.reference.erp import ReferenceErp

FAST_JOBS: Mapping[str, str] = {
    "JOBS__POLL_INTERVAL_S": "0.2",
    "JOBS__LEASE_S": "5",
    "JOBS__BACKOFF_INITIAL_S": "0.2",
    "JOBS__BACKOFF_MAX_S": "3",
}
"""Short job timings, so a killed replica's leases pass within the test."""


class Replica:
    """One `approval-bridge run` process; restartable, its output appended to one log."""

    def __init__(self, world: World, number: int) -> None:
        self.world = world
        self.number = number
        self.port = free_port()
        self.log = world.folder / f"replica-{number}.log"
        self.config = world.folder / f"replica-{number}.toml"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """This replica's own base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    async def start(self, failpoints: str = "") -> None:
        """Start the process (crash points armed if given) and wait until it is ready."""
        assert not self.alive, "already running"
        text = bridge_config(
            self.world.database_url, self.port, self.world.sandbox.url, self.world.erp.url, "INFO"
        )
        self.config.write_text(text, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVAL_BRIDGE")}
        env |= {
            "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET": self.world.erp.secret,
            "APPROVAL_BRIDGE__DINGTALK__APP_SECRET": APP_SECRET,
        }
        env |= {f"APPROVAL_BRIDGE__{k}": v for k, v in {**FAST_JOBS, **self.world.env}.items()}
        if failpoints:
            env["APPROVAL_BRIDGE_FAILPOINTS"] = failpoints
        with self.log.open("ab") as log:
            log.write(f"\n=== start {self.starts} failpoints={failpoints!r}\n".encode())
            log.flush()
            self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "bot.cli", "run", "--config", str(self.config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        await self.until_ready()

    async def until_ready(self, wait_s: float = 60) -> None:
        """Until `/readyz` answers 200; fails if the process died."""
        deadline = time.monotonic() + wait_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not self.alive:
                    # A crash point may fire before readiness: that is a crash like any other.
                    return
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError(f"replica {self.number} never became ready: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, as a power cut or the OOM killer would."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 20 s); the exit code."""
        if self.process is None:
            return None
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    async def until_exit(self, wait_s: float) -> int | None:
        """Wait up to `wait_s` for the process to exit by itself; its code, or None."""
        if self.process is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, wait_s)
        return self.process.poll()

    def tail(self, size: int = 3000) -> str:
        """The end of this replica's log."""
        return self.log.read_bytes()[-size:].decode(errors="replace") if self.log.exists() else ""


class Balancer:
    """A round-robin TCP proxy in front of the replicas, skipping those that refuse (an LB)."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = ports
        self._next = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and cut every proxied connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self._ports)):
            port = self._ports[self._next % len(self._ports)]
            self._next += 1
            with contextlib.suppress(OSError):
                return await asyncio.open_connection("127.0.0.1", port)
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


class World:
    """Replicas, balancer, database, sandbox and ERP; `async with World.up(...) as world`."""

    def __init__(
        self,
        folder: Path,
        database_url: str,
        sandbox: Sandbox,
        erp: ReferenceErp,
        env: Mapping[str, str],
    ) -> None:
        self.folder = folder
        self.database_url = database_url
        self.sandbox = sandbox
        self.erp = erp
        self.env = env
        self.replicas: list[Replica] = []
        self.balancer = Balancer([])

    @classmethod
    @contextlib.asynccontextmanager
    async def up(
        cls,
        folder: Path,
        sandbox: SandboxOptions,
        *,
        replicas: int = 1,
        server_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[World]:
        """Everything started, the replicas ready; torn down in reverse."""
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        options = dataclasses.replace(sandbox, app_key=APP_KEY, app_secret=APP_SECRET)
        async with fresh_database(folder, server_url) as url:
            box = Sandbox(options).start_in_thread()
            try:
                async with ReferenceErp(secret=secrets.token_hex(16)) as erp:
                    world = cls(folder, url, box, erp, env or {})
                    world.replicas = [Replica(world, n) for n in range(replicas)]
                    world.balancer = Balancer([r.port for r in world.replicas])
                    await world.balancer.start()
                    erp.bridge_url = world.url
                    try:
                        for replica in world.replicas:
                            await replica.start()
                        yield world
                    finally:
                        for replica in world.replicas:
                            replica.terminate()
                        await world.balancer.close()
            finally:
                box.stop()

    @property
    def url(self) -> str:
        """Where the ERP sends its webhooks: the balancer."""
        return f"http://127.0.0.1:{self.balancer.port}"

    def logs(self) -> str:
        """Every replica's log, concatenated."""
        return "".join(r.log.read_text(errors="replace") for r in self.replicas if r.log.exists())
