"""`POST /erp/events`: authenticate, validate and hand ERP events to intake (CONTRACT section 2)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from approvals.errors import Overloaded, StorageUnavailable
from approvals.intake import IntakeService
from approvals.models import ErpEvent, EventType
from approvals.rules import Event, Outcome
from erp_adapter.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

log = logging.getLogger(__name__)

_EVENT = TypeAdapter[Event](ErpEvent)
_STATUS = {Outcome.ACCEPTED: 202, Outcome.DUPLICATE: 200}

WebhookObserver = Callable[[str, str], None]
"""Told (event type or `unknown`, outcome) of each delivery answered; must not block or raise."""


class _Answer(NamedTuple):
    """A reply, and what the observer is told: the event's type once its body parsed."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None
    event_type: str = "unknown"

    def response(self) -> web.Response:
        """The JSON reply."""
        return web.Response(
            status=self.status,
            body=json.dumps(self.body, ensure_ascii=False).encode(),
            content_type="application/json",
            headers=self.headers,
        )


def _details(error: ValidationError) -> list[dict[str, Any]]:
    details = []
    for item in error.errors(include_url=False, include_input=False):
        loc = list(item["loc"])
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["type"]  # the discriminator itself is what is wrong
        elif loc and loc[0] in _TAGS:
            loc = loc[1:]  # pydantic puts the union member's tag first; it is not in the body
        details.append({"loc": loc, "msg": item["msg"]})
    return details


_TAGS = frozenset(t.value for t in EventType)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` (chunked bodies have no length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class ErpWebhook:
    """The webhook handler; everything it needs is injected."""

    def __init__(
        self,
        intake: IntakeService,
        secret: bytes | None,
        tolerance_s: int,
        max_body_bytes: int,
        clock: Callable[[], float] = time.time,
        observer: WebhookObserver | None = None,
    ) -> None:
        self.observer = observer
        """Observer hook (metrics), given by the composition root."""
        self._intake = intake
        self._secret = secret
        self._tolerance_s = tolerance_s
        self._max_body = max_body_bytes
        self._clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one delivery; every input, however malformed, gets a JSON 4xx, never a 500."""
        answer = await self._handle(request)
        # Observer hook (metrics): the event's type and the answer's `status` or `error` code.
        if self.observer is not None:
            try:
                self.observer(answer.event_type, answer.body.get("error") or answer.body["status"])
            except Exception:
                log.exception("erp webhook: the observer failed")
        return answer.response()

    async def _handle(self, request: web.Request) -> _Answer:
        if request.content_length is not None and request.content_length > self._max_body:
            return _Answer(413, {"error": "payload_too_large"}, {"Connection": "close"})
        if request.content_type != "application/json":
            return _Answer(415, {"error": "unsupported_media_type"})
        body = await _read_body(request, self._max_body)
        if body is None:
            return _Answer(413, {"error": "payload_too_large"}, {"Connection": "close"})
        if self._secret is None:
            # Without a secret no request can be authentic; `check` reports the missing key.
            return _Answer(401, {"error": "bad_signature"})
        problem = verify(
            self._secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
            self._clock(),
            self._tolerance_s,
        )
        if problem is not None:
            log.info("erp webhook refused from %s: %s", request.remote, problem.value)
            return _Answer(401, {"error": problem.value})
        try:
            event = _EVENT.validate_json(body)
        except ValidationError as exc:
            return _Answer(400, {"error": "invalid_payload", "details": _details(exc)})
        try:
            result = await self._intake.submit(event)
        except (Overloaded, StorageUnavailable) as exc:
            retry = {"Retry-After": str(exc.retry_after)}
            refusal = {"error": "overloaded"}
            if isinstance(exc, StorageUnavailable):
                refusal["reason"] = "storage_unavailable"  # the database, not the queue: see logs
            return _Answer(503, refusal, retry, event.type)
        if result.outcome is Outcome.STALE_REVISION:
            stale = {"error": "stale_revision", "approval_id": result.approval_id}
            return _Answer(409, stale, None, event.type)
        return _Answer(
            _STATUS[result.outcome],
            {"status": result.outcome.value, "approval_id": result.approval_id},
            None,
            event.type,
        )
