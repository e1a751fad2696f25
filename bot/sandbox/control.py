"""The control API under `/sandbox/` (CONTRACT §6) and the page that uses it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from bot.sandbox.core import SandboxCore
from bot.sandbox.crypto import CryptoError
from bot.sandbox.errors import ControlError
from bot.sandbox.middleware import CORE
from bot.sandbox.options import FaultOptions

routes = web.RouteTableDef()
TEMPLATES = web.AppKey("sandbox_templates", jinja2.Environment)
_FORM = "application/x-www-form-urlencoded"

# Control-API JSON is camelCase like DingTalk's; Python names are snake_case.
FAULT_NAMES = {
    "errorRate": "error_rate",
    "errorStatus": "error_status",
    "throttleRate": "throttle_rate",
    "latency": "latency",
    "hangRate": "hang_rate",
    "holdCreateReply": "hold_create_reply",
    "hangSeconds": "hang_seconds",
    "eventDropRate": "event_drop_rate",
    "disconnectEvery": "disconnect_every",
    "dropEvery": "drop_every",
    "tokenInvalidateEvery": "token_invalidate_every",
}
LIMIT_NAMES = {"qps": "qps", "monthlyQuota": "monthly_quota"}


def table_rows(value: str) -> list[list[dict[str, Any]]] | None:
    """A table (detail) field's value as rows of cells, as DingTalk shows it; None otherwise."""
    if not value.startswith("[["):
        return None
    try:
        rows = json.loads(value)
    except ValueError:
        return None
    cells_ok = all(
        isinstance(row, list) and all(isinstance(c, dict) and "name" in c for c in row)
        for row in rows
    )
    return rows if isinstance(rows, list) and cells_ok else None


