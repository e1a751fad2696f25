"""Sending messages (spec §7): robot 1:1 and group, session webhooks, work notifications, cards."""

from __future__ import annotations

import itertools
import json
from typing import Any

from aiohttp import web

from bot.sandbox import parse
from bot.sandbox.chat import title_and_text
from bot.sandbox.core import SandboxCore
from bot.sandbox.crypto import dumps
from bot.sandbox.errors import ApiError, OapiError, invalid
from bot.sandbox.middleware import APP_KEY, CORE, api, json_body, request_id
from bot.sandbox.records import SentMessage

routes = web.RouteTableDef()
MSG_KEYS = frozenset(
    {"sampleText", "sampleMarkdown", "sampleImageMsg", "sampleLink", "sampleActionCard",
     "sampleActionCard2", "sampleActionCard3", "sampleActionCard4", "sampleActionCard5",
     "sampleActionCard6", "sampleAudio", "sampleFile", "sampleVideo"}
)  # fmt: skip
_REQUIRED_PARAMS = {"sampleText": ("content",), "sampleMarkdown": ("title", "text")}
_WORK_TYPES = frozenset({"text", "image", "voice", "file", "link", "oa", "markdown", "action_card"})
_task_ids = itertools.count(256271667526)


def _robot_message(core: SandboxCore, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """robotCode, msgKey and the decoded msgParam, checked as DingTalk checks them."""
    robot_code = parse.text(body, "robotCode", code="miss.param.robotCode")
    if core.options.robot_code is not None and robot_code != core.options.robot_code:
        raise ApiError("invalidParameter.robotCode.notExist", "robotCode不存在")
    msg_key = parse.text(body, "msgKey", code="miss.param.msgKey")
    if msg_key not in MSG_KEYS:
        raise ApiError("invalidParameter.msgKey.invalid", f"msgKey {msg_key} 无效")
    raw = body.get("msgParam")
    # msgParam is a JSON *string*; an object in its place is refused, as DingTalk does.
    param: Any = None
    if isinstance(raw, str):
        try:
            param = json.loads(raw)
        except ValueError:
            param = None
    if not isinstance(param, dict):
        raise ApiError("invalidParameter.msgParam.invalid", "msgParam必须是json格式")
    if len(str(raw).encode()) > 15000:
        raise ApiError("invalidParameter.msgParam.tooLong", "msgParam过长")
    missing = [k for k in _REQUIRED_PARAMS.get(msg_key, ()) if k not in param]
    if missing:
        raise ApiError("invalidParameter.msgParam.invalid", f"msgParam缺少 {', '.join(missing)}")
    return robot_code, msg_key, param


@routes.post(
    "/v1.0/robot/oToMessages/batchSend", name=api("POST /v1.0/robot/oToMessages/batchSend")
)
async def batch_send(request: web.Request) -> web.Response:
    """Robot 1:1 messages to at most 20 users; rejected and throttled users come back in-band."""
    core = request.app[CORE]
    body = parse.obj(await json_body(request))
    robot_code, msg_key, param = _robot_message(core, body)
    users = parse.strings(body, "userIds")
    if not users:
        raise ApiError("miss.param.userIds", "userIds is mandatory for this action")
    if len(users) > 20:
        raise invalid("userIds can have at most 20 items")
    invalid_ids = [u for u in users if u in core.options.invalid_staff_ids]
    limited = [u for u in users if u in core.options.flow_controlled_staff_ids]
    accepted = [u for u in users if u not in invalid_ids and u not in limited]
    key = core.chat.new_id("pqk")
    if accepted:
        title, text = title_and_text(msg_key, param)
        core.chat.record(
            SentMessage(
                key, "oto", core.clock(), text, title, msg_key, robot_code, accepted, raw=body
            )
        )
    return web.json_response(
        {
            "processQueryKey": key,
            "invalidStaffIdList": invalid_ids,
            "flowControlledStaffIdList": limited,
        }
    )


@routes.post("/v1.0/robot/groupMessages/send", name=api("POST /v1.0/robot/groupMessages/send"))
async def group_send(request: web.Request) -> web.Response:
    """A robot message to a group → `{"processQueryKey"}`."""
    core = request.app[CORE]
    body = parse.obj(await json_body(request))
    robot_code, msg_key, param = _robot_message(core, body)
    conversation = parse.text(body, "openConversationId", code="miss.param.openConversationId")
    key = core.chat.new_id("pqk")
    title, text = title_and_text(msg_key, param)
    core.chat.record(
        SentMessage(
            key,
            "group",
            core.clock(),
            text,
            title,
            msg_key,
            robot_code,
            conversation_id=conversation,
            raw=body,
        )
    )
    return web.json_response({"processQueryKey": key})


_SESSION = api("POST /robot/sendBySession", old=True, auth=False, throttled=False)


@routes.post("/robot/sendBySession", name=_SESSION)
async def session_webhook(request: web.Request) -> web.Response:
    """A chat reply: `{"errcode":0,"errmsg":"ok"}`, or 300001 once the session expired."""
    body = await json_body(request, old=True)
    answer = request.app[CORE].chat.session_send(request.query.get("session", ""), body)
    return web.json_response(answer)


@routes.post(
    "/topapi/message/corpconversation/asyncsend_v2",
    name=api("POST /topapi/message/corpconversation/asyncsend_v2", old=True),
)
async def work_notification(request: web.Request) -> web.Response:
    """Old API: a work notification → `{"errcode":0,"task_id"}`."""
    core = request.app[CORE]
    body = await json_body(request, old=True)
    if not isinstance(body, dict):
        raise OapiError(40035, "不合法的参数")
    if body.get("agent_id") in (None, ""):
        raise OapiError(40035, "缺少参数 agent_id")
    users = [u for u in str(body.get("userid_list") or "").split(",") if u]
    if len(users) > 100:
        raise OapiError(40035, "userid_list 最多100个")
    if (
        not users
        and str(body.get("to_all_user")).lower() != "true"
        and not body.get("dept_id_list")
    ):
        raise OapiError(40035, "缺少参数 userid_list")
    msg = body.get("msg")
    if isinstance(msg, str):  # a form-encoded request carries msg as a JSON string
        try:
            msg = json.loads(msg)
        except ValueError:
            msg = None
    if not isinstance(msg, dict) or msg.get("msgtype") not in _WORK_TYPES:
        raise OapiError(40035, "不合法的参数 msg")
    if len(dumps(msg).encode()) > 2048:
        raise OapiError(40035, "消息内容超过2048字节")
    kind = str(msg["msgtype"])
    inner = msg.get(kind)
    inner = inner if isinstance(inner, dict) else {}
    title = str(inner.get("title", ""))
    text = inner.get("text") or inner.get("content") or inner.get("markdown")
    task_id = next(_task_ids)
    core.chat.record(
        SentMessage(
            f"task{task_id}",
            "work_notification",
            core.clock(),
            text if isinstance(text, str) else dumps(inner),
            title,
            kind,
            user_ids=users,
            raw=body,
        )
    )
    answer = {"errcode": 0, "errmsg": "ok", "task_id": task_id, "request_id": request_id()}
    return web.json_response(answer)


@routes.post(
    "/v1.0/card/instances/createAndDeliver",
    name=api("POST /v1.0/card/instances/createAndDeliver"),
)
async def card_deliver(request: web.Request) -> web.Response:
    """An interactive card to a 1:1 robot chat or a group (kept as a `card` message)."""
    core = request.app[CORE]
    body = parse.obj(await json_body(request))
    template = parse.text(body, "cardTemplateId")
    track = parse.text(body, "outTrackId")
    space = parse.text(body, "openSpaceId")
    params = _card_params(body)
    space_type, _, space_id = space.rpartition(".")
    if space_type not in ("dtv1.card//IM_ROBOT", "dtv1.card//IM_GROUP") or not space_id:
        raise invalid("openSpaceId must be dtv1.card//IM_ROBOT.<userId> or IM_GROUP.<cid>")
    robot = space_type.endswith("IM_ROBOT")
    core.chat.record(
        SentMessage(
            track,
            "card",
            core.clock(),
            dumps(params),
            str(params.get("title", "")),
            template,
            str(request[APP_KEY]),
            [space_id] if robot else [],
            "" if robot else space_id,
            raw=body,
        )
    )
    result = {
        "spaceType": "IM_ROBOT" if robot else "IM_GROUP",
        "spaceId": space_id,
        "success": True,
        "carrierId": core.chat.new_id("carrier"),
    }
    return web.json_response(
        {"success": True, "result": {"outTrackId": track, "deliverResults": [result]}}
    )


@routes.put("/v1.0/card/instances", name=api("PUT /v1.0/card/instances"))
async def card_update(request: web.Request) -> web.Response:
    """Update a card's data by outTrackId."""
    core = request.app[CORE]
    body = parse.obj(await json_body(request))
    track = parse.text(body, "outTrackId")
    card = next((m for m in core.chat.messages if m.kind == "card" and m.message_id == track), None)
    if card is None:
        raise ApiError("card.notExist", f"card {track} 不存在")
    params = _card_params(body)
    card.text, card.title = dumps(params), str(params.get("title", card.title))
    card.raw = {**card.raw, "update": body}
    return web.json_response({"success": True, "result": True})


def _card_params(body: dict[str, Any]) -> dict[str, Any]:
    """`cardData.cardParamMap`: a map of strings to strings."""
    data = body.get("cardData")
    params = data.get("cardParamMap") if isinstance(data, dict) else None
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise invalid("cardData.cardParamMap must map strings to strings")
    return params
