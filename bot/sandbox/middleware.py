"""What every DingTalk call goes through: accounting, faults, token, throttling, error shapes."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.sandbox.core import SandboxCore
from bot.sandbox.errors import ApiError, ControlError, OapiError
from bot.sandbox.limits import Outcome, Verdict

log = logging.getLogger(__name__)
CORE = web.AppKey("sandbox_core", SandboxCore)
APP_KEY = web.RequestKey("sandbox_app_key", str)
"""Request key: the app the call was authenticated as."""

_FAULT_CODES = {
    500: ("systemError", "系统错误"),
    502: ("BadGateway", "Bad Gateway"),
    503: ("ServiceUnavailable", "Service Unavailable"),
    504: ("GatewayTimeout", "Gateway Timeout"),
}


@dataclass(frozen=True)
class ApiSpec:
    """How the gateway treats one DingTalk API."""

    name: str
    """`METHOD /path`, the key of call accounting and of the QPS window."""
    old: bool = False
    """Old API (oapi): errors are HTTP 200 with errcode, the token is `?access_token=`."""
    auth: bool = True
    token_call: bool = False
    """Fetches a token: never needs one, never counts against the monthly quota."""
    throttled: bool = True


SPECS: dict[str, ApiSpec] = {}


def api(name: str, **kwargs: Any) -> str:
    """Register an API spec; the route name to give its route."""
    route_name = "dt:" + "".join(ch if ch.isalnum() else "_" for ch in name)
    SPECS[route_name] = ApiSpec(name, **kwargs)
    return route_name


def request_id() -> str:
    """A request id in DingTalk's style."""
    return secrets.token_hex(16).upper()


def new_error(code: str, message: str, status: int, rid: str) -> web.Response:
    """A new-API error: `{"code","message","requestid"}` with the x-acs-* headers."""
    headers = {"x-acs-request-id": rid, "x-acs-trace-id": secrets.token_hex(16)}
    body = {"code": code, "message": message, "requestid": rid}
    return web.json_response(body, status=status, headers=headers)


def old_error(errcode: int, errmsg: str, rid: str) -> web.Response:
    """An old-API error: HTTP 200 with `{"errcode","errmsg","request_id"}`."""
    return web.json_response({"errcode": errcode, "errmsg": errmsg, "request_id": rid})


async def json_body(request: web.Request, *, old: bool = False, optional: bool = False) -> Any:
    """The JSON body (old API: JSON or a form); a 400 in the API's shape when it is missing."""
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        if old:
            raise OapiError(40035, "缺少参数 body")
        raise ApiError("invalidParameter", "body is mandatory for this action")
    if old and request.content_type == "application/x-www-form-urlencoded":
        return dict(await request.post())
    try:
        return json.loads(raw)
    except ValueError as exc:
        if old:
            raise OapiError(40035, "不合法的参数: body is not JSON") from exc
        # What DingTalk answers to a form-encoded token request (spec §1).
        raise ApiError("invalidParameter", "body is mandatory for this action") from exc


@web.middleware
async def dingtalk(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run a DingTalk API call through the gateway's checks; other routes pass through."""
    name = request.match_info.route.name
    spec = SPECS.get(name) if name else None
    if spec is None:
        return await _other(request, handler)
    core = request.app[CORE]
    rid = request_id()
    outcome: Outcome = "error"
    try:
        fault = await _fault(core, request)
        if fault is not None:
            outcome = "fault"
            return fault
        app_key = await _authenticate(core, spec, request)
        if spec.throttled:
            rate = core.faults.throttle_rate
            injected = bool(rate) and core.rng.random() < rate
            verdict: Verdict = (
                "qps"
                if injected
                else core.limiter.admit(app_key, spec.name, counted=not spec.token_call)
            )
            if verdict == "qps":
                outcome = "throttled"
                return _throttled(spec, rid)
            if verdict == "quota":
                outcome = "quota"
                if spec.old:
                    return old_error(90020, "当前企业调用该接口超过了月度调用总量", rid)
                return new_error(
                    "Forbidden.AccessDenied.ApiCountLimitForOrg",
                    "当前企业的接口月度调用总量已用完",
                    403,
                    rid,
                )
        request[APP_KEY] = app_key
        response = await handler(request)
        outcome = "ok" if response.status < 400 else "error"
        return response
    except ApiError as exc:
        return new_error(exc.code, exc.message, exc.status, rid)
    except OapiError as exc:
        return old_error(exc.errcode, exc.errmsg, rid)
    except Exception:
        log.exception("sandbox: %s %s failed", request.method, request.path)
        return new_error("systemError", "系统错误", 500, rid)
    finally:
        core.calls.record(spec.name, outcome)


def _throttled(spec: ApiSpec, rid: str) -> web.Response:
    """DingTalk's answer to a call over the per-app, per-API QPS limit (spec section 8.2)."""
    if spec.old:
        return old_error(90018, "当前企业对应的应用调用该接口超过限流阈值", rid)
    return new_error(
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        "调用该接口触发了应用维度限流, 请稍后重试",
        403,
        rid,
    )


async def _other(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Control routes answer ControlError as JSON; unknown /v1.0 paths as DingTalk does."""
    try:
        return await handler(request)
    except ControlError as exc:
        return web.json_response(exc.to_json(), status=exc.status)
    except web.HTTPNotFound:
        if request.path.startswith("/v1.0/"):
            return new_error(
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
                404,
                request_id(),
            )
        raise


async def _fault(core: SandboxCore, request: web.Request) -> web.Response | None:
    """Injected latency, hangs and 5xx answers (a hang outlasts any client timeout, then 504)."""
    faults = core.faults
    if faults.latency:
        await asyncio.sleep(faults.latency)
    if faults.hang_rate and core.rng.random() < faults.hang_rate:
        await asyncio.sleep(faults.hang_seconds)
        return new_error("GatewayTimeout", "Gateway Timeout", 504, request_id())
    if faults.error_rate and core.rng.random() < faults.error_rate:
        code, message = _FAULT_CODES[faults.error_status]
        return new_error(code, message, faults.error_status, request_id())
    return None


async def _authenticate(core: SandboxCore, spec: ApiSpec, request: web.Request) -> str:
    """The calling app: from its token, or from the credentials of a token call."""
    if spec.token_call:
        if spec.old:
            return request.query.get("appkey", "")
        body = await json_body(request, optional=True)
        key = body.get("appKey") if isinstance(body, dict) else None
        return key if isinstance(key, str) else ""
    if not spec.auth:
        return ""
    if spec.old:
        value = request.query.get("access_token", "")
        if not value:
            raise OapiError(41001, "缺少access_token参数")
        app_key, expired = core.tokens.check(value)
        if app_key is None:
            raise (
                OapiError(42001, "access_token超时")
                if expired
                else OapiError(40014, "不合法的access_token")
            )
        return app_key
    app_key, _ = core.tokens.check(request.headers.get("x-acs-dingtalk-access-token", ""))
    if app_key is None:
        raise ApiError("InvalidAuthentication", "不合法的access_token", 400)
    return app_key
