"""Protocol-faithful ERP simulators (Kingdee, Odoo, ERPNext) for tests and the demo.

A simulator shares no code with the adapter it stands in for (import-linter enforces it), so
one misreading of the protocol cannot hide on both sides.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True)
class SimLine:
    """One line of an order placed in a simulator."""

    material_code: str
    quantity: Decimal
    unit_price: Decimal


class ErpSimulator(Protocol):
    """What the end-to-end tests and the demo drive, whichever the ERP."""

    name: str

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on loopback; returns the base URL to configure the bridge with."""
        ...

    async def stop(self) -> None:
        """Stop serving."""
        ...

    def bridge_section(self) -> dict[str, Any]:
        """The bridge's `[erp.<name>]` section for this simulator, without secrets."""
        ...

    def bridge_env(self) -> dict[str, str]:
        """The secrets, as the environment variables the bridge reads them from."""
        ...

    def add_material(self, code: str, name: str, unit: str = "Pcs") -> None:
        """Master data: a material (item, product)."""
        ...

    def add_history(
        self,
        material_code: str,
        supplier_code: str,
        unit_price: Decimal,
        quantity: Decimal,
        ordered_on: dt.date,
    ) -> str:
        """A past, approved purchase order of one line; returns its number."""
        ...

    def submit_order(self, supplier_code: str, buyer: str, lines: list[SimLine]) -> str:
        """A new purchase order, put where it waits for approval; returns its number."""
        ...

    def change_order(self, doc_no: str, line_index: int, quantity: Decimal) -> None:
        """Change a line of a waiting order as a user would (it waits again, re-submitted)."""
        ...

    def set_stock(
        self,
        material_code: str,
        warehouse: str,
        on_hand: Decimal,
        safety_stock: Decimal,
        reorder_qty: Decimal,
    ) -> None:
        """Quantity on hand and the safety-stock rule of a material in a warehouse."""
        ...

    def order_state(self, doc_no: str) -> str:
        """The order's native state (Kingdee FDocumentStatus, Odoo state, ERPNext status)."""
        ...

    def requisitions(self) -> list[dict[str, Any]]:
        """Requisitions raised through the API, as stored (each with the bridge's reference)."""
        ...
