"""Write-back to an ERP over the generic signed HTTP protocol (CONTRACT section 3)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from approvals.ports import WriteBack, WriteBackReceipt
from erp_adapter import http
from erp_adapter.signing import signed_headers


def write_back_body(result: WriteBack) -> dict[str, Any]:
    """The JSON body of a write-back; money as decimal strings."""
    body: dict[str, Any] = {
        "approval_id": result.approval_id,
        "doc_type": result.doc_type.value,
        "doc_no": result.doc_no,
        "revision": result.revision,
        "decision": result.decision.value,
        "process_instance_id": result.process_instance_id,
        "decided_at": result.decided_at.isoformat(),
        "approvers": [a.model_dump(mode="json") for a in result.approvers],
    }
    if result.material_code is not None:
        body["material_code"] = result.material_code
        body["warehouse"] = result.warehouse
        body["quantity"] = None if result.quantity is None else str(result.quantity)
    return body


class GenericAdapter:
    """Posts signed results to `{base_url}/approval-results` with an `Idempotency-Key`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        secret: bytes,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/approval-results"
        self._secret = secret
        self._timeout_s = timeout_s
        self._clock = clock

    async def write_back(self, result: WriteBack) -> WriteBackReceipt:
        """Deliver one decision; the typed errors come from `erp_adapter.http`."""
        body = json.dumps(
            write_back_body(result), ensure_ascii=False, separators=(",", ":")
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": result.idempotency_key,
            **signed_headers(self._secret, int(self._clock()), body),
        }
        response = await http.request(
            self._session, "POST", self._url, body=body, headers=headers, timeout_s=self._timeout_s
        )
        erp_ref = response.body.get("erp_ref")
        return WriteBackReceipt(erp_ref=None if erp_ref is None else str(erp_ref)[:200])
