"""`Sandbox`: the DingTalk sandbox as an async context manager, in this loop or its own thread."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from bot.sandbox.app import create_app
from bot.sandbox.control import apply_faults, faults_json
from bot.sandbox.core import SandboxCore
from bot.sandbox.errors import ControlError
from bot.sandbox.options import Clock, FaultOptions, SandboxOptions, system_clock

T = TypeVar("T")


class Sandbox:
    """A local DingTalk: OpenAPI subset, stream gateway, HTTP callbacks and a control API."""

    def __init__(
        self, options: SandboxOptions | None = None, *, clock: Clock = system_clock
    ) -> None:
        self.options = options or SandboxOptions()
        self.state = SandboxCore(self.options, clock)
        """Everything the sandbox holds; read it from tests, change it through the methods."""
        self.app = create_app(self.state)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

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
        """Serve on the configured host and port (0 picks a free one) in the running loop."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already started")
        runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=self.options.shutdown_timeout
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.options.host, self.options.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        host, port = runner.addresses[0][:2]
        # A wildcard address is not one a client can dial; loopback is.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
        self._url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        self._runner, self._loop = runner, asyncio.get_running_loop()
        await self.state.start(self._url)

    async def close(self) -> None:
        """Stop deliveries, close stream connections, stop serving."""
        if self._runner is None:
            return
        if self._loop is not asyncio.get_running_loop():
            raise RuntimeError("the sandbox runs in its own thread: use stop() or stop_async()")
        await self.state.close()
        await self._runner.cleanup()
        self._runner = None

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:54321`: the bridge's api_base and oapi_base."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    @property
    def open_connection_url(self) -> str:
        """What to assign to `DingTalkStreamClient.OPEN_CONNECTION_API`."""
        return self.url + "/v1.0/gateway/connections/open"

    def start_in_thread(self, timeout: float = 10.0) -> Self:
        """Serve from a background thread with its own loop (the stream SDK blocks its loop)."""
        if self._thread is not None or self._runner is not None:
            raise RuntimeError("the sandbox is already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                _drain_loop(loop)

        self._thread = threading.Thread(target=run, name="dingtalk-sandbox", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"the sandbox did not start within {timeout} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a sandbox started with `start_in_thread`; blocks the calling thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None

    async def stop_async(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """`stop` without blocking the calling loop (which may host a client of the sandbox)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self.close(), loop)
            await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, timeout)
            self._thread = None

    async def approve(
        self, instance_id: str, user_id: str | None = None, remark: str = ""
    ) -> dict[str, Any]:
        """Agree the current task, as `POST /sandbox/instances/{id}/approve`."""
        return await self._decide(instance_id, True, user_id, remark)

    async def refuse(
        self, instance_id: str, user_id: str | None = None, remark: str = ""
    ) -> dict[str, Any]:
        """Refuse the current task, as `POST /sandbox/instances/{id}/refuse`."""
        return await self._decide(instance_id, False, user_id, remark)

    async def instances(self) -> list[dict[str, Any]]:
        """As `GET /sandbox/instances`."""
        core = self.state
        return await self._run(
            lambda: [
                i.to_control(core.page_url(i.instance_id))
                for i in list(core.workflow.instances.values())
            ]
        )

    async def messages(self) -> list[dict[str, Any]]:
        """As `GET /sandbox/messages`."""
        return await self._run(lambda: [m.to_json() for m in self.state.chat.messages])

    async def events(self) -> list[dict[str, Any]]:
        """As `GET /sandbox/events`."""
        return await self._run(lambda: [e.to_json() for e in self.state.bus.events])

    async def stats(self) -> dict[str, Any]:
        """As `GET /sandbox/stats`."""
        return await self._run(self.state.stats)

    async def set_faults(self, **changes: Any) -> FaultOptions:
        """Change fault settings (FaultOptions field names) at run time."""
        return await self._run(lambda: self.state.set_faults(**changes))

    async def set_limits(self, **changes: int | None) -> None:
        """Change `qps` or `monthly_quota` at run time (None turns it off)."""
        await self._run(lambda: self.state.set_limits(**changes))

    async def apply_faults_json(self, body: dict[str, Any]) -> dict[str, Any]:
        """As `POST /sandbox/faults` (camelCase fields)."""
        return await self._run(lambda: apply_faults(self.state, body))

    async def faults(self) -> dict[str, Any]:
        """As `GET /sandbox/faults`."""
        return await self._run(lambda: faults_json(self.state))

    async def invalidate_tokens(self, app_key: str | None = None) -> int:
        """Make current access tokens fail; how many were dropped."""
        return await self._run(lambda: self.state.tokens.invalidate(app_key))

    async def disconnect_all(self) -> int:
        """Send `disconnect` to every stream connection."""
        return await self._run(self.state.gateway.disconnect_all)

    async def drop_all(self) -> int:
        """Cut every stream connection without a word; unacked pushes are redelivered."""
        return await self._run(self.state.gateway.drop_all)

    async def deliver_chat(
        self,
        sender: str,
        text: str,
        *,
        conversation_type: str = "1",
        wait: float | None = None,
    ) -> dict[str, Any]:
        """As `POST /sandbox/chat`: `{"msgId", "replies": [...]}` (ControlError if no bot)."""
        return await self._on_loop(
            lambda: self.state.chat.deliver(
                sender, text, conversation_type=conversation_type, wait=wait
            )
        )

    async def configure_callback(
        self, url: str | None, token: str = "", aes_key: str = "", owner_key: str | None = None
    ) -> None:
        """Send events as encrypted HTTP callbacks to `url` (None: back to the stream)."""
        push = self.state.push
        if url is None:
            await self._run(push.disable)
        else:
            await self._run(lambda: push.configure(url, token, aes_key, owner_key))

    async def check_callback(self) -> bool:
        """Run the `check_url` handshake against the callback URL."""
        if not self.state.push.enabled:
            raise ControlError("not_configured", "no callback URL is set", 409)
        return await self._on_loop(self.state.push.check_url)

    async def redeliver(self, event_id: str) -> None:
        """Push an event once more (a duplicate)."""
        await self._run(lambda: self.state.bus.duplicate(event_id))

    async def wait_events_settled(self, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until no event is pending delivery; the events."""
        await self._on_loop(lambda: self.state.bus.wait_settled(timeout))
        return await self.events()

    async def _decide(
        self, instance_id: str, agree: bool, user_id: str | None, remark: str
    ) -> dict[str, Any]:
        def act() -> dict[str, Any]:
            instance = self.state.workflow.decide(instance_id, agree, user_id, remark)
            return instance.to_control(self.state.page_url(instance_id))

        return await self._run(act)

    async def _run(self, fn: Callable[[], T]) -> T:
        """Call `fn` on the sandbox's loop (state is only touched there)."""

        async def call() -> T:
            return fn()

        return await self._on_loop(call)

    async def _on_loop(self, fn: Callable[[], Awaitable[T]]) -> T:
        loop = self._loop
        if loop is None or self._runner is None:
            raise RuntimeError("the sandbox is not started")
        if loop is asyncio.get_running_loop():
            return await fn()

        async def wrapped() -> T:
            return await fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wrapped(), loop))


def _drain_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on a stopped loop, then close it."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


async def serve(
    host: str = "127.0.0.1", port: int = 0, options: SandboxOptions | None = None
) -> None:
    """Run the sandbox alone until cancelled, printing where it is (`approval-bridge sandbox`)."""
    options = dataclasses.replace(options or SandboxOptions(), host=host, port=port)
    async with Sandbox(options) as sandbox:
        print(
            f"DingTalk sandbox on {sandbox.url}\n"
            f"  page:      {sandbox.url}/sandbox/\n"
            f"  point dingtalk.api_base and dingtalk.oapi_base here; for the dingtalk-stream SDK "
            f"set DINGTALK_OPENAPI_ENDPOINT={sandbox.url}",
            flush=True,
        )
        await asyncio.Event().wait()
