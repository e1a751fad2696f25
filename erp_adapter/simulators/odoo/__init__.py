"""A protocol-faithful Odoo 16-19 simulator: JSON-RPC, XML-RPC, JSON-2 and the purchase flow."""

from __future__ import annotations

from erp_adapter.simulators.odoo.simulator import OdooSimulator

__all__ = ["OdooSimulator"]
