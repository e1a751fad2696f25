"""DingTalk's token, workflow and stream-gateway endpoints (spec §2, §3, §5.1)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from bot.sandbox import parse
from bot.sandbox.errors import ApiError, OapiError, invalid
from bot.sandbox.flow import NewInstance
from bot.sandbox.middleware import APP_KEY, CORE, api, json_body
from bot.sandbox.records import Node

routes = web.RouteTableDef()
_STATUSES = frozenset({"RUNNING", "COMPLETED", "TERMINATED", "NEW", "CANCELED"})
_FORM_KEYS = ("id", "name", "value", "extValue", "componentType", "bizAlias")


@routes.post("/v1.0/oauth2/accessToken", name=api("POST /v1.0/oauth2/accessToken", token_call=True))
async def access_token(request: web.Request) -> web.Response:
    """`{"appKey","appSecret"}` → `{"accessToken","expireIn"}`; the same token while valid."""
    core = request.app[CORE]
    body = parse.obj(await json_body(request))
    if not core.credentials_ok(body.get("appKey"), body.get("appSecret")):
        raise ApiError("invalidClientIdOrSecret", "无效的clientId或者clientSecret")
    token = core.tokens.issue(str(body["appKey"]))
    return web.json_response({"accessToken": token.value, "expireIn": core.tokens.ttl})


@routes.get("/gettoken", name=api("GET /gettoken", old=True, token_call=True))
async def old_token(request: web.Request) -> web.Response:
    """Old API: `?appkey=&appsecret=` → `{"errcode":0,"access_token","expires_in"}`."""
    core = request.app[CORE]
    key, secret = request.query.get("appkey"), request.query.get("appsecret")
    if not core.credentials_ok(key, secret):
        raise OapiError(40001, "不合法的appkey或appsecret")
    token = core.tokens.issue(str(key))
    return web.json_response(
        {"errcode": 0, "access_token": token.value, "errmsg": "ok", "expires_in": core.tokens.ttl}
    )


@routes.post(
    "/v1.0/gateway/connections/open",
    name=api("POST /v1.0/gateway/connections/open", auth=False, throttled=False),
)
async def open_connection(request: web.Request) -> web.Response:
    """Stream step 1: `{"endpoint": "ws://…/connect", "ticket"}` (401 authFailed if refused)."""
    body = await json_body(request)
    return web.json_response(request.app[CORE].gateway.open(body, request.host))


@routes.post("/v1.0/workflow/processInstances", name=api("POST /v1.0/workflow/processInstances"))
async def create_instance(request: web.Request) -> web.Response:
    """Create an approval instance → `{"instanceId"}`."""
    core = request.app[CORE]
    new = _new_instance(parse.obj(await json_body(request)))
    templates = core.options.process_codes
    if templates:
        if new.process_code not in templates:
            raise ApiError("processCodeError", f"processCode {new.process_code} 不存在")
        labels = set(templates[new.process_code])
        unknown = [v["name"] for v in new.form if labels and v["name"] not in labels]
        if unknown:
            raise ApiError("formConverterError", f"表单中不存在组件: {', '.join(unknown)}")
    instance = core.workflow.create(new, request[APP_KEY])
    if core.faults.hold_create_reply:
        await asyncio.sleep(core.faults.hold_create_reply)
    return web.json_response({"instanceId": instance.instance_id})


@routes.get("/v1.0/workflow/processInstances", name=api("GET /v1.0/workflow/processInstances"))
async def get_instance(request: web.Request) -> web.Response:
    """One instance; note `success` is the string "true", as DingTalk sends it."""
    core = request.app[CORE]
    instance_id = request.query.get("processInstanceId", "")
    if not instance_id:
        raise invalid("processInstanceId is mandatory for this action")
    instance = core.workflow.get(instance_id)
    result = instance.to_api(core.page_url(instance_id))
    return web.json_response({"result": result, "success": "true"})


@routes.post(
    "/v1.0/workflow/processInstances/terminate",
    name=api("POST /v1.0/workflow/processInstances/terminate"),
)
async def terminate(request: web.Request) -> web.Response:
    """Revoke an instance: refused within the grace period and once it finished."""
    body = parse.obj(await json_body(request))
    request.app[CORE].workflow.terminate(
        parse.text(body, "processInstanceId"),
        parse.flag(body, "isSystem", True),
        parse.opt_text(body, "operatingUserId") or None,
        parse.opt_text(body, "remark"),
    )
    return web.json_response({"result": True, "success": True})


@routes.post(
    "/v1.0/workflow/processInstances/execute",
    name=api("POST /v1.0/workflow/processInstances/execute"),
)
async def execute(request: web.Request) -> web.Response:
    """Agree or refuse a task."""
    body = parse.obj(await json_body(request))
    result = parse.text(body, "result")
    if result not in ("agree", "refuse"):
        raise invalid("result must be agree or refuse")
    task_id = parse.integer(body, "taskId")
    assert task_id is not None
    request.app[CORE].workflow.execute(
        parse.text(body, "processInstanceId"),
        task_id,
        parse.text(body, "actionerUserId"),
        result == "agree",
        parse.opt_text(body, "remark"),
    )
    return web.json_response({"result": True, "success": True})


@routes.post(
    "/v1.0/workflow/processInstances/comments",
    name=api("POST /v1.0/workflow/processInstances/comments"),
)
async def comment(request: web.Request) -> web.Response:
    """Add a comment (an ADD_REMARK operation record)."""
    core = request.app[CORE]
    body = parse.obj(await json_body(request))
    instance = core.workflow.get(parse.text(body, "processInstanceId"))
    remark = parse.text(body, "text")
    if len(remark) > 1024:
        raise invalid("text can be at most 1024 characters")
    core.workflow.comment(instance, parse.text(body, "commentUserId"), remark)
    return web.json_response({"result": True, "success": True})


@routes.post(
    "/v1.0/workflow/processes/instanceIds/query",
    name=api("POST /v1.0/workflow/processes/instanceIds/query"),
)
async def list_ids(request: web.Request) -> web.Response:
    """Instance ids of a template, paged with `nextToken` (at most 20 a page)."""
    body = parse.obj(await json_body(request))
    start = parse.integer(body, "startTime")
    assert start is not None
    size = parse.integer(body, "maxResults", required=False) or 20
    if not 1 <= size <= 20:
        raise invalid("maxResults must be between 1 and 20")
    offset = parse.integer(body, "nextToken", required=False) or 0
    if offset < 0:
        raise invalid("nextToken is not valid")
    statuses = parse.strings(body, "statuses")
    if set(statuses) - _STATUSES:
        raise invalid(f"statuses must be among {', '.join(sorted(_STATUSES))}")
    ids = request.app[CORE].workflow.list_ids(
        parse.text(body, "processCode"),
        start,
        parse.integer(body, "endTime", required=False),
        statuses,
        parse.strings(body, "userIds", limit=10),
    )
    page: dict[str, Any] = {"list": ids[offset : offset + size]}
    if offset + size < len(ids):
        page["nextToken"] = str(offset + size)
    return web.json_response({"result": page, "success": True})


def _new_instance(body: dict[str, Any]) -> NewInstance:
    """Check a create request as DingTalk does; `details: []` is accepted and dropped."""
    process_code = parse.text(body, "processCode")
    originator = parse.text(body, "originatorUserId")
    dept_id = parse.integer(body, "deptId", required=False)
    raw_form = body.get("formComponentValues")
    if not isinstance(raw_form, list) or not raw_form:
        raise invalid("formComponentValues is mandatory for this action")
    if len(raw_form) > 150:
        raise invalid("formComponentValues can have at most 150 items")
    form = [_form_value(item) for item in raw_form]
    nodes = _nodes(body.get("approvers"))
    if not nodes and dept_id is None:
        raise invalid("deptId is mandatory when approvers is not given (-1 for the root)")
    return NewInstance(
        process_code, originator, dept_id, form, nodes, parse.strings(body, "ccList", limit=50)
    )


def _form_value(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ApiError("formConverterError", "each form value must be an object")
    name, value = item.get("name"), item.get("value")
    if not isinstance(name, str) or not name:
        raise ApiError("formConverterError", "a form value has no name")
    if not isinstance(value, str):
        # Every value travels as a string; lists and tables are JSON serialised into it.
        raise ApiError("formConverterError", f"the value of {name} must be a string")
    if len(value) > 65535:
        raise ApiError("formConverterError", f"the value of {name} is too long")
    stored = {k: item[k] for k in _FORM_KEYS if isinstance(item.get(k), str)}
    details = item.get("details")
    if details not in (None, []):
        if not isinstance(details, list):
            raise ApiError("formConverterError", f"details of {name} must be a list")
        stored["details"] = json.loads(json.dumps(details))
    return stored


def _nodes(raw: Any) -> list[Node]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 20:
        raise invalid("approvers must be a list of at most 20 nodes")
    nodes = []
    for item in raw:
        if not isinstance(item, dict):
            raise invalid("each approvers item must be an object")
        action = item.get("actionType", "NONE")
        if action not in ("AND", "OR", "NONE"):
            raise invalid("approvers.actionType must be AND, OR or NONE")
        users = parse.strings(item, "userIds")
        if not users:
            raise invalid("approvers.userIds must not be empty")
        nodes.append(Node(str(action), tuple(users)))
    return nodes
