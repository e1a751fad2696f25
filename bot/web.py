"""Health, readiness and the outer error middleware of the HTTP server."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from bot.keys import CLIENT, DATABASE, STREAM, WEBHOOK
from bot.quota import QuotaState
from bot.server import BodyTimeout

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as JSON; log what was not expected."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            raise
        return web.json_response({"error": exc.reason.lower().replace(" ", "_")}, status=exc.status)
    except web.RequestPayloadError as exc:
        # A body aiohttp cannot decode (broken gzip or chunked framing): the client's fault.
        reason = " ".join(str(exc.__cause__ or exc).split())
        log.info("unreadable body on %s %s: %s", request.method, request.path, reason)
        details = [{"loc": [], "msg": "the body cannot be decoded (Content-Encoding or framing)"}]
        return web.json_response(
            {"error": "invalid_payload", "details": details},
            status=400,
            headers={"Connection": "close"},
        )
    except BodyTimeout:
        # The client sent its body too slowly (bot.server); nothing was stored.
        return web.json_response(
            {"error": "request_timeout"}, status=408, headers={"Connection": "close"}
        )
    except ConnectionResetError:
        if request.transport is not None and not request.transport.is_closing():
            log.exception("unhandled error on %s %s", request.method, request.path)
            return web.json_response({"error": "internal"}, status=500)
        # The client hung up mid-request (aiohttp fails body reads so): not our error, and
        # the answer goes nowhere. Logged quietly, or any client could fill the log.
        log.debug("client left during %s %s", request.method, request.path)
        return web.json_response({"error": "client_disconnected"}, status=400)
    except DBAPIError:
        log.exception("database error on %s %s", request.method, request.path)
        return web.json_response({"error": "unavailable"}, status=503, headers={"Retry-After": "5"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal"}, status=500)


async def erp_events(request: web.Request) -> web.Response:
    """`POST /erp/events`."""
    return await request.app[WEBHOOK].handle(request)


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: the process is alive."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """`GET /readyz`: the database answers and, in stream mode, the DingTalk stream is up."""
    checks: dict[str, str] = {}
    try:
        await request.app[DATABASE].ping()
        checks["database"] = "ok"
    except (DBAPIError, OSError) as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    intake = request.app.get(STREAM)
    if intake is not None:
        checks["dingtalk_stream"] = "ok" if intake.connected else "disconnected"
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, object] = {"ready": ready, "checks": checks}
    client = request.app.get(CLIENT)
    if client is not None:
        # Shown, but not a reason to be taken out of service: ERP events are still taken in
        # and decisions still written back while DingTalk's quota is spent.
        body["dingtalk_quota"] = _quota(client.quota.state())
    return web.json_response(body, status=200 if ready else 503)


def _quota(state: QuotaState) -> str:
    if state.exhausted_since is None:
        return "ok"
    return (
        f"exhausted since {state.exhausted_since.isoformat(timespec='seconds')}: DingTalk calls "
        f"held, next probe in {state.next_probe_s or 0:.0f} s"
    )


def add_routes(app: web.Application) -> None:
    """Mount the service's endpoints."""
    app.router.add_post("/erp/events", erp_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
