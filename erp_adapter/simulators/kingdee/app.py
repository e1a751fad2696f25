"""The simulated K3Cloud's HTTP side: `POST {server}/<ServiceName>.common.kdsvc`."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from erp_adapter.simulators.kingdee.auth import Auth, AuthError, Identity
from erp_adapter.simulators.kingdee.service import QUERY_OPS, FormService, failure

SESSION_LOST = "会话信息已丢失，请重新登录"
_SUFFIX = ".common.kdsvc"
_LOGIN_OPS = {"validateuser", "loginbysign", "loginbyappsecret", "loginbyappsecret2"}
_FORM_OPS = QUERY_OPS | {"view", "save", "submit", "audit", "unaudit", "cancelassign"}
_FORM_OPS |= {"delete", "excuteoperation", "workflowaudit"}
_POSITIONAL = {
    "validateuser": ["acctid", "username", "password", "lcid"],
    "loginbysign": ["acctid", "username", "appid", "timestamp", "sign", "lcid"],
    "loginbyappsecret": ["acctid", "username", "appid", "appsecret", "lcid"],
    "loginbyappsecret2": ["acctid", "username", "appid", "appsecret", "lcid", "iskickoff"],
    "executebillquery": ["data"],
    "billquery": ["data"],
    "workflowaudit": ["data"],
    "excuteoperation": ["formid", "opnumber", "data"],
}


@dataclass
class Faults:
    """What the tests inject: HTTP failures, slow replies, a log of calls."""

    fail_next: int = 0
    fail_status: int = 500
    delay_s: float = 0.0
    calls: list[tuple[str, Any]] = field(default_factory=list)


class HttpFront:
    """Parses the three body shapes, authenticates, and dispatches by service name."""

    def __init__(self, auth: Auth, forms: FormService, faults: Faults) -> None:
        self.auth = auth
        self.forms = forms
        self.faults = faults

    def app(self) -> web.Application:
        """The aiohttp application (any path ending in `.common.kdsvc`)."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One call."""
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if self.faults.fail_next > 0:
            self.faults.fail_next -= 1
            return web.Response(status=self.faults.fail_status, text="<html>Server Error</html>")
        last = request.path.rsplit("/", 1)[-1]
        if not last.lower().endswith(_SUFFIX):
            raise web.HTTPNotFound()
        service = last[: -len(_SUFFIX)]
        op = service.rsplit(".", 1)[-1].lower()
        if op not in _LOGIN_OPS | _FORM_OPS:
            raise web.HTTPNotFound(text=f"service {service} not found")
        try:
            args = await self._args(request, op)
        except ValueError as exc:
            return web.json_response(failure(op, f"请求参数格式不正确: {exc}", 8), dumps=_dumps)
        self.faults.calls.append((op, args.get("data")))
        if op in _LOGIN_OPS:
            return self._login(op, args)
        identity, sid = self._identify(request)
        if isinstance(identity, str):
            return web.json_response(
                failure(op, identity, 1 if identity == SESSION_LOST else 11), dumps=_dumps
            )
        body = self.forms.call(op, args.get("formid"), args.get("opnumber"), args.get("data"))
        response = web.json_response(body, dumps=_dumps)
        if sid is not None:
            response.set_cookie("kdservice-sessionid", sid, path="/")
        return response

    async def _args(self, request: web.Request, op: str) -> dict[str, Any]:
        """Named `{"formid", "data"}`, positional `{"parameters": [...]}` or form-encoded."""
        if request.content_type == "application/x-www-form-urlencoded":
            raw: Any = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        else:
            text = await request.text()
            raw = json.loads(text) if text.strip() else {}
        if not isinstance(raw, dict):
            raise ValueError("body is not a JSON object")
        named = {k.lower(): v for k, v in raw.items()}
        params = named.get("parameters")
        if isinstance(params, str):
            params = json.loads(params)
        if isinstance(params, list):
            names = _POSITIONAL.get(op, ["formid", "data"])
            named = dict(zip(names, params, strict=False))
        data = named.get("data")
        if isinstance(data, str):
            named["data"] = json.loads(data) if data.strip() else {}
        return named

    def _identify(self, request: web.Request) -> tuple[Identity | str, str | None]:
        """The caller, from signed headers or a session; else the message to refuse it with."""
        if "X-Kd-Appkey" in request.headers:
            try:
                identity = self.auth.verify_headers(request.headers, request.path, time.time())
            except AuthError as exc:
                return str(exc), None
            sid = request.cookies.get("kdservice-sessionid")
            if sid not in self.auth.sessions:
                sid = self.auth.open_session(identity)
            return identity, sid
        sid = request.headers.get("kdservice-sessionid") or request.cookies.get(
            "kdservice-sessionid"
        )
        found = self.auth.sessions.get(sid or "")
        return (found, None) if found is not None else (SESSION_LOST, None)

    def _login(self, op: str, args: dict[str, Any]) -> web.Response:
        acct, user = str(args.get("acctid", "")), str(args.get("username", ""))
        try:
            if op == "validateuser":
                self.auth.validate_user(acct, user, str(args.get("password", "")))
            elif op == "loginbysign":
                ts, sign = str(args.get("timestamp", "")), str(args.get("sign", ""))
                self.auth.login_by_sign(acct, user, str(args.get("appid", "")), ts, sign)
            else:
                secret = str(args.get("appsecret", ""))
                self.auth.login_by_secret(acct, user, str(args.get("appid", "")), secret)
        except AuthError as exc:
            return web.json_response(_login_body(None, str(exc), user), dumps=_dumps)
        sid = self.auth.open_session(Identity(acct, user, int(args.get("lcid", 2052) or 2052)))
        response = web.json_response(_login_body(sid, None, user), dumps=_dumps)
        response.set_cookie("kdservice-sessionid", sid, path="/")
        response.set_cookie("ASP.NET_SessionId", sid[:24], path="/", httponly=True)
        return response


def _login_body(sid: str | None, error: str | None, user: str) -> dict[str, Any]:
    context = None
    if sid is not None:
        context = {
            "UserLocale": "zh-CN",
            "DBid": "5f0000000000aa",
            "SessionId": sid,
            "UserId": 100001,
            "UserName": user,
            "DisplayVersion": "8.2.1000.1",
            "CurrentOrganizationInfo": {"ID": 100001, "Name": "总部"},
        }
    return {
        "Message": error,
        "MessageCode": "CheckPasswordPolicy" if sid else None,
        "LoginResultType": 1 if sid else -1,
        "Context": context,
        "KDSVCSessionId": sid,
        "FormId": None,
        "RedirectFormParam": None,
        "FormInputObject": None,
        "ErrorStackTrace": None,
        "Lcid": 0,
        "AccessToken": None,
        "KdAccessResult": None,
        "IsSuccessByAPI": sid is not None,
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
