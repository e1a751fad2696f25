"""`POST /erp/hooks/{adapter}`: an ERP's own webhook, taken only as a hint to poll now.

What the ERP says in it is never trusted as data: the poll that follows re-reads the documents.
Hints close together share one poll (`Poller.wake`), so a flood of them costs one read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)

MAX_HINT_BYTES = 256 * 1024


@dataclass(frozen=True)
class HintFormat:
    """How one ERP's webhooks look: who signs them, and what they are about."""

    about: Callable[[bytes], str | None]
    """What a body says changed; None when it is not this ERP's webhook."""
    authentic: Callable[[bytes, Mapping[str, str]], bool] | None = None
    """For ERPs that sign their webhooks: body and headers -> authentic."""


class HintHandler:
    """Wakes the poller for an authentic hint; everything else is a 4xx."""

    def __init__(self, source: str, wake: Callable[[], None], form: HintFormat | None) -> None:
        self._source = source
        self._wake = wake
        self._form = form

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one hint: 202 when a poll is scheduled."""
        if request.match_info.get("adapter") != self._source or self._form is None:
            return _error(404, "no_hints_for_this_adapter")
        if request.content_length is not None and request.content_length > MAX_HINT_BYTES:
            return _error(413, "payload_too_large")
        body = b""
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > MAX_HINT_BYTES:
                return _error(413, "payload_too_large")
        authentic = self._form.authentic
        if authentic is not None and not authentic(body, request.headers):
            log.info("%s hint refused from %s: bad signature", self._source, request.remote)
            return _error(401, "bad_signature")
        about = self._form.about(body)
        if about is None:
            return _error(400, "not_a_hint")
        self._wake()
        return web.json_response({"status": "poll_scheduled", "about": about}, status=202)


def _error(status: int, code: str) -> web.Response:
    return web.json_response({"error": code}, status=status)
