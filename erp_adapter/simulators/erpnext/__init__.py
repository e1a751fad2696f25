"""A protocol-faithful ERPNext (Frappe REST/RPC) simulator for tests and the demo."""

from erp_adapter.simulators.erpnext.sim import ErpnextSimulator

__all__ = ["ErpnextSimulator"]
