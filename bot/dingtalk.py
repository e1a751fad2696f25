"""The DingTalk side of the composition root: client, meter, gateway, notifier, event intake."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from approvals.db.engine import Database
from bot.errors import DingTalkAuthError, DingTalkError
from bot.events import ChatHandler, EventSink
from bot.gateway import DingTalkGateway
from bot.meter import CallMeter
from bot.notify import DingTalkNotifier
from bot.openapi import DingTalkClient
from bot.settings import Settings
from bot.stream import StreamAuthError, StreamIntake
from cards.renderer import Renderer

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """`run` cannot start; the message says why and what to change."""


@dataclass(frozen=True)
class DingTalkSide:
    """What the rest of the service uses of DingTalk."""

    client: DingTalkClient
    meter: CallMeter
    gateway: DingTalkGateway
    notifier: DingTalkNotifier


@contextlib.asynccontextmanager
async def connect(
    settings: Settings, db: Database, session: aiohttp.ClientSession, renderer: Renderer
) -> AsyncIterator[DingTalkSide]:
    """Meter and client, probed at once: wrong credentials stop start-up with a clear message."""
    config = settings.dingtalk
    if not config.app_key or config.app_secret is None:
        raise StartupError(
            "DingTalk credentials missing: set dingtalk.app_key in the configuration and the "
            "secret in APPROVAL_BRIDGE__DINGTALK__APP_SECRET (`approval-bridge check` tells all)"
        )
    async with CallMeter(db, budget=config.monthly_call_budget) as meter:
        client = DingTalkClient(session, config, meter=meter)
        try:
            await client.probe()
        except DingTalkAuthError as exc:
            raise StartupError(
                f"DingTalk refused the app credentials ({exc}); check dingtalk.app_key and "
                "APPROVAL_BRIDGE__DINGTALK__APP_SECRET"
            ) from exc
        except DingTalkError as exc:
            # Unreachable is not wrong: the jobs retry, so the service starts and says so.
            log.warning("DingTalk not reachable at start-up (%s); retrying in the background", exc)
        gateway = DingTalkGateway(
            client,
            settings.approvals,
            settings.users,
            timezone=settings.timezone,
            agent_id=config.agent_id,
            renderer=renderer,
        )
        notifier = DingTalkNotifier(
            client, config.admins, renderer, users=settings.users, used_fraction=meter.used_fraction
        )
        yield DingTalkSide(client, meter, gateway, notifier)


@contextlib.asynccontextmanager
async def stream(
    settings: Settings, session: aiohttp.ClientSession, sink: EventSink, chat: ChatHandler | None
) -> AsyncIterator[StreamIntake]:
    """The stream connection, running until the block exits."""
    try:
        intake = StreamIntake.from_config(session, settings.dingtalk, sink, chat)
        async with intake:
            yield intake
    except StreamAuthError as exc:
        raise StartupError(str(exc)) from exc
