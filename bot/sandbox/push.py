"""Encrypted HTTP-callback delivery of events (spec §6), the alternative to the stream."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from bot.sandbox.crypto import CallbackCrypto, CryptoError, dumps, random_text
from bot.sandbox.options import Clock, SandboxOptions
from bot.sandbox.records import EventRecord, camel, ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackConfig:
    """Where and how events are pushed: the console's request URL, token and aes key."""

    url: str
    token: str
    aes_key: str
    owner_key: str

    def to_json(self) -> dict[str, Any]:
        """The settings without the secrets."""
        return {"url": self.url, "ownerKey": self.owner_key}


@dataclass
class CallbackStats:
    """HTTP-callback counters for `GET /sandbox/stats`."""

    posts: int = 0
    ok: int = 0
    bad_replies: int = 0
    http_errors: int = 0
    timeouts: int = 0


def http_payload(record: EventRecord, corp_id: str) -> dict[str, Any]:
    """The plaintext of an event pushed over HTTP, per the newer doc sample (§4.3)."""
    # In the doc's sample BizId equals EventTime; we follow it.
    head = {
        "EventType": record.event_type,
        "EventTime": record.born,
        "CorpId": corp_id,
        "BizId": str(record.born),
        "eventId": record.event_id,
    }
    return {**head, **record.data}


class CallbackPusher:
    """POSTs encrypted events and accepts only the encrypted `success` reply, in time."""

    def __init__(
        self,
        options: SandboxOptions,
        clock: Clock,
        session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self._options = options
        self._clock = clock
        self._session = session
        self.stats = CallbackStats()
        self.last_error = ""
        self.config: CallbackConfig | None = None
        self._crypto: CallbackCrypto | None = None
        if options.callback_enabled:
            assert options.callback_url and options.callback_token and options.callback_aes_key
            self.configure(
                options.callback_url,
                options.callback_token,
                options.callback_aes_key,
                options.callback_owner_key,
            )

    @property
    def enabled(self) -> bool:
        """Whether events go here instead of the stream."""
        return self.config is not None

    def configure(self, url: str, token: str, aes_key: str, owner_key: str | None = None) -> None:
        """Turn HTTP delivery on (CryptoError for a bad aes key, ValueError for a bad URL)."""
        if not url.startswith(("http://", "https://")):
            raise ValueError("the callback URL must be http:// or https://")
        owner = owner_key or self._options.event_app_key
        self._crypto = CallbackCrypto(token, aes_key, owner)
        self.config = CallbackConfig(url, token, aes_key, owner)

    def disable(self) -> None:
        """Back to stream delivery."""
        self.config, self._crypto = None, None

    async def attempt(self, record: EventRecord) -> bool:
        """Push one event; True when the reply decrypts to `success`."""
        return await self.post(dumps(http_payload(record, self._options.corp_id)))

    async def check_url(self) -> bool:
        """The `check_url` handshake DingTalk runs when the URL is saved."""
        return await self.post(dumps({"EventType": "check_url"}))

    async def post(self, plaintext: str) -> bool:
        """One encrypted POST with `msg_signature`, `timestamp` and `nonce` in the query."""
        config, crypto = self.config, self._crypto
        if config is None or crypto is None:
            raise RuntimeError("HTTP callbacks are not configured")
        timestamp, nonce = str(ms(self._clock())), random_text()
        encrypt = crypto.encrypt(plaintext)
        params = {
            "msg_signature": crypto.sign(timestamp, nonce, encrypt),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        self.stats.posts += 1
        timeout = aiohttp.ClientTimeout(total=self._options.callback_timeout)
        try:
            async with self._session().post(
                config.url, params=params, json={"encrypt": encrypt}, timeout=timeout
            ) as resp:
                status, raw = resp.status, await resp.read()
        except TimeoutError:
            self.stats.timeouts += 1
            return self._fail(f"no reply within {self._options.callback_timeout:g} s")
        except aiohttp.ClientError as exc:
            self.stats.http_errors += 1
            return self._fail(f"{type(exc).__name__}: {exc}")
        if status != 200:
            self.stats.http_errors += 1
            return self._fail(f"HTTP {status}")
        try:
            answer = crypto.open_envelope(json.loads(raw))
        except (ValueError, CryptoError) as exc:
            self.stats.bad_replies += 1
            return self._fail(f"HTTP请求结果校验返回字段值失败: {exc}")
        if answer != "success":
            self.stats.bad_replies += 1
            return self._fail(f"the reply decrypts to {answer!r}, not 'success'")
        self.stats.ok += 1
        return True

    def to_json(self) -> dict[str, Any]:
        """Counters, settings and the last failure."""
        return {
            **camel(asdict(self.stats)),
            "config": self.config.to_json() if self.config else None,
            "lastError": self.last_error,
        }

    def _fail(self, why: str) -> bool:
        self.last_error = why
        log.info("sandbox: HTTP callback failed: %s", why)
        return False
