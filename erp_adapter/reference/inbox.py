"""Receiving write-backs (CONTRACT §3): faults, signature, idempotency, then the business rules."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from erp_adapter.reference import signing, validate
from erp_adapter.reference.errors import InputError
from erp_adapter.reference.faults import FaultSwitch
from erp_adapter.reference.records import WriteBackOutcome, WriteBackRecord
from erp_adapter.reference.store import Store

IDEMPOTENCY_HEADER = "Idempotency-Key"
_MAX_KEY = 256
Reply = tuple[int, dict[str, Any], dict[str, str]]
"""An HTTP status, its JSON body and extra headers."""


@dataclass(frozen=True)
class _Seen:
    """The first decision processed under an idempotency key, and what we answered."""

    decision: str
    status: int
    answer: dict[str, Any]


class WriteBackInbox:
    """Answers `POST /approval-results` like a careful ERP, and records every request."""

    def __init__(self, store: Store, faults: FaultSwitch, secret: str) -> None:
        self._store = store
        self._faults = faults
        self._secret = secret
        self._seen: dict[str, _Seen] = {}

    async def receive(self, headers: Mapping[str, str], raw: bytes) -> Reply:
        """Handle one write-back request and record it with its answer."""
        received_at = self._store.clock()
        key = headers.get(IDEMPOTENCY_HEADER)
        unreadable: InputError | None = None
        try:
            logged: Any = validate.parse_json(raw)
        except InputError as exc:
            logged, unreadable = raw.decode("utf-8", "replace"), exc

        def reply(
            status: int,
            answer: dict[str, Any],
            outcome: WriteBackOutcome,
            extra: dict[str, str] | None = None,
        ) -> Reply:
            record = WriteBackRecord(received_at, key, logged, status, answer, outcome)
            self._store.write_backs.append(record)
            return status, dict(answer), extra or {}

        fault = self._faults.take()
        if fault.delay:
            await asyncio.sleep(fault.delay)
        injected = fault.answer()
        if injected is not None:
            status, answer, extra = injected
            return reply(status, answer, "fault", extra)

        problem = signing.check(
            self._secret,
            headers.get(signing.TIMESTAMP_HEADER),
            headers.get(signing.SIGNATURE_HEADER),
            raw,
            self._store.clock().timestamp(),
        )
        if problem is not None:
            return reply(401, {"error": problem}, "unauthorized")
        if key is None or not key.strip():
            return reply(400, {"error": "missing_idempotency_key"}, "invalid")
        if len(key) > _MAX_KEY:
            message = f"Idempotency-Key is longer than {_MAX_KEY} characters"
            return reply(400, {"error": "invalid_idempotency_key", "message": message}, "invalid")
        try:
            if unreadable is not None:
                raise unreadable
            write_back = validate.write_back(logged)
        except InputError as exc:
            return reply(400, exc.to_json(), "invalid")

        seen = self._seen.get(key)
        if seen is not None:
            if seen.decision != write_back.decision:
                return reply(422, {"error": "conflicting_decision"}, "conflicting_decision")
            return reply(seen.status, seen.answer, "replay")
        status, answer = self._store.decide(write_back, logged)
        self._seen[key] = _Seen(write_back.decision, status, answer)
        return reply(status, answer, "applied")
