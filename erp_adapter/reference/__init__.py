"""The reference ERP: a small, real ERP stand-in for the demo and the tests."""

from __future__ import annotations

from erp_adapter.reference.app import create_app
from erp_adapter.reference.emitter import RetryPolicy
from erp_adapter.reference.erp import ReferenceErp
from erp_adapter.reference.errors import ConflictError, ErpError, InputError, NotFoundError
from erp_adapter.reference.faults import FaultMode
from erp_adapter.reference.records import (
    EventRecord,
    Order,
    Requisition,
    WriteBackRecord,
)

__all__ = [
    "ConflictError",
    "ErpError",
    "EventRecord",
    "FaultMode",
    "InputError",
    "NotFoundError",
    "Order",
    "ReferenceErp",
    "Requisition",
    "RetryPolicy",
    "WriteBackRecord",
    "create_app",
]
