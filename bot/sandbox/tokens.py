"""Access tokens as DingTalk hands them out: one per app, the same one while it is valid."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from bot.sandbox.options import Clock


@dataclass
class Token:
    """An app's access token and when it stops working."""

    value: str
    app_key: str
    expires_at: float


class TokenStore:
    """Issues, extends, checks and invalidates access tokens."""

    def __init__(self, clock: Clock, ttl: int) -> None:
        self._clock = clock
        self.ttl = ttl
        self._by_app: dict[str, Token] = {}
        self._by_value: dict[str, Token] = {}
        self.issued = 0
        self.invalidations = 0

    def issue(self, app_key: str) -> Token:
        """The app's token: the valid one with its life extended, or a new one (doc §2.1)."""
        now = self._clock()
        token = self._by_app.get(app_key)
        if token is not None and token.expires_at > now:
            token.expires_at = now + self.ttl
            return token
        if token is not None:
            self._by_value.pop(token.value, None)
        token = Token(secrets.token_hex(16), app_key, now + self.ttl)
        self._by_app[app_key] = token
        self._by_value[token.value] = token
        self.issued += 1
        return token

    def check(self, value: str) -> tuple[str | None, bool]:
        """(the app key, expired): app key None when the token is unknown or expired."""
        token = self._by_value.get(value)
        if token is None:
            return None, False
        if token.expires_at <= self._clock():
            return None, True
        return token.app_key, False

    def invalidate(self, app_key: str | None = None) -> int:
        """Make current tokens (of one app, or all) stop working; how many were dropped."""
        victims = [t for t in self._by_app.values() if app_key is None or t.app_key == app_key]
        for token in victims:
            del self._by_app[token.app_key]
            self._by_value.pop(token.value, None)
        self.invalidations += 1
        return len(victims)

    def current(self) -> dict[str, str]:
        """Each app's current token, for tests."""
        return {app: t.value for app, t in self._by_app.items()}


def credentials_ok(
    app_key: object, app_secret: object, want_key: str | None, want_secret: str | None
) -> bool:
    """Whether an app key and secret are accepted: any non-empty pair, or the configured one."""
    if not (isinstance(app_key, str) and app_key and isinstance(app_secret, str) and app_secret):
        return False
    if want_key is not None and not secrets.compare_digest(app_key.encode(), want_key.encode()):
        return False
    return want_secret is None or secrets.compare_digest(app_secret.encode(), want_secret.encode())
