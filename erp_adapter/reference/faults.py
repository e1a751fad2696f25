"""Fault injection for `/approval-results`: down, failing, slow or refusing on demand."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from erp_adapter.reference.errors import InputError
from erp_adapter.reference.records import Answer

FaultMode = Literal["ok", "down", "error", "slow", "reject", "conflict"]
MODES: tuple[str, ...] = get_args(FaultMode)
_MAX_DELAY = 600.0

_ANSWERS: dict[str, Answer] = {
    "down": (503, {"error": "unavailable", "injected": True}),
    "error": (500, {"error": "internal_error", "injected": True}),
    "reject": (400, {"error": "rejected", "injected": True}),
    "conflict": (409, {"error": "stale", "injected": True}),
}


@dataclass(frozen=True)
class Fault:
    """What the next write-back meets: an HTTP failure, a delay, or nothing (`ok`)."""

    mode: FaultMode = "ok"
    delay: float = 0.0
    retry_after: int | None = None

    def answer(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """The injected status, body and headers, or None when the request proceeds."""
        if self.mode not in _ANSWERS:
            return None
        status, body = _ANSWERS[self.mode]
        headers = {}
        if self.mode == "down" and self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return status, dict(body), headers


class FaultSwitch:
    """The settable fault mode, optionally for the next N write-backs only."""

    def __init__(self) -> None:
        self._fault = Fault()
        self._remaining: int | None = None

    def set(
        self,
        mode: FaultMode,
        *,
        fail_next: int | None = None,
        delay: float = 1.0,
        retry_after: int | None = None,
    ) -> None:
        """Apply `mode` to every write-back, or to the next `fail_next` ones then return to ok."""
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}")
        if fail_next is not None and fail_next < 0:
            raise InputError("fail_next must not be negative")
        if not math.isfinite(delay) or not 0 <= delay <= _MAX_DELAY:
            raise InputError(f"delay must be between 0 and {_MAX_DELAY:g} seconds")
        if retry_after is not None and retry_after < 0:
            raise InputError("retry_after must not be negative")
        self._fault = Fault(mode, delay if mode == "slow" else 0.0, retry_after)
        self._remaining = None if mode == "ok" else fail_next
        if self._remaining == 0:
            self._fault = Fault()
            self._remaining = None

    def take(self) -> Fault:
        """The fault for the request arriving now, counting it against `fail_next`."""
        fault = self._fault
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self._fault, self._remaining = Fault(), None
        return fault

    def to_json(self) -> dict[str, Any]:
        """The current setting as the control API shows it."""
        return {
            "mode": self._fault.mode,
            "fail_next": self._remaining,
            "delay": self._fault.delay,
            "retry_after": self._fault.retry_after,
        }

    def set_from_json(self, raw: Any) -> None:
        """Apply a `POST /ref/faults` body: mode, and optional fail_next, delay, retry_after."""
        if not isinstance(raw, dict):
            raise InputError("body must be a JSON object")
        unknown = set(raw) - {"mode", "fail_next", "delay", "retry_after"}
        if unknown:
            raise InputError(f"unknown fields: {', '.join(sorted(unknown))}")
        mode, fail_next = raw.get("mode"), raw.get("fail_next")
        delay, retry_after = raw.get("delay", 1.0), raw.get("retry_after")
        if not isinstance(mode, str) or mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}")
        if fail_next is not None and (
            isinstance(fail_next, bool) or not isinstance(fail_next, int)
        ):
            raise InputError("fail_next must be an integer")
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise InputError("delay must be a number of seconds")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int)
        ):
            raise InputError("retry_after must be an integer number of seconds")
        self.set(
            cast(FaultMode, mode), fail_next=fail_next, delay=float(delay), retry_after=retry_after
        )
