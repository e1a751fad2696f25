"""`/api/method/<dotted.path>`: the whitelisted Frappe methods the simulator answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from erp_adapter.simulators.erpnext.docflow import DocFlow, require_method
from erp_adapter.simulators.erpnext.errors import DoesNotExistError, PermissionError
from erp_adapter.simulators.erpnext.query import json_param
from erp_adapter.simulators.erpnext.site import Doc

Params = dict[str, Any]
_POST = ("POST", "PUT")


def _doc(params: Params, key: str = "doc") -> Doc:
    value = json_param(params.get(key), {})
    if not isinstance(value, dict):
        raise DoesNotExistError("doc must be a JSON object")
    return value


class Methods:
    """Dispatches a method name to the site, as `frappe.handler.execute_cmd` does."""

    def __init__(self, flow: DocFlow) -> None:
        self.flow = flow
        self.site = flow.site

    def call(self, user: str, name: str, params: Params, http_method: str) -> Any:
        """Run one method for a user; the return value goes in `{"message": ...}`."""
        table: dict[str, tuple[tuple[str, ...], Callable[[str, Params], Any]]] = {
            "ping": (("GET", "POST"), lambda _u, _p: "pong"),
            "frappe.ping": (("GET", "POST"), lambda _u, _p: "pong"),
            "frappe.auth.get_logged_user": (("GET", "POST"), lambda u, _p: u),
            "frappe.client.get_list": (("GET", "POST"), self._get_list),
            "frappe.client.get": (("GET", "POST"), self._get),
            "frappe.client.get_value": (("GET", "POST"), self._get_value),
            "frappe.client.insert": (_POST, self._insert),
            "frappe.client.submit": (_POST, self._submit),
            "frappe.client.cancel": (_POST, self._cancel),
            "frappe.model.workflow.apply_workflow": (_POST, self._apply_workflow),
            "frappe.desk.doctype.tag.tag.add_tag": (_POST, self._add_tag),
            "frappe.desk.doctype.tag.tag.remove_tag": (_POST, self._remove_tag),
            "frappe.desk.form.utils.add_comment": (_POST, self._add_comment),
        }
        entry = table.get(name)
        if entry is None:
            raise DoesNotExistError(f"Failed to get method for command {name}")
        if user == "Guest" and name not in ("ping", "frappe.ping"):
            raise PermissionError("Not permitted")
        require_method(name, entry[0], http_method)
        return entry[1](user, params)

    def _get_list(self, user: str, params: Params) -> Any:
        return self.site.get_list(user, str(params.get("doctype")), params)

    def _get(self, user: str, params: Params) -> Any:
        return self.site.read(user, str(params.get("doctype")), str(params.get("name")))

    def _get_value(self, user: str, params: Params) -> Any:
        fieldname = params.get("fieldname") or "name"
        try:
            fields = json.loads(fieldname) if str(fieldname).startswith("[") else [fieldname]
        except ValueError:
            fields = [fieldname]
        raw = params.get("filters")
        filters = json_param(raw, []) if str(raw or "").strip()[:1] in "[{" else {"name": raw}
        query = {"fields": fields, "filters": filters, "limit_page_length": 1}
        rows = self.site.get_list(user, str(params.get("doctype")), query)
        return rows[0] if rows else None

    def _insert(self, user: str, params: Params) -> Any:
        doc = _doc(params)
        return self.flow.insert(user, str(doc.get("doctype")), doc)

    def _submit(self, user: str, params: Params) -> Any:
        # `doclist` is the parameter's name before Frappe v6; old clients still send it
        return self.flow.submit(user, _doc(params, "doc" if "doc" in params else "doclist"))

    def _cancel(self, user: str, params: Params) -> None:
        self.flow.cancel(user, str(params.get("doctype")), str(params.get("name")))

    def _apply_workflow(self, user: str, params: Params) -> Any:
        return self.flow.apply_workflow(user, _doc(params), str(params.get("action")))

    def _add_tag(self, user: str, params: Params) -> Any:
        tag = str(params.get("tag"))
        self.flow.tag(user, tag, str(params.get("dt")), str(params.get("dn")), add=True)
        return tag

    def _remove_tag(self, user: str, params: Params) -> None:
        tag = str(params.get("tag"))
        self.flow.tag(user, tag, str(params.get("dt")), str(params.get("dn")), add=False)

    def _add_comment(self, user: str, params: Params) -> Any:
        data = {
            "reference_doctype": params.get("reference_doctype"),
            "reference_name": params.get("reference_name"),
            "content": params.get("content"),
            "comment_email": params.get("comment_email"),
            "comment_by": params.get("comment_by"),
            "comment_type": "Comment",
        }
        return self.flow.insert(user, "Comment", data)
