"""The robot's side: chat messages into the bot (§5.6), session webhooks, and what the bot sent."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.sandbox.connection import Connection
from bot.sandbox.errors import ControlError
from bot.sandbox.gateway import Gateway
from bot.sandbox.options import Clock, SandboxOptions
from bot.sandbox.records import SentMessage, ms

BOT_TOPIC = "/v1.0/im/bot/messages/get"
SESSION_GONE = {"errcode": 300001, "errmsg": "session 不存在"}


@dataclass(frozen=True)
class ChatSession:
    """The sessionWebhook of one incoming chat message."""

    msg_id: str
    sender: str
    conversation_id: str
    expires_at: float


def _lwcp(value: str) -> str:
    """An id in the encrypted `$:LWCP_v1:$...` form DingTalk uses for senderId and the like."""
    return "$:LWCP_v1:$" + base64.b64encode(value.encode()).decode()


def _conversation_id(conversation_type: str, sender: str) -> str:
    """A stable `cid…==` conversation id per sender and chat kind, in DingTalk's look."""
    tail = base64.b64encode(f"{conversation_type}:{sender}".encode()).decode().rstrip("=")
    return f"cid{tail}=="


def title_and_text(kind: str, param: Any) -> tuple[str, str]:
    """The readable title and text of a robot msgParam or a session-webhook body."""
    if not isinstance(param, dict):
        return "", json.dumps(param, ensure_ascii=False)
    if kind in ("sampleText", "text"):
        inner = param.get("text", param) if kind == "text" else param
        content = inner.get("content", "") if isinstance(inner, dict) else ""
        return "", str(content)
    if kind in ("markdown", "actionCard", "link"):
        inner = param.get(kind)
        param = inner if isinstance(inner, dict) else {}
    if "text" in param or "title" in param:
        return str(param.get("title", "")), str(param.get("text", ""))
    return "", json.dumps(param, ensure_ascii=False)


class Chat:
    """Delivers chat messages to the bot and collects what it sends back."""

    def __init__(
        self,
        options: SandboxOptions,
        clock: Clock,
        gateway: Gateway,
        base_url: Callable[[], str],
    ) -> None:
        self._options = options
        self._clock = clock
        self._gateway = gateway
        self._base_url = base_url
        self.sessions: dict[str, ChatSession] = {}
        self.messages: list[SentMessage] = []
        self.received = 0
        self._changed = asyncio.Event()

    def record(self, message: SentMessage) -> SentMessage:
        """Keep a message the bot sent and wake whoever waits for replies."""
        self.messages.append(message)
        self._changed.set()
        return message

    def new_id(self, prefix: str = "msg") -> str:
        """A message or query key in DingTalk's opaque style."""
        return f"{prefix}{secrets.token_urlsafe(18)}"

    def session_send(self, session: str, body: Any) -> dict[str, Any]:
        """A reply posted to a sessionWebhook: `{"errcode":0}`, or 300001 once it expired."""
        found = self.sessions.get(session)
        if found is None or found.expires_at <= self._clock():
            return dict(SESSION_GONE)
        if not isinstance(body, dict) or not isinstance(body.get("msgtype"), str):
            return {"errcode": 40035, "errmsg": "缺少参数 msgtype"}
        kind = str(body["msgtype"])
        title, text = title_and_text(kind, body)
        at = body.get("at")
        at_users = at.get("atUserIds") if isinstance(at, dict) else None
        self.record(
            SentMessage(
                self.new_id(),
                "session",
                self._clock(),
                text,
                title,
                kind,
                user_ids=[found.sender],
                conversation_id=found.conversation_id,
                reply_to=found.msg_id,
                raw={**body, "atUserIds": at_users or []},
            )
        )
        return {"errcode": 0, "errmsg": "ok"}

    async def deliver(
        self,
        sender: str,
        text: str,
        *,
        conversation_type: str = "1",
        conversation_id: str | None = None,
        conversation_title: str = "沙箱群",
        wait: float | None = None,
    ) -> dict[str, Any]:
        """Push a text message to the bot; the bot's replies to it within `wait` seconds."""
        if conversation_type not in ("1", "2"):
            raise ControlError("invalid", "conversationType must be '1' (1:1) or '2' (group)")
        now = self._clock()
        msg_id = self.new_id()
        cid = conversation_id or _conversation_id(conversation_type, sender)
        session = secrets.token_urlsafe(24)
        self.sessions[session] = ChatSession(
            msg_id, sender, cid, now + self._options.session_webhook_ttl
        )

        def build(conn: Connection) -> dict[str, Any]:
            data: dict[str, Any] = {
                "conversationId": cid,
                "chatbotCorpId": self._options.corp_id,
                "chatbotUserId": _lwcp("sandbox-bot"),
                "msgId": msg_id,
                "senderNick": sender,
                "isAdmin": False,
                "senderStaffId": sender,
                "sessionWebhookExpiredTime": ms(now + self._options.session_webhook_ttl),
                "createAt": ms(now),
                "senderCorpId": self._options.corp_id,
                "conversationType": conversation_type,
                "senderId": _lwcp(sender),
                "sessionWebhook": f"{self._base_url()}/robot/sendBySession?session={session}",
                # After DingTalk strips the @-mention, the text keeps a leading space.
                "text": {"content": " " + text},
                "robotCode": self._options.robot_code or conn.client_id,
                "msgtype": "text",
                "isInAtList": True,
            }
            if conversation_type == "2":
                data["conversationTitle"] = conversation_title
                data["atUsers"] = [{"dingtalkId": data["chatbotUserId"]}]
            return data

        start = len(self.messages)
        conn_id = await self._gateway.callback(BOT_TOPIC, build)
        if conn_id is None:
            raise ControlError(
                "bot_not_connected", "no stream connection takes robot messages", 409
            )
        self.received += 1

        def answers(m: SentMessage) -> bool:
            if m.kind == "session":
                return m.reply_to == msg_id
            if m.kind == "group":
                return conversation_type == "2" and m.conversation_id == cid
            return conversation_type == "1" and m.kind in ("oto", "card") and sender in m.user_ids

        replies = await self._collect(
            answers, start, self._options.chat_reply_wait if wait is None else wait
        )
        return {
            "msgId": msg_id,
            "conversationId": cid,
            "connectionId": conn_id,
            "replies": [m.to_json() for m in replies],
        }

    async def _collect(
        self, match: Callable[[SentMessage], bool], start: int, wait: float
    ) -> list[SentMessage]:
        """Matching messages: after the first, until none came for `chat_quiet` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        count, changed_at = 0, loop.time()
        while True:
            found = [m for m in self.messages[start:] if match(m)]
            now = loop.time()
            if len(found) != count:
                count, changed_at = len(found), now
            quiet_until = changed_at + self._options.chat_quiet
            if now >= deadline or (found and now >= quiet_until):
                return found
            wake = min(deadline, quiet_until) if found else deadline
            self._changed.clear()
            try:
                async with asyncio.timeout(wake - now):
                    await self._changed.wait()
            except TimeoutError:
                pass
