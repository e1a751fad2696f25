"""Logging setup: readable lines by default, JSON lines when configured; secrets never logged."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

from bot.settings import SECRET_PATHS, Settings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
MASK = "***"
MIN_SECRET_LEN = 4
"""Shorter configured secrets are not masked: replacing every `abc` would garble every line."""

# Credentials recognised by shape, whatever their value: `access_token=...`, `"appSecret": "..."`,
# `x-acs-dingtalk-access-token: ...`, a stream `ticket=`, a sessionWebhook's `session=`, HTTP
# callback `signature=`/`msg_signature=`, `Authorization: Bearer|Basic ...`, our `v1=<hmac>`
# webhook signature, and the password in a database URL. Each keeps its `k<n>` group.
_SHAPES = (
    r"(?P<k1>(?i:(?<![a-z])(?:x-acs-dingtalk-access-token|access[_-]?token|accesstoken|ticket|"
    r"signature|msg_signature|sign|app[_-]?secret|appsecret|client[_-]?secret|clientsecret|"
    r"secret|password|passwd|api[_-]?key|apikey|aes[_-]?key|encodingaeskey|token|session)"
    r"[\"']?\s*[:=]\s*[\"']?))[^\s\"'&,;)}\]]+",
    r"(?P<k2>(?i:\b(?:bearer|basic)\s+))[A-Za-z0-9._~+/=-]{6,}",
    r"(?P<k3>(?i:\bv1=))[0-9a-fA-F]{16,}",
    r"(?P<k4>\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+(?=@)",
)


_HINTS = ("token", "ticket", "sign", "secret", "passw", "key", "session", "bearer", "basic", "v1=")
"""Lower-case words without which no shape can match: most lines skip the regex altogether."""


def _mask(match: re.Match[str]) -> str:
    """A configured secret goes whole; a credential shape keeps its key."""
    kept = match.group(match.lastgroup) if match.lastgroup else ""
    return kept + MASK


class Redactor(logging.Filter):
    """Masks configured secret values and credential-shaped text in every record it passes.

    Put it on handlers (a logger's filter does not see records propagated from child loggers).
    It rewrites the record in place: message, traceback text, stack and `extra=` fields.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        variants: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_LEN:
                # As given, and as it would look inside a URL or a JSON string.
                variants |= {secret, quote(secret, safe=""), quote_plus(secret)}
                variants.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        longest_first = sorted(variants, key=len, reverse=True)
        self._values = tuple(longest_first)
        # One pattern, one pass over each text: configured values first, then the shapes.
        self._pattern = re.compile("|".join([*map(re.escape, longest_first), *_SHAPES]))

    def redact(self, text: str) -> str:
        """The text with every known secret and credential-shaped value masked."""
        lower = text.lower()
        if any(hint in lower for hint in _HINTS) or "://" in text:
            return self._pattern.sub(_mask, text)
        if any(value in text for value in self._values):
            return self._pattern.sub(_mask, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the template, drop the arguments
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, self._deep(value))
        return True

    def _deep(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._deep(v) for v in value]
        return value


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings (app secret, webhook secret, callback keys, ...)."""
    found = []
    for path in SECRET_PATHS:
        node: Any = settings
        for part in path:
            node = getattr(node, part, None)
        if isinstance(node, SecretStr) and node.get_secret_value():
            found.append(node.get_secret_value())
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any `extra=` fields kept."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON."""
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        # exc_text, when set, is the Redactor's masked rendering of the traceback.
        if record.exc_text:
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(
    level: str = "INFO",
    fmt: str = "text",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Install one handler on the root logger, masking `secrets` and credential-shaped text."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log is one line per webhook: noisy at thousands per second.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # alembic narrates every connection it configures; its warnings still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def configure_from(settings: Settings, stream: TextIO | None = None) -> None:
    """`configure` for the service: `[log]` level and format, the settings' secrets masked."""
    configure(settings.log.level, settings.log.format, stream, secrets_of(settings))
