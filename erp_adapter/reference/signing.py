"""The reference ERP's own HMAC signing (CONTRACT §2), deliberately not shared with the bridge."""

from __future__ import annotations

import hashlib
import hmac
import re

TIMESTAMP_HEADER = "X-Bridge-Timestamp"
SIGNATURE_HEADER = "X-Bridge-Signature"
TOLERANCE_S = 300
"""How far a signed timestamp may be from our clock, in seconds."""
_TIMESTAMP = re.compile(r"-?[0-9]{1,15}")


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Bridge-Signature` value for a body signed at `timestamp`."""
    message = f"{timestamp}.".encode() + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The two authentication headers for a body signed at `timestamp`."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def check(
    secret: str, timestamp: str | None, sig: str | None, body: bytes, now: float
) -> str | None:
    """None when the request is authentic and fresh, else `bad_signature` or `stale_timestamp`."""
    if not timestamp or not sig:
        return "bad_signature"
    if not _TIMESTAMP.fullmatch(timestamp):
        return "bad_signature"
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), sig.strip().encode("utf-8", "replace")):
        return "bad_signature"
    if abs(now - int(timestamp)) > TOLERANCE_S:
        return "stale_timestamp"
    return None
