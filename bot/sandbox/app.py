"""The sandbox's aiohttp application: DingTalk's paths, the stream socket, the control API."""

from __future__ import annotations

from aiohttp import web

from bot.sandbox import api, control, robot
from bot.sandbox.core import SandboxCore
from bot.sandbox.middleware import CORE, dingtalk


def create_app(core: SandboxCore) -> web.Application:
    """One application serving everything the sandbox offers."""
    app = web.Application(middlewares=[dingtalk], client_max_size=4 * 1024 * 1024)
    app[CORE] = core
    app[control.TEMPLATES] = control.templates()
    app.add_routes(api.routes)
    app.add_routes(robot.routes)
    app.add_routes(control.routes)
    app.router.add_get("/connect", core.gateway.handle)
    return app
