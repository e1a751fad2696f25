"""Odoo 17+'s automation "Send Webhook Notification" as a "poll now" hint."""

from __future__ import annotations

import json


def parse_hint(body: bytes) -> str | None:
    """The model named by an Odoo webhook body (`{"_action", "_id", "_model", ...}`), else None.

    The webhook is unsigned (no secret, no header): it only says "poll now", never what changed.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    model, record_id = payload.get("_model"), payload.get("_id")
    if not isinstance(model, str) or not model or "_action" not in payload:
        return None
    if not isinstance(record_id, int) or isinstance(record_id, bool):
        return None
    return model
