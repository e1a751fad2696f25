"""`POST /dingtalk/callback`: DingTalk's encrypted HTTP push, applied and answered (spec §6)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from bot.crypto import BadCiphertext, BadKey, BadSignature, CallbackCrypto, OwnerMismatch
from bot.events import EventError, EventSink, from_http
from bot.settings import DingTalkConfig

log = logging.getLogger(__name__)

PATH = "/dingtalk/callback"


class CallbackKeysMissing(ValueError):
    """HTTP-callback mode needs the callback token, a valid AES key and an owner key."""


def _refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


class DingTalkCallback:
    """Verifies, decrypts and applies one push, then answers the encrypted "success"."""

    def __init__(self, sink: EventSink, crypto: CallbackCrypto) -> None:
        self._sink = sink
        self._crypto = crypto

    async def handle(self, request: web.Request) -> web.Response:
        """The route handler: 200 with the encrypted reply, else 400/403/503 (never a 500)."""
        peer = request.remote
        query = request.query
        # §6.2: both spellings of the signature and timestamp parameters are seen.
        sig = query.get("msg_signature") or query.get("signature") or ""
        stamp = query.get("timestamp") or query.get("timeStamp") or ""
        nonce = query.get("nonce", "")
        try:
            body: Any = json.loads(await request.read())
        except (UnicodeDecodeError, ValueError):
            log.warning("dingtalk callback from %s: body is not JSON", peer)
            return _refuse(400, "bad_request")
        encrypt = body.get("encrypt") if isinstance(body, dict) else None
        if not isinstance(encrypt, str) or not encrypt:
            log.warning("dingtalk callback from %s: no `encrypt` in the body", peer)
            return _refuse(400, "bad_request")
        try:
            self._crypto.verify(sig, stamp, nonce, encrypt)
            plain = self._crypto.decrypt(encrypt)
        except BadSignature:
            log.warning("dingtalk callback from %s refused: bad signature", peer)
            return _refuse(403, "bad_signature")
        except OwnerMismatch:
            log.warning("dingtalk callback from %s refused: encrypted for another owner", peer)
            return _refuse(403, "wrong_owner")
        except BadCiphertext as exc:
            log.warning("dingtalk callback from %s: undecryptable (%s)", peer, exc)
            return _refuse(400, "bad_ciphertext")
        try:
            payload = json.loads(plain)
            if not isinstance(payload, dict):
                raise EventError("the push is not a JSON object")
            event = from_http(payload)
        except (ValueError, EventError) as exc:  # EventError is a ValueError; named for clarity
            log.warning("dingtalk callback from %s: unreadable event (%s)", peer, exc)
            return _refuse(400, "bad_event")
        if event is None:
            # check_url and event types we do not act on: acknowledged, nothing applied (§6.4).
            log.info("dingtalk callback: %s acknowledged", payload.get("EventType", "?"))
        else:
            try:
                await self._sink.apply(event)
            except Exception:
                # Not recorded: refuse so DingTalk pushes it again (DESIGN §3 "No lost events").
                log.exception("dingtalk callback: applying %s failed", event.key)
                return web.json_response(
                    {"error": "unavailable"}, status=503, headers={"Retry-After": "5"}
                )
        return web.json_response(self._crypto.reply())


def callback_route(
    sink: EventSink, *, token: str, aes_key: str, owner_key: str
) -> DingTalkCallback:
    """The route for explicit keys; mount `.handle` at PATH (raises BadKey for a bad AES key)."""
    return DingTalkCallback(sink, CallbackCrypto(token, aes_key, owner_key))


def from_config(sink: EventSink, config: DingTalkConfig) -> DingTalkCallback:
    """The route for `[dingtalk]`; owner key: `callback_owner_key`, else the app key (§6.3)."""
    owner = config.callback_owner_key or config.app_key
    if config.callback_token is None or config.callback_aes_key is None or not owner:
        raise CallbackKeysMissing(
            "dingtalk.mode = http needs dingtalk.callback_token, dingtalk.callback_aes_key "
            "and dingtalk.app_key (or dingtalk.callback_owner_key)"
        )
    try:
        return callback_route(
            sink,
            token=config.callback_token.get_secret_value(),
            aes_key=config.callback_aes_key.get_secret_value(),
            owner_key=owner,
        )
    except BadKey as exc:  # DingTalk's 900004: fail at startup, not on the first push
        raise CallbackKeysMissing(f"dingtalk.callback_aes_key: {exc}") from None


CALLBACK = web.AppKey("dingtalk_callback", DingTalkCallback)
"""Set in a cleanup context once the services exist; the route reads it per request."""


async def _route(request: web.Request) -> web.Response:
    return await request.app[CALLBACK].handle(request)


def add_route(app: web.Application) -> None:
    """Mount PATH at build time; `app[CALLBACK]` must be set before the server starts."""
    app.router.add_post(PATH, _route)
