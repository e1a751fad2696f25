"""Sending messages: robot 1:1 and group, cards, and chat through the control API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.sandbox import Sandbox
from tests.test_sandbox_support import APP_KEY, Api, FakeClock, RawStream, fast

BATCH = "/v1.0/robot/oToMessages/batchSend"
GROUP = "/v1.0/robot/groupMessages/send"
BOT = [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]
MARKDOWN = json.dumps(
    {"title": "采购审批", "text": "**PO-2026-000123** 待审批"}, ensure_ascii=False
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sandbox(clock: FakeClock) -> AsyncIterator[Sandbox]:
    options = fast(
        invalid_staff_ids=frozenset({"ghost"}), flow_controlled_staff_ids=frozenset({"busy"})
    )
    async with Sandbox(options, clock=clock) as sandbox:
        yield sandbox


@pytest.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        client = Api(session, sandbox.url)
        await client.login()
        yield client


def send(
    users: list[str], param: object = MARKDOWN, key: str = "sampleMarkdown"
) -> dict[str, object]:
    return {"robotCode": APP_KEY, "userIds": users, "msgKey": key, "msgParam": param}


async def test_batch_send_records_the_message(api: Api, sandbox: Sandbox) -> None:
    status, body = await api.call("POST", BATCH, send(["u1", "ghost", "busy", "u2"]))
    assert status == 200
    assert body["invalidStaffIdList"] == ["ghost"]
    assert body["flowControlledStaffIdList"] == ["busy"]
    assert isinstance(body["processQueryKey"], str) and body["processQueryKey"]
    [message] = await sandbox.messages()
    assert (message["kind"], message["userIds"], message["msgType"]) == (
        "oto",
        ["u1", "u2"],
        "sampleMarkdown",
    )
    assert (message["title"], message["text"]) == ("采购审批", "**PO-2026-000123** 待审批")


async def test_batch_send_limits(api: Api) -> None:
    status, body = await api.call("POST", BATCH, send([f"u{i}" for i in range(21)]))
    assert (status, body["code"]) == (400, "invalidParameter")
    assert (await api.call("POST", BATCH, send([f"u{i}" for i in range(20)])))[0] == 200
    # msgParam must be a JSON *string*, not an object.
    status, body = await api.call("POST", BATCH, send(["u1"], {"title": "t", "text": "x"}))
    assert (status, body["code"]) == (400, "invalidParameter.msgParam.invalid")
    status, body = await api.call("POST", BATCH, send(["u1"], "not json"))
    assert body["code"] == "invalidParameter.msgParam.invalid"
    status, body = await api.call("POST", BATCH, send(["u1"], key="fancy"))
    assert body["code"] == "invalidParameter.msgKey.invalid"
    status, body = await api.call("POST", BATCH, {**send(["u1"]), "robotCode": ""})
    assert body["code"] == "miss.param.robotCode"


async def test_group_send(api: Api, sandbox: Sandbox) -> None:
    body = {
        "robotCode": APP_KEY,
        "openConversationId": "cidGROUP==",
        "msgKey": "sampleText",
        "msgParam": json.dumps({"content": "钉钉，让进步发生"}),
    }
    status, answer = await api.call("POST", GROUP, body)
    assert status == 200 and set(answer) == {"processQueryKey"}
    [message] = await sandbox.messages()
    assert (message["kind"], message["conversationId"], message["text"]) == (
        "group",
        "cidGROUP==",
        "钉钉，让进步发生",
    )
    status, answer = await api.call("POST", GROUP, {**body, "msgParam": "x" * 15001})
    assert answer["code"] == "invalidParameter.msgParam.invalid"
    long = json.dumps({"content": "x" * 15001})
    assert (await api.call("POST", GROUP, {**body, "msgParam": long}))[1]["code"] == (
        "invalidParameter.msgParam.tooLong"
    )


async def test_cards_are_recorded_and_updated(api: Api, sandbox: Sandbox) -> None:
    card = {
        "cardTemplateId": "tpl.schema",
        "outTrackId": "card-1",
        "openSpaceId": "dtv1.card//IM_ROBOT.u1",
        "cardData": {"cardParamMap": {"title": "待审批", "status": "pending"}},
        "callbackType": "STREAM",
    }
    status, body = await api.call("POST", "/v1.0/card/instances/createAndDeliver", card)
    assert status == 200 and body["success"] is True
    assert body["result"]["deliverResults"][0]["spaceType"] == "IM_ROBOT"
    update = {"outTrackId": "card-1", "cardData": {"cardParamMap": {"status": "approved"}}}
    assert (await api.call("PUT", "/v1.0/card/instances", update))[1] == {
        "success": True,
        "result": True,
    }
    [message] = await sandbox.messages()
    assert message["kind"] == "card" and json.loads(message["text"]) == {"status": "approved"}


async def test_chat_reply_through_the_session_webhook(api: Api, sandbox: Sandbox) -> None:
    async with RawStream(api.session, sandbox.url, BOT) as bot:
        chat = asyncio.create_task(sandbox.deliver_chat("manager1", "pending"))
        frame = await bot.frame("CALLBACK")
        assert frame["headers"]["topic"] == "/v1.0/im/bot/messages/get"
        data = json.loads(frame["data"])
        assert data["text"] == {"content": " pending"}  # the leading space DingTalk leaves
        assert (data["conversationType"], data["senderStaffId"], data["msgtype"]) == (
            "1",
            "manager1",
            "text",
        )
        assert data["robotCode"] == APP_KEY  # an internal app's robotCode is its client id
        assert data["sessionWebhook"].startswith(sandbox.url + "/robot/sendBySession?session=")
        reply = {
            "msgtype": "markdown",
            "markdown": {"title": "待审批", "text": "1 项"},
            "at": {"atUserIds": ["manager1"]},
        }
        async with api.session.post(data["sessionWebhook"], json=reply) as resp:
            assert await resp.json() == {"errcode": 0, "errmsg": "ok"}
        result = await chat
    assert result["msgId"] == data["msgId"]
    [answer] = result["replies"]
    assert (answer["kind"], answer["title"], answer["text"]) == ("session", "待审批", "1 项")


async def test_chat_reply_as_a_robot_message_counts_too(api: Api, sandbox: Sandbox) -> None:
    async with RawStream(api.session, sandbox.url, BOT) as bot:
        chat = asyncio.create_task(sandbox.deliver_chat("u7", "help"))
        await bot.frame("CALLBACK")
        assert (await api.call("POST", BATCH, send(["u7"])))[0] == 200
        assert (await api.call("POST", BATCH, send(["someone-else"])))[0] == 200
        result = await chat
    assert [r["userIds"] for r in result["replies"]] == [["u7"]]


async def test_group_chat_message(api: Api, sandbox: Sandbox) -> None:
    async with RawStream(api.session, sandbox.url, BOT) as bot:
        chat = asyncio.create_task(
            sandbox.deliver_chat("u7", "stats", conversation_type="2", wait=0.2)
        )
        data = json.loads((await bot.frame("CALLBACK"))["data"])
        assert data["conversationType"] == "2" and data["conversationTitle"]
        assert data["isInAtList"] is True
        assert (await chat)["replies"] == []


async def test_session_webhook_expires(api: Api, sandbox: Sandbox, clock: FakeClock) -> None:
    async with RawStream(api.session, sandbox.url, BOT) as bot:
        chat = asyncio.create_task(sandbox.deliver_chat("u1", "hi", wait=0.1))
        data = json.loads((await bot.frame("CALLBACK"))["data"])
        await chat
    assert data["sessionWebhookExpiredTime"] == data["createAt"] + 5400 * 1000
    clock.advance(5401)
    text = {"msgtype": "text", "text": {"content": "late"}}
    async with api.session.post(data["sessionWebhook"], json=text) as resp:
        assert resp.status == 200
        assert await resp.json() == {"errcode": 300001, "errmsg": "session 不存在"}


async def test_chat_needs_a_connected_bot(api: Api, sandbox: Sandbox) -> None:
    body = {"senderStaffId": "u1", "text": "help"}
    async with api.session.post(sandbox.url + "/sandbox/chat", json=body) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"] == "bot_not_connected"
