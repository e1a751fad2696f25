"""Stripe-style HMAC signatures for ERP webhooks and write-backs (CONTRACT section 2)."""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

TIMESTAMP_HEADER = "X-Bridge-Timestamp"
SIGNATURE_HEADER = "X-Bridge-Signature"
_PREFIX = "v1="


class SignatureProblem(StrEnum):
    """Why a request's signature was refused (the 401 body's `error`)."""

    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-Bridge-Signature` value for a body sent at `timestamp`."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return _PREFIX + mac.hexdigest()


def signed_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    """The two authentication headers for a body."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    tolerance_s: int,
) -> SignatureProblem | None:
    """None when the request is authentic and fresh, else why not; constant-time comparison."""
    if not timestamp_header or not signature_header:
        return SignatureProblem.BAD_SIGNATURE
    try:
        timestamp = int(timestamp_header.strip())
    except ValueError:
        return SignatureProblem.BAD_SIGNATURE
    expected = sign(secret, timestamp, body)
    # Several comma-separated signatures are allowed, so a secret can be rotated without downtime.
    candidates = [part.strip() for part in signature_header.split(",")]
    valid = False
    for candidate in candidates:
        valid |= hmac.compare_digest(candidate.encode(errors="surrogateescape"), expected.encode())
    if not valid:
        return SignatureProblem.BAD_SIGNATURE
    # Checked after the signature, so an attacker learns nothing about our clock from a forgery.
    if abs(now - timestamp) > tolerance_s:
        return SignatureProblem.STALE_TIMESTAMP
    return None
