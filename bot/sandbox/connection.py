"""Stream connections on the wire (spec §5): tickets, subscriptions, frames and ACKs."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.sandbox.errors import invalid

_TOPIC_TYPES = frozenset({"EVENT", "CALLBACK", "SYSTEM"})

Topic = tuple[str, str]
"""(subscription type, topic), e.g. ("EVENT", "*") or ("CALLBACK", "/v1.0/im/bot/messages/get")."""


@dataclass(frozen=True)
class Ticket:
    """A single-use pass for one websocket connection."""

    client_id: str
    topics: frozenset[Topic]
    expires_at: float


@dataclass(eq=False)
class Connection:
    """One open stream connection."""

    conn_id: str
    client_id: str
    topics: frozenset[Topic]
    ws: web.WebSocketResponse
    opened_at: float
    draining: bool = False
    """A `disconnect` was sent: no new pushes go here."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    pongs: int = 0
    transport: asyncio.BaseTransport | None = None
    """The TCP connection under the websocket, to cut it without a close frame."""

    def to_json(self) -> dict[str, Any]:
        """The connection for the stats."""
        return {
            "connectionId": self.conn_id,
            "clientId": self.client_id,
            "subscriptions": [{"type": t, "topic": p} for t, p in sorted(self.topics)],
            "draining": self.draining,
            "pongs": self.pongs,
        }


@dataclass
class GatewayStats:
    """Stream counters for `GET /sandbox/stats`."""

    tickets_issued: int = 0
    auth_failures: int = 0
    tickets_refused: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    pushes: int = 0
    acks_ok: int = 0
    acks_failed: int = 0
    ack_timeouts: int = 0
    unmatched_acks: int = 0
    pings: int = 0
    disconnects: int = 0
    drops: int = 0


def ack_ok(ack: dict[str, Any]) -> bool:
    """Acked per §5.4: `status` SUCCESS in data, or code 200 unless data says LATER."""
    status = None
    raw = ack.get("data")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            status = parsed.get("status")
    if status == "SUCCESS":
        return True
    return status != "LATER" and ack.get("code") == 200


def subscriptions(raw: Any) -> frozenset[Topic]:
    """The `subscriptions` of an open request: [{type, topic}]; EVENT only with topic `*`."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise invalid("subscriptions must be a list")
    topics: set[Topic] = set()
    for item in raw:
        if not isinstance(item, dict):
            raise invalid("each subscription must be an object with type and topic")
        type_, topic = item.get("type"), item.get("topic")
        if type_ not in _TOPIC_TYPES or not isinstance(topic, str) or not topic:
            raise invalid(f"bad subscription {item!r}")
        if type_ == "EVENT" and topic != "*":
            raise invalid("EVENT subscriptions only support the topic *")
        topics.add((str(type_), topic))
    return frozenset(topics)
