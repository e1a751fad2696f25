"""ERPNext Webhook hints: check `X-Frappe-Webhook-Signature`, read which order changed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

SIGNATURE_HEADER = "X-Frappe-Webhook-Signature"


def verify_hint(body: bytes, signature: str | None, secret: bytes) -> bool:
    """Whether the header is base64(HMAC-SHA256(secret, body)), compared in constant time.

    Frappe signs `json.dumps(data)` and sends `json.dumps(data, default=str)`: the same bytes
    for a JSON request structure, which the guide asks for.
    """
    if not signature or not secret:
        return False
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    return hmac.compare_digest(given, expected)


def parse_hint(body: bytes) -> str | None:
    """The Purchase Order name a webhook body is about; None for other doctypes or junk."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    doctype = data.get("doctype", "Purchase Order")
    name = data.get("name")
    if doctype != "Purchase Order" or not isinstance(name, str) or not name.strip():
        return None
    return name.strip()
