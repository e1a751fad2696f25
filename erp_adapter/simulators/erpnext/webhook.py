"""ERPNext's Webhook doctype: POST a JSON body on every change, signed with HMAC-SHA256."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import aiohttp

from erp_adapter.simulators.erpnext.site import to_json

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Frappe-Webhook-Signature"
DEFAULT_JSON_FIELDS = ("doctype", "name", "modified", "docstatus", "status", "workflow_state")
"""What the guide's `webhook_json` template sends (`{"doctype": "{{ doc.doctype }}", ...}`)."""


def signature(secret: str, data: Any) -> str:
    """`frappe.integrations.doctype.webhook`: base64 of the raw digest of `json.dumps(data)`."""
    digest = hmac.new(secret.encode(), json.dumps(data).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class WebhookSender:
    """One enabled Webhook (docevent on_change) on one doctype, with security enabled."""

    def __init__(self, url: str, secret: str, doctype: str = "Purchase Order") -> None:
        self.url = url
        self.secret = secret
        self.doctype = doctype
        self.deliveries: list[int | str] = []
        """Each attempt's HTTP status or error, like the Webhook Request Log."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def fire(self, doctype: str, doc: dict[str, Any]) -> None:
        """Queue a delivery for a changed document (Frappe enqueues it after commit)."""
        if doctype != self.doctype:
            return
        data = to_json(
            {key: doc.get(key) for key in DEFAULT_JSON_FIELDS}
        )  # as_dict(convert_dates_to_str)
        try:
            task = asyncio.get_running_loop().create_task(self._send(data))
        except RuntimeError:  # changed outside the loop: nothing to send with
            self.deliveries.append("no event loop")
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, data: dict[str, Any]) -> None:
        """Up to 3 attempts, 5 s each, as `enqueue_webhook` does."""
        body = json.dumps(data, default=str)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.secret, data),
        }
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for _attempt in range(3):
            try:
                async with self._session.post(
                    self.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=5)
                ) as response:
                    self.deliveries.append(response.status)
                    if response.status < 400:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.deliveries.append(type(exc).__name__)
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Finish what is queued, then close the client session."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
