"""The sandbox's settings: DingTalk's own numbers by default, shorter ones for tests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

Clock = Callable[[], float]
"""Wall-clock time in epoch seconds (`time.time`); injected so tests can move it."""

DEFAULT_APP_KEY = "dingsandboxappkey"
"""The app key events are addressed to when no app key is configured (permissive mode)."""


def system_clock() -> float:
    """The real wall clock."""
    return time.time()


@dataclass(frozen=True)
class FaultOptions:
    """Faults injected into the DingTalk surfaces; all off by default."""

    error_rate: float = 0.0
    """Fraction of OpenAPI calls answered with `error_status` (a 5xx) before any other check."""
    error_status: int = 500
    throttle_rate: float = 0.0
    """Fraction of authenticated OpenAPI calls refused as throttled, as DingTalk answers a call
    over its QPS limit (403 `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`, old errcode
    90018); like a real refusal it runs nothing and uses none of the monthly quota."""
    latency: float = 0.0
    """Seconds added to every OpenAPI call."""
    hang_rate: float = 0.0
    """Fraction of OpenAPI calls held for `hang_seconds` (past any client timeout), then 504."""
    hang_seconds: float = 120.0
    event_drop_rate: float = 0.0
    """Fraction of events never delivered (recorded as `dropped`)."""
    disconnect_every: float | None = None
    """Send `disconnect` to every stream connection every N seconds."""
    drop_every: float | None = None
    """Cut every stream connection every N seconds without a word (a network failure), at a
    moment an event push awaits its ACK when one does within 2 s: those pushes are redelivered
    on another connection."""
    token_invalidate_every: float | None = None
    """Invalidate every access token every N seconds."""
    hold_create_reply: float = 0.0
    """Seconds to hold the reply of a create call after the instance exists: a reply lost in
    transit, the window in which a client that dies has raised an instance it never recorded."""

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "hang_rate", "event_drop_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be between 0 and 1")
        if self.error_status not in (500, 502, 503, 504):
            raise ValueError("error_status must be 500, 502, 503 or 504")
        _non_negative(self, "latency", "hang_seconds", "hold_create_reply")
        _positive_or_none(self, "disconnect_every", "drop_every", "token_invalidate_every")


@dataclass(frozen=True)
class SandboxOptions:
    """How the sandbox behaves; the defaults are DingTalk's published numbers."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port."""

    # Who may call. None accepts any non-empty app key and secret (DingTalk's answer to a wrong
    # pair is 400 invalidClientIdOrSecret, and 401 authFailed on the stream gateway).
    app_key: str | None = None
    app_secret: str | None = None
    robot_code: str | None = None
    """When set, robot sends with another robotCode are refused."""
    process_codes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """When non-empty: the known process codes, each with its form labels (empty = any label)."""
    corp_id: str = "dingsandboxcorp0000"
    unified_app_id: str = "5b1c7a3e-0000-4000-8000-5a4db0c0ffee"
    default_approver: str = "manager1"
    """The approver of the default one-step flow, used when a create request has no approvers."""

    # DingTalk's rules.
    token_ttl: int = 7200
    terminate_grace: float = 15.0
    """Seconds after creation during which terminate is refused."""
    qps: int | None = 20
    """Calls per second per app per API; None turns throttling off."""
    monthly_quota: int | None = None
    """Calls per calendar month (UTC) across apps, token calls exempt; None = unlimited."""
    session_webhook_ttl: float = 5400.0
    invalid_staff_ids: frozenset[str] = frozenset()
    """Robot sends to these users come back in `invalidStaffIdList`."""
    flow_controlled_staff_ids: frozenset[str] = frozenset()
    """Robot sends to these users come back in `flowControlledStaffIdList`."""

    # Stream gateway.
    ticket_ttl: float = 90.0
    ping_interval: float = 30.0
    ack_timeout: float = 10.0
    """An event not acknowledged within this many seconds is redelivered."""
    redelivery_delay: float = 5.0
    max_deliveries: int | None = 10
    """Attempts per event before it is marked `failed`; None retries forever."""
    disconnect_close_delay: float = 10.0
    """After a `disconnect` frame the server stays silent this long, then closes."""

    # Encrypted HTTP callbacks instead of the stream for events (all four needed to enable).
    callback_url: str | None = None
    callback_token: str | None = None
    callback_aes_key: str | None = None
    callback_owner_key: str | None = None
    """The key checked in each message; defaults to `app_key` (an app-level subscription)."""
    callback_timeout: float = 2.5

    # Control API.
    chat_reply_wait: float = 5.0
    """How long `POST /sandbox/chat` waits for the bot's first reply."""
    chat_quiet: float = 0.3
    """After a reply, how long to wait for more before answering."""

    faults: FaultOptions = field(default_factory=FaultOptions)
    seed: int | None = None
    """Seeds the random choices (connections, fault rates) for reproducible runs."""
    shutdown_timeout: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.qps is not None and self.qps < 1:
            raise ValueError("qps must be at least 1, or None for no throttling")
        if self.monthly_quota is not None and self.monthly_quota < 0:
            raise ValueError("monthly_quota must not be negative")
        if self.max_deliveries is not None and self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1, or None")
        if self.token_ttl < 1:
            raise ValueError("token_ttl must be at least 1 second")
        _non_negative(
            self, "terminate_grace", "session_webhook_ttl", "redelivery_delay", "chat_quiet"
        )
        _positive_or_none(
            self,
            "ticket_ttl",
            "ping_interval",
            "ack_timeout",
            "disconnect_close_delay",
            "callback_timeout",
            "chat_reply_wait",
            "shutdown_timeout",
        )
        if self.callback_aes_key is not None and len(self.callback_aes_key) != 43:
            raise ValueError("callback_aes_key must be 43 characters (DingTalk's EncodingAESKey)")

    @property
    def event_app_key(self) -> str:
        """The app key events and the HTTP callback owner key default to."""
        return self.app_key or DEFAULT_APP_KEY

    @property
    def callback_enabled(self) -> bool:
        """Whether events go out as encrypted HTTP callbacks rather than over the stream."""
        return bool(self.callback_url and self.callback_token and self.callback_aes_key)

    def with_faults(self, **changes: Any) -> SandboxOptions:
        """A copy with some fault settings changed."""
        return replace(self, faults=replace(self.faults, **changes))


FAULT_FIELDS: frozenset[str] = frozenset(f.name for f in fields(FaultOptions))


def _non_negative(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative number of seconds")


def _positive_or_none(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None:
            continue
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds")