def templates() -> jinja2.Environment:
    """The page's templates: packaged, autoescaped, compiled once (no auto_reload)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.sandbox", "templates"),
        autoescape=True,
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["table_rows"] = table_rows
    return env


def faults_json(core: SandboxCore) -> dict[str, Any]:
    """The current faults and limits, camelCase."""
    faults = {k: getattr(core.faults, v) for k, v in FAULT_NAMES.items()}
    return {**faults, "qps": core.limiter.qps, "monthlyQuota": core.limiter.monthly_quota}


def apply_faults(core: SandboxCore, body: Any) -> dict[str, Any]:
    """Apply a `POST /sandbox/faults` body; `invalidateToken: true` also drops every token."""
    if not isinstance(body, dict):
        raise ControlError("invalid", "the body must be a JSON object")
    known = {*FAULT_NAMES, *LIMIT_NAMES, "invalidateToken", "reset"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ControlError("invalid", f"unknown fields {unknown}; known: {sorted(known)}")
    try:
        if body.get("reset"):
            core.set_faults(**dataclasses.asdict(FaultOptions()))
        core.set_faults(**{FAULT_NAMES[k]: v for k, v in body.items() if k in FAULT_NAMES})
        core.set_limits(**{LIMIT_NAMES[k]: v for k, v in body.items() if k in LIMIT_NAMES})
    except (TypeError, ValueError) as exc:
        raise ControlError("invalid", str(exc)) from exc
    if body.get("invalidateToken"):
        core.tokens.invalidate()
    return faults_json(core)


async def _body(request: web.Request) -> dict[str, Any]:
    """A JSON object body, a form, or nothing (`{}`)."""
    if request.content_type == _FORM:
        return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ControlError("invalid", "the body is not JSON") from exc
    if not isinstance(body, dict):
        raise ControlError("invalid", "the body must be a JSON object")
    return body


def _core(request: web.Request) -> SandboxCore:
    return request.app[CORE]


def _back(error: str = "") -> web.HTTPSeeOther:
    """For a form post from the page: back to the page, with the error if there was one."""
    return web.HTTPSeeOther("/sandbox/" + (f"?{urlencode({'error': error})}" if error else ""))


@routes.get("/sandbox")
async def page_redirect(request: web.Request) -> web.Response:
    """The page lives at `/sandbox/`."""
    raise web.HTTPFound("/sandbox/")


@routes.get("/sandbox/")
async def page(request: web.Request) -> web.Response:
    """Pending instances with their form values and Approve/Reject buttons; sent messages."""
    core = _core(request)
    instances = list(core.workflow.instances.values())
    pending = [i for i in instances if i.status == "RUNNING"]
    finished = [i for i in reversed(instances) if i.status != "RUNNING"][:50]
    html = (
        request.app[TEMPLATES]
        .get_template("page.html.j2")
        .render(
            base_url=core.base_url,
            pending=[i.to_control(core.page_url(i.instance_id)) for i in pending],
            finished=[i.to_control(core.page_url(i.instance_id)) for i in finished],
            messages=[m.to_json() for m in reversed(core.chat.messages[-100:])],
            stats=core.stats(),
            error=request.query.get("error", ""),
            approver=core.options.default_approver,
        )
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8")


@routes.get("/sandbox/instances")
async def instances(request: web.Request) -> web.Response:
    """Every instance with status, result, form values and tasks."""
    core = _core(request)
    return web.json_response(
        [i.to_control(core.page_url(i.instance_id)) for i in core.workflow.instances.values()]
    )


@routes.post("/sandbox/instances/{instance_id}/approve")
async def approve(request: web.Request) -> web.Response:
    """Agree the current task (`{"userId", "remark"}` optional) as the approver would."""
    return await _decide(request, agree=True)


@routes.post("/sandbox/instances/{instance_id}/refuse")
async def refuse(request: web.Request) -> web.Response:
    """Refuse the current task, which ends the instance with `refuse`."""
    return await _decide(request, agree=False)


async def _decide(request: web.Request, *, agree: bool) -> web.Response:
    core = _core(request)
    form = request.content_type == _FORM
    body = await _body(request)
    user_id, remark = body.get("userId") or None, body.get("remark") or ""
    if not isinstance(user_id, str | None) or not isinstance(remark, str):
        raise ControlError("invalid", "userId and remark must be strings")
    try:
        instance = core.workflow.decide(request.match_info["instance_id"], agree, user_id, remark)
    except ControlError as exc:
        if form:
            raise _back(exc.message) from exc
        raise
    if form:
        raise _back()
    return web.json_response(instance.to_control(core.page_url(instance.instance_id)))


@routes.post("/sandbox/chat")
async def chat(request: web.Request) -> web.Response:
    """A robot message to the bot; answers `{"replies": [...]}` with what the bot sent back."""
    core = _core(request)
    form = request.content_type == _FORM
    body = await _body(request)
    sender, text = body.get("senderStaffId"), body.get("text")
    if not isinstance(sender, str) or not sender or not isinstance(text, str):
        raise ControlError("invalid", "senderStaffId and text are required strings")
    wait = body.get("wait")
    if wait is not None and (isinstance(wait, bool) or not isinstance(wait, int | float)):
        raise ControlError("invalid", "wait must be a number of seconds")
    try:
        result = await core.chat.deliver(
            sender,
            text,
            conversation_type=str(body.get("conversationType", "1")),
            conversation_id=body.get("conversationId") or None,
            wait=float(wait) if wait is not None else None,
        )
    except ControlError as exc:
        if form:
            raise _back(exc.message) from exc
        raise
    if form:
        raise _back()
    return web.json_response(result)


@routes.get("/sandbox/messages")
async def messages(request: web.Request) -> web.Response:
    """Robot, group, session-webhook, work-notification and card messages the bot sent."""
    return web.json_response([m.to_json() for m in _core(request).chat.messages])


@routes.get("/sandbox/events")
async def events(request: web.Request) -> web.Response:
    """Every event emitted, with its delivery state."""
    return web.json_response([e.to_json() for e in _core(request).bus.events])


@routes.post("/sandbox/events/{event_id}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    """Push an event once more (a duplicate, as DingTalk may send)."""
    try:
        record = _core(request).bus.duplicate(request.match_info["event_id"])
    except KeyError as exc:
        raise ControlError("not_found", "no such event", 404) from exc
    return web.json_response(record.to_json())


@routes.get("/sandbox/stats")
async def stats(request: web.Request) -> web.Response:
    """Calls per API, throttling, events, stream connections, callbacks, tokens."""
    return web.json_response(_core(request).stats())


@routes.get("/sandbox/faults")
async def get_faults(request: web.Request) -> web.Response:
    """The injected faults and the limits."""
    return web.json_response(faults_json(_core(request)))


@routes.post("/sandbox/faults")
async def set_faults(request: web.Request) -> web.Response:
    """Change faults and limits at run time (camelCase fields; `reset: true` clears faults)."""
    return web.json_response(apply_faults(_core(request), await _body(request)))


@routes.post("/sandbox/token/invalidate")
async def invalidate_token(request: web.Request) -> web.Response:
    """Make current access tokens fail (`{"appKey"}` for one app), forcing a refresh."""
    app_key = (await _body(request)).get("appKey") or None
    return web.json_response({"invalidated": _core(request).tokens.invalidate(app_key)})


@routes.post("/sandbox/connections/disconnect")
async def disconnect(request: web.Request) -> web.Response:
    """Send `disconnect` to every stream connection; each closes after the delay."""
    return web.json_response({"disconnected": _core(request).gateway.disconnect_all()})


@routes.post("/sandbox/connections/drop")
async def drop(request: web.Request) -> web.Response:
    """Cut every stream connection at once, without `disconnect` (unacked pushes redeliver)."""
    return web.json_response({"dropped": _core(request).gateway.drop_all()})


@routes.get("/sandbox/callback")
async def get_callback(request: web.Request) -> web.Response:
    """The HTTP-callback settings and counters."""
    return web.json_response(_core(request).push.to_json())


@routes.post("/sandbox/callback")
async def set_callback(request: web.Request) -> web.Response:
    """`{"url","token","aesKey","ownerKey"}` sends events over HTTP; `{"url": null}`, the stream."""
    core = _core(request)
    body = await _body(request)
    if body.get("url") is None:
        core.push.disable()
        return web.json_response(core.push.to_json())
    values = [body.get(k) for k in ("url", "token", "aesKey")]
    owner = body.get("ownerKey")
    if not all(isinstance(v, str) and v for v in values) or not isinstance(owner, str | None):
        raise ControlError("invalid", "url, token and aesKey are required strings")
    try:
        core.push.configure(str(values[0]), str(values[1]), str(values[2]), owner)
    except (ValueError, CryptoError) as exc:
        raise ControlError("invalid", str(exc)) from exc
    return web.json_response(core.push.to_json())


@routes.post("/sandbox/callback/check")
async def check_callback(request: web.Request) -> web.Response:
    """Run the `check_url` handshake against the configured URL."""
    push = _core(request).push
    if not push.enabled:
        raise ControlError("not_configured", "no callback URL is set", 409)
    ok = await push.check_url()
    return web.json_response({"ok": ok, "error": "" if ok else push.last_error})
