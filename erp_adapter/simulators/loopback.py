"""Serving one simulator's aiohttp application on loopback, for tests and the demo."""

from __future__ import annotations

from aiohttp import web


class Loopback:
    """One application on one loopback port, until stopped."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None

    async def start(self, app: web.Application, host: str, port: int) -> str:
        """Serve `app`; returns `http://host:port` with the port actually bound."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        return f"http://{host}:{runner.addresses[0][1]}"

    async def stop(self) -> None:
        """Stop serving (nothing if not serving)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
