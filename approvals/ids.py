"""Identifiers: time-ordered, random, URL-safe (128 bits in Crockford base32, like a ULID)."""

from __future__ import annotations

import base64
import os
import time

# RFC 4648 base32 letters mapped onto Crockford's alphabet (no I, L, O, U), so order is kept.
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id() -> str:
    """A 26-character id: 48 bits of milliseconds then 80 random bits; sorts by creation time."""
    raw = (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)
    return base64.b32encode(raw).decode("ascii")[:26].translate(_CROCKFORD)
