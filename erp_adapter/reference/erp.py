"""`ReferenceErp`: the reference ERP in-process, serving HTTP on loopback, as a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from erp_adapter.reference.app import create_app
from erp_adapter.reference.emitter import Emitter, RetryPolicy
from erp_adapter.reference.faults import FaultMode, FaultSwitch
from erp_adapter.reference.inbox import WriteBackInbox
from erp_adapter.reference.records import (
    Clock,
    EventRecord,
    Order,
    Requisition,
    WriteBackRecord,
    utc_now,
)
from erp_adapter.reference.service import ErpService
from erp_adapter.reference.store import Store


class ReferenceErp:
    """A small real ERP stand-in: orders, requisitions, signed events out, write-backs in."""

    def __init__(
        self,
        *,
        secret: str,
        bridge_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = utc_now,
        retry: RetryPolicy | None = None,
        event_prefix: str | None = None,
        shutdown_timeout: float = 2.0,
    ) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        self._secret = secret
        self._host, self._port = host, port
        self._shutdown_timeout = shutdown_timeout
        self.store = Store(clock)
        self.faults = FaultSwitch()
        self.emitter = Emitter(
            self.store, secret, bridge_url, session=session, policy=retry, event_prefix=event_prefix
        )
        self.service = ErpService(
            self.store, self.emitter, self.faults, WriteBackInbox(self.store, self.faults, secret)
        )
        self.app = create_app(self.service)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._bound_port: int | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the HTTP session and serve on `host:port` (port 0 picks a free one)."""
        if self._runner is not None:
            raise RuntimeError("the reference ERP is already started")
        await self.emitter.start()
        try:
            await self._serve(self._port)
        except BaseException:
            await self.emitter.close()
            raise

    async def _serve(self, port: int) -> None:
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, bound = runner.addresses[0][:2]
        self._bound_port = bound
        self._url = f"http://{host}:{bound}" if ":" not in host else f"http://[{host}]:{bound}"

    async def close(self) -> None:
        """Cancel deliveries still running, close the session and stop serving."""
        await self.emitter.close()
        await self.stop_listening()

    async def stop_listening(self) -> None:
        """Close the listener and every open connection: the ERP is down, requests to it are
        refused. Events already emitted keep being delivered; `listen` brings it back."""
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    async def listen(self) -> None:
        """Serve again on the address used before `stop_listening`."""
        if self._runner is not None:
            raise RuntimeError("the reference ERP is already listening")
        if self._bound_port is None:
            raise RuntimeError("the reference ERP was never started")
        await self._serve(self._bound_port)

    @property
    def url(self) -> str:
        """The base URL it serves on, e.g. `http://127.0.0.1:54321` (the bridge's erp.base_url)."""
        if self._url is None:
            raise RuntimeError("the reference ERP is not started")
        return self._url

    @property
    def bridge_url(self) -> str | None:
        """Where events go: `{bridge_url}/erp/events`; may be set after start."""
        return self.emitter.bridge_url

    @bridge_url.setter
    def bridge_url(self, value: str | None) -> None:
        self.emitter.bridge_url = value

    @property
    def secret(self) -> str:
        """The HMAC key shared with the bridge (erp.webhook_secret)."""
        return self._secret

    def submit_order(self, data: dict[str, Any]) -> str:
        """Create a purchase order at revision 1, emit `purchase_order.submitted`; the event_id."""
        return self.service.submit_order(data)[1].event_id

    def change_order(self, doc_no: str, data: dict[str, Any]) -> str:
        """Store the next revision of an order, emit `purchase_order.changed`; the event_id."""
        return self.service.change_order(doc_no, data)[1].event_id

    def cancel_order(self, doc_no: str, reason: str = "") -> str:
        """Cancel an order, emit `purchase_order.cancelled`; the event_id."""
        return self.service.cancel_order(doc_no, reason)[1].event_id

    def stock_alert(self, data: dict[str, Any]) -> str:
        """Emit `stock.below_safety`; the event_id."""
        return self.service.stock_alert(data).event_id

    async def wait_delivered(self, timeout: float = 10.0) -> list[EventRecord]:  # noqa: ASYNC109
        """Wait until every event is delivered or finally refused; TimeoutError otherwise."""
        return await self.emitter.wait_delivered(timeout)

    def set_fault(
        self,
        mode: FaultMode,
        *,
        fail_next: int | None = None,
        delay: float = 1.0,
        retry_after: int | None = None,
    ) -> None:
        """Inject a fault into `/approval-results` (for the next `fail_next` requests, if given)."""
        self.faults.set(mode, fail_next=fail_next, delay=delay, retry_after=retry_after)

    def order(self, doc_no: str) -> Order:
        """One purchase order (NotFoundError if unknown)."""
        return self.store.order(doc_no)

    def event(self, event_id: str) -> EventRecord:
        """One emitted event (KeyError if unknown)."""
        for record in self.store.events:
            if record.event_id == event_id:
                return record
        raise KeyError(event_id)

    @property
    def orders(self) -> dict[str, Order]:
        """Every purchase order by number."""
        return dict(self.store.orders)

    @property
    def requisitions(self) -> list[Requisition]:
        """Requisitions raised from approved replenishments."""
        return list(self.store.requisitions)

    @property
    def events(self) -> list[EventRecord]:
        """Every event emitted, with its delivery state."""
        return list(self.store.events)

    @property
    def write_backs(self) -> list[WriteBackRecord]:
        """Every request received on `/approval-results`, in order."""
        return list(self.store.write_backs)
