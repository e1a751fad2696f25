"""`SandboxCore`: every part of the sandbox wired together, for the HTTP side and the facade."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.sandbox.chat import Chat
from bot.sandbox.events import EventBus, Target
from bot.sandbox.flow import Workflow
from bot.sandbox.gateway import Gateway
from bot.sandbox.limits import CallStats, Limiter
from bot.sandbox.options import Clock, FaultOptions, SandboxOptions
from bot.sandbox.push import CallbackPusher
from bot.sandbox.tokens import TokenStore, credentials_ok

log = logging.getLogger(__name__)


class SandboxCore:
    """The sandbox's state and behaviour; lives on one event loop."""

    def __init__(self, options: SandboxOptions, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        # Seeded dice for connection choice and fault rates; a simulation, not security.
        self.rng = random.Random(options.seed)  # noqa: S311
        self.faults: FaultOptions = options.faults
        self.base_url = ""
        self.tokens = TokenStore(clock, options.token_ttl)
        self.limiter = Limiter(clock, options.qps, options.monthly_quota)
        self.calls = CallStats()
        self.gateway = Gateway(options, clock, self.rng, self.credentials_ok)
        self.push = CallbackPusher(options, clock, self.http)
        self.bus = EventBus(options, clock, self.rng, lambda: self.faults, self._target)
        self.workflow = Workflow(options, clock, self.bus.emit, self.page_url)
        self.chat = Chat(options, clock, self.gateway, lambda: self.base_url)
        self._session: aiohttp.ClientSession | None = None
        self._chaos: list[asyncio.Task[None]] = []
        self._retired: set[asyncio.Task[None]] = set()

    async def start(self, base_url: str) -> None:
        """Open the HTTP client (for callbacks) and start the periodic faults."""
        self.base_url = base_url
        self._session = aiohttp.ClientSession()
        self._restart_chaos()

    async def close(self) -> None:
        """Stop deliveries and periodic faults, close stream connections and the client."""
        tasks = [*self._chaos, *self._retired]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.bus.close()
        await self.gateway.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def http(self) -> aiohttp.ClientSession:
        """The sandbox's one client session."""
        if self._session is None:
            raise RuntimeError("the sandbox is not started")
        return self._session

    def credentials_ok(self, app_key: object, app_secret: object) -> bool:
        """Whether this app key and secret are accepted (any, unless configured)."""
        return credentials_ok(app_key, app_secret, self.options.app_key, self.options.app_secret)

    def page_url(self, instance_id: str) -> str:
        """Where an instance is shown: the sandbox page stands in for DingTalk's aflow page."""
        return f"{self.base_url}/sandbox/#{instance_id}"

    def set_faults(self, **changes: Any) -> FaultOptions:
        """Change fault settings at run time (ValueError for bad values)."""
        self.faults = dataclasses.replace(self.faults, **changes)
        if {"disconnect_every", "drop_every", "token_invalidate_every"} & changes.keys():
            self._restart_chaos()
        return self.faults

    def set_limits(self, **changes: int | None) -> None:
        """Change `qps` or `monthly_quota` at run time."""
        for name, value in changes.items():
            if name not in ("qps", "monthly_quota"):
                raise ValueError(f"unknown limit {name}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be an integer or null")
            if value is not None and value < (1 if name == "qps" else 0):
                raise ValueError(f"{name} is too small")
            setattr(self.limiter, name, value)

    def stats(self) -> dict[str, Any]:
        """Everything `GET /sandbox/stats` shows."""
        instances = self.workflow.instances.values()
        return {
            "calls": self.calls.to_json(),
            "events": {
                **self.bus.stats.to_json(),
                "pending": sum(e.status == "pending" for e in self.bus.events),
                "delivery": "http" if self.push.enabled else "stream",
            },
            "stream": self.gateway.to_json(),
            "callback": self.push.to_json(),
            "tokens": {"issued": self.tokens.issued, "invalidations": self.tokens.invalidations},
            "limits": {
                "qps": self.limiter.qps,
                "monthlyQuota": self.limiter.monthly_quota,
                "usedThisMonth": self.limiter.used_this_month(),
            },
            "instances": {
                "total": len(self.workflow.instances),
                "running": sum(i.status == "RUNNING" for i in instances),
            },
            "chat": {"received": self.chat.received, "sent": len(self.chat.messages)},
        }

    def _target(self) -> Target:
        return self.push if self.push.enabled else self.gateway

    def _restart_chaos(self) -> None:
        for task in self._chaos:
            task.cancel()
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        self._chaos = []
        loop = asyncio.get_running_loop()
        every = self.faults.disconnect_every
        if every is not None:
            action = self.gateway.disconnect_all
            self._chaos.append(loop.create_task(_periodic(every, action), name="disconnects"))
        every = self.faults.drop_every
        if every is not None:
            self._chaos.append(loop.create_task(self._drops(every), name="drops"))
        every = self.faults.token_invalidate_every
        if every is not None:
            expire = self.tokens.invalidate
            self._chaos.append(loop.create_task(_periodic(every, expire), name="token expiry"))

    async def _drops(self, every: float) -> None:
        """Cut the stream every `every` seconds, with an event in flight if one comes soon."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.gateway.drop_in_flight(min(every, 2.0))
            except Exception:
                log.exception("sandbox: periodic drop failed")


async def _periodic(every: float, action: Callable[[], object]) -> None:
    """Run `action` every `every` seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        try:
            action()
        except Exception:
            log.exception("sandbox: periodic fault failed")
