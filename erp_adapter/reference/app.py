"""The reference ERP's HTTP side: `/approval-results` (CONTRACT §3) and the `/ref/` control API."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from erp_adapter.reference import validate
from erp_adapter.reference.errors import ErpError, InputError
from erp_adapter.reference.service import ErpService

log = logging.getLogger(__name__)
SERVICE = web.AppKey("reference_erp_service", ErpService)
routes = web.RouteTableDef()


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as JSON: 4xx with a message for bad input, never a bare 500."""
    try:
        return await handler(request)
    except ErpError as exc:
        return web.json_response(exc.to_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = exc.reason.lower().replace(" ", "_")
        return web.json_response(
            {"error": code, "message": exc.reason}, status=exc.status, headers=headers
        )
    except Exception:
        log.exception("reference ERP: %s %s failed", request.method, request.path)
        return web.json_response({"error": "internal_error"}, status=500)


async def _body(request: web.Request, *, optional: bool = False) -> Any:
    """The request's JSON body; an empty body is None when `optional`."""
    raw = await request.read()
    if optional and not raw.strip():
        return None
    if not raw.strip():
        raise InputError("a JSON body is required")
    return validate.parse_json(raw)


def _service(request: web.Request) -> ErpService:
    return request.app[SERVICE]


@routes.post("/approval-results")
async def approval_results(request: web.Request) -> web.Response:
    """CONTRACT §3: a decision written back by the bridge."""
    raw = await request.read()
    status, body, headers = await _service(request).inbox.receive(request.headers, raw)
    return web.json_response(body, status=status, headers=headers)


@routes.post("/ref/orders")
async def submit_order(request: web.Request) -> web.Response:
    """Create a purchase order (revision 1) and emit `purchase_order.submitted`."""
    order, event = _service(request).submit_order(await _body(request))
    return web.json_response({"order": order.to_json(), "event_id": event.event_id}, status=201)


@routes.get("/ref/orders")
async def list_orders(request: web.Request) -> web.Response:
    """Every purchase order at its current revision."""
    orders = _service(request).store.orders.values()
    return web.json_response({"orders": [order.to_json() for order in orders]})


@routes.get("/ref/orders/{doc_no}")
async def get_order(request: web.Request) -> web.Response:
    """One purchase order."""
    return web.json_response(_service(request).store.order(request.match_info["doc_no"]).to_json())


@routes.put("/ref/orders/{doc_no}")
async def change_order(request: web.Request) -> web.Response:
    """Store new data as the next revision and emit `purchase_order.changed`."""
    doc_no = request.match_info["doc_no"]
    order, event = _service(request).change_order(doc_no, await _body(request))
    return web.json_response({"order": order.to_json(), "event_id": event.event_id})


@routes.post("/ref/orders/{doc_no}/cancel")
async def cancel_order(request: web.Request) -> web.Response:
    """Cancel an order (`{"reason": ...}`, optional) and emit `purchase_order.cancelled`."""
    body = await _body(request, optional=True)
    if body is None:
        body = {}
    reason = validate.obj(body, "body").get("reason", "")
    order, event = _service(request).cancel_order(request.match_info["doc_no"], reason)
    return web.json_response({"order": order.to_json(), "event_id": event.event_id})


@routes.post("/ref/stock-alerts")
async def stock_alert(request: web.Request) -> web.Response:
    """Emit `stock.below_safety`."""
    event = _service(request).stock_alert(await _body(request))
    return web.json_response({"event_id": event.event_id, "data": event.data}, status=202)


@routes.get("/ref/requisitions")
async def list_requisitions(request: web.Request) -> web.Response:
    """Purchase requisitions raised from approved replenishments."""
    requisitions = _service(request).store.requisitions
    return web.json_response({"requisitions": [r.to_json() for r in requisitions]})


@routes.get("/ref/write-backs")
async def list_write_backs(request: web.Request) -> web.Response:
    """Every request received on `/approval-results`, in order, with our answers."""
    write_backs = _service(request).store.write_backs
    return web.json_response({"write_backs": [w.to_json() for w in write_backs]})


@routes.get("/ref/events")
async def list_events(request: web.Request) -> web.Response:
    """Every event emitted, with its delivery state."""
    events = _service(request).store.events
    return web.json_response({"events": [e.to_json() for e in events]})


@routes.get("/ref/faults")
async def get_faults(request: web.Request) -> web.Response:
    """The fault currently injected into `/approval-results`."""
    return web.json_response(_service(request).faults.to_json())


@routes.post("/ref/faults")
async def set_faults(request: web.Request) -> web.Response:
    """Set the fault: `{"mode": ..., "fail_next": N, "delay": s, "retry_after": s}`."""
    faults = _service(request).faults
    faults.set_from_json(await _body(request))
    return web.json_response(faults.to_json())


def create_app(service: ErpService) -> web.Application:
    """The reference ERP's aiohttp application around `service`."""
    app = web.Application(middlewares=[json_errors])
    app[SERVICE] = service
    app.add_routes(routes)
    return app
