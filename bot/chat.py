"""Chat commands over DingTalk: route a robot message, render the reply, answer in the chat."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Self

from aiohttp import web

from approvals.ports import Clock, SystemClock
from bot.commands import CommandRouter
from bot.errors import SessionExpired
from bot.events import ChatMessage
from bot.keys import DATABASE, DECISIONS, HTTP_SESSION, JOBS, METER, RECONCILER, STREAM
from bot.openapi import DingTalkClient
from bot.settings import Settings
from cards.chat import render_reply
from cards.renderer import Renderer

log = logging.getLogger(__name__)

EXPIRY_MARGIN = dt.timedelta(seconds=3)
"""A sessionWebhook this close to its expiry is not tried: the reply would arrive too late."""


class ChatResponder:
    """A `ChatHandler`: answers commands through the sessionWebhook, else one to one."""

    def __init__(
        self,
        router: CommandRouter,
        client: DingTalkClient,
        renderer: Renderer,
        *,
        zone: str,
        clock: Clock | None = None,
    ) -> None:
        self._router = router
        self._client = client
        self._renderer = renderer
        self._zone = zone
        self._clock = clock or SystemClock()

    @classmethod
    def for_app(
        cls,
        app: web.Application,
        settings: Settings,
        *,
        clock: Clock | None = None,
        renderer: Renderer | None = None,
        client_key: web.AppKey[DingTalkClient] | None = None,
    ) -> AppChat:
        """A handler for `create_app(..., chat=...)` that finds the app's services when called."""
        return AppChat(settings, clock=clock, renderer=renderer, client_key=client_key).bind(app)

    async def handle(self, message: ChatMessage) -> None:
        """Answer one robot message."""
        if message.error is not None:
            # DingTalk withheld the text (the org is over its call quota, spec 5.6).
            log.warning(
                "chat: message %s arrived without content: %s", message.msg_id, message.error
            )
            return
        text = message.text if message.msgtype == "text" else ""
        reply = await self._router.route(message.sender_staff_id, text)
        title, markdown = render_reply(self._renderer, reply, self._zone)
        await self.send(message, title, markdown)

    async def send(self, message: ChatMessage, title: str, markdown: str) -> str:
        """Reply in the conversation, or one to one once its session is gone; how it went."""
        expires = message.session_webhook_expires
        fresh = expires is None or expires - EXPIRY_MARGIN > self._clock.now()
        if message.session_webhook and fresh:
            # In a group, @ the sender so the answer reaches them among other messages.
            at = [message.sender_staff_id] if message.is_group and message.sender_staff_id else []
            try:
                await self._client.reply_session(message.session_webhook, title, markdown, at)
            except SessionExpired:
                log.info("chat: session of %s expired; answering one to one", message.msg_id)
            else:
                return "session"
        if not message.sender_staff_id:
            log.warning("chat: cannot answer %s: session gone, no staff id", message.msg_id)
            return "none"
        result = await self._client.send_robot_oto(
            [message.sender_staff_id], "sampleMarkdown", {"title": title, "text": markdown}
        )
        if result.invalid or result.flow_controlled:
            log.warning("chat: one-to-one answer to %s not delivered", message.sender_staff_id)
        return "oto"


class AppChat:
    """A `ChatHandler` bound late: the app's services exist only once it has started.

    `create_app` needs the handler before it builds the services, so this one looks them up
    under the app's keys for each message (cheap; a reconciler added later is seen at once).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        renderer: Renderer | None = None,
        client_key: web.AppKey[DingTalkClient] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        # Templates are compiled here, before the loop serves anything: no disk reads later.
        self._renderer = renderer or Renderer()
        self._client_key = client_key
        self._client: DingTalkClient | None = None
        self._app: web.Application | None = None

    def bind(self, app: web.Application) -> Self:
        """Attach the application whose services answer the messages."""
        self._app = app
        return self

    async def handle(self, message: ChatMessage) -> None:
        """Answer one robot message with the app's current services."""
        await self.responder().handle(message)

    def responder(self) -> ChatResponder:
        """A responder over the app's services as they are now."""
        app = self._app
        if app is None:
            raise RuntimeError("AppChat.bind(app) was not called")
        router = CommandRouter(
            app[DATABASE],
            app[DECISIONS],
            self._settings,
            reconciler=app.get(RECONCILER),
            stream=app.get(STREAM),
            meter=app.get(METER),
            quota=self._dingtalk(app).quota,
            clock=self._clock,
            wake=app[JOBS].wake,
        )
        return ChatResponder(
            router,
            self._dingtalk(app),
            self._renderer,
            zone=self._settings.timezone,
            clock=self._clock,
        )

    def _dingtalk(self, app: web.Application) -> DingTalkClient:
        if self._client_key is not None:
            return app[self._client_key]
        if self._client is None:
            # Without the app's own client: one of ours on the app's session and meter, so
            # calls are still metered (it keeps its own token, which DingTalk does not count).
            self._client = DingTalkClient(
                app[HTTP_SESSION], self._settings.dingtalk, meter=app.get(METER)
            )
        return self._client
