"""Document lifecycle on the simulated site: insert, save, submit, cancel, workflow, tags."""

from __future__ import annotations

from dataclasses import dataclass, field

from erp_adapter.simulators.erpnext import controllers, schema
from erp_adapter.simulators.erpnext.errors import (
    DocstatusTransitionError,
    DoesNotExistError,
    PermissionError,
    ValidationError,
    WorkflowTransitionError,
)
from erp_adapter.simulators.erpnext.site import ADMIN, Doc, Site, coerce


class UpdateAfterSubmitError(ValidationError):
    """417: a submitted or cancelled document is read-only."""

    exc_type = "UpdateAfterSubmitError"


class WorkflowPermissionError(ValidationError):
    """417: a save tried to jump to a workflow state no transition leads to."""

    exc_type = "WorkflowPermissionError"


@dataclass
class Transition:
    """A Workflow Transition row."""

    state: str
    action: str
    next_state: str
    allowed: str
    allow_self_approval: bool = True


@dataclass
class Workflow:
    """The Purchase Order workflow (Setup > Workflow), as ERPNext's usual approval one."""

    name: str = "Purchase Order Approval"
    document_type: str = "Purchase Order"
    active: bool = True
    states: dict[str, int] = field(
        default_factory=lambda: {
            "Draft": 0,
            "Pending Approval": 0,
            "Approved": 1,
            "Rejected": 0,
            "Cancelled": 2,
        }
    )
    transitions: list[Transition] = field(
        default_factory=lambda: [
            Transition("Draft", "Submit for Approval", "Pending Approval", "Purchase User"),
            Transition("Pending Approval", "Approve", "Approved", "Purchase Manager"),
            Transition("Pending Approval", "Reject", "Rejected", "Purchase Manager"),
            Transition("Rejected", "Revise", "Draft", "Purchase User"),
        ]
    )

    def first_state(self) -> str:
        """Where a new document starts."""
        return next(iter(self.states))


class DocFlow:
    """The lifecycle operations a user performs through the API."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.workflow: Workflow | None = Workflow()
        self.ignore_workflow_actions = False
        """Fault: `apply_workflow` answers 200 with the document as it was (nothing moved)."""

    def _workflow_for(self, doctype: str) -> Workflow | None:
        flow = self.workflow
        return flow if flow and flow.active and flow.document_type == doctype else None

    def insert(self, user: str, doctype: str, data: Doc) -> Doc:
        """`POST /api/resource/<doctype>` / `frappe.client.insert`."""
        if not schema.known(doctype) or doctype in schema.CHILD_OF:
            raise DoesNotExistError(f"DocType {doctype} not found")
        self.site.require(user, doctype, "create")
        doc = self.site.create(user, doctype, data)
        flow = self._workflow_for(doctype)
        if flow:
            state = doc.get("workflow_state") or flow.first_state()
            if state != flow.first_state():
                raise WorkflowPermissionError(
                    f"Workflow State transition not allowed from {flow.first_state()} to {state}"
                )
            doc["workflow_state"] = state
        controllers.validate(self.site, user, doc)
        self.site.table(doctype)[doc["name"]] = doc
        self.site.touch(doc, user)
        return doc

    def update(self, user: str, doctype: str, name: str, data: Doc) -> Doc:
        """`PUT /api/resource/<doctype>/<name>`: merge, check freshness, validate, save."""
        doc = self.site.get(doctype, name)
        self.site.require(user, doctype, "write")
        if doc["docstatus"] != 0:
            raise UpdateAfterSubmitError(f"Cannot edit {doctype} {name}: it is submitted")
        self.site.check_latest(doc, data)
        flow = self._workflow_for(doctype)
        if flow and data.get("workflow_state") not in (None, doc.get("workflow_state")):
            raise WorkflowPermissionError(
                "Workflow State transition not allowed from "
                f"{doc.get('workflow_state')} to {data['workflow_state']}"
            )
        new = self.site.create(user, doctype, {**doc, **data}, name="\x00")
        for key, value in new.items():
            if key in data and key not in ("name", "owner", "creation", "modified"):
                doc[key] = value if key in schema.TABLES.get(doctype, {}) else coerce(key, value)
        for table in schema.TABLES.get(doctype, {}):
            for row in doc.get(table, []):
                row["parent"] = name
        controllers.validate(self.site, user, doc)
        self.site.touch(doc, user)
        return doc

    def _set_docstatus(self, doc: Doc, user: str, docstatus: int) -> None:
        doc["docstatus"] = docstatus
        controllers.validate(self.site, user, doc)
        self.site.touch(doc, user)

    def submit(self, user: str, sent: Doc) -> Doc:
        """`frappe.client.submit`: the client's copy must be the latest (`modified`)."""
        doctype, name = str(sent.get("doctype") or ""), str(sent.get("name") or "")
        doc = self.site.get(doctype, name)
        self.site.check_latest(doc, sent)
        self.site.require(user, doctype, "submit")
        if doctype not in schema.SUBMITTABLE or doc["docstatus"] != 0:
            raise DocstatusTransitionError(f"Cannot change docstatus from {doc['docstatus']} to 1")
        flow = self._workflow_for(doctype)
        if flow and flow.states.get(doc.get("workflow_state") or "", 0) != 1:
            raise WorkflowPermissionError(
                f"Workflow State transition not allowed from {doc.get('workflow_state')} "
                f"to {doc.get('workflow_state')}: submit through a workflow action"
            )
        self._set_docstatus(doc, user, 1)
        return doc

    def cancel(self, user: str, doctype: str, name: str) -> Doc:
        """`frappe.client.cancel`: only a submitted document can be cancelled."""
        doc = self.site.get(doctype, name)
        self.site.require(user, doctype, "cancel")
        if doc["docstatus"] != 1:
            raise DocstatusTransitionError(f"Cannot change docstatus from {doc['docstatus']} to 2")
        flow = self._workflow_for(doctype)
        if flow:
            doc["workflow_state"] = next(
                (s for s, status in flow.states.items() if status == 2), doc.get("workflow_state")
            )
        self._set_docstatus(doc, user, 2)
        return doc

    def apply_workflow(self, user: str, sent: Doc, action: str) -> Doc:
        """`frappe.model.workflow.apply_workflow`: reloads the doc, then runs one transition."""
        doctype, name = str(sent.get("doctype") or ""), str(sent.get("name") or "")
        doc = self.site.read(user, doctype, name)  # load_from_db: the client's copy is ignored
        flow = self._workflow_for(doctype)
        if flow is None:
            raise DoesNotExistError(f"Workflow for {doctype} not found")
        if self.ignore_workflow_actions:
            return doc
        roles = self.site.roles(user)
        transitions = [
            t
            for t in flow.transitions
            if doc["docstatus"] != 2
            and t.state == doc.get("workflow_state")
            and (user == ADMIN or t.allowed in roles)
        ]
        transition = next((t for t in transitions if t.action == action), None)
        if transition is None:
            raise WorkflowTransitionError("Not a valid Workflow Action")
        if user != ADMIN and not transition.allow_self_approval and user == doc["owner"]:
            raise ValidationError("Self approval is not allowed")
        target = flow.states.get(transition.next_state, 0)
        needed = (
            {0: "write", 1: "submit", 2: "cancel"}[target]
            if target != doc["docstatus"]
            else "write"
        )
        self.site.require(user, doctype, needed)
        doc["workflow_state"] = transition.next_state
        self._set_docstatus(doc, user, target)
        return doc

    def tag(self, user: str, tag: str, doctype: str, name: str, add: bool) -> None:
        """`frappe.desk.doctype.tag.tag.add_tag` / `remove_tag`: `_user_tags`, not `modified`."""
        doc = self.site.read(user, doctype, name)
        tags = [t for t in str(doc.get("_user_tags") or "").split(",") if t and t != tag]
        if add:
            tags.append(tag)
        doc["_user_tags"] = "," + ",".join(tags) if tags else ""


def require_method(method: str, allowed: tuple[str, ...], used: str) -> None:
    """Frappe refuses a whitelisted method called with an HTTP method it does not allow."""
    if used not in allowed:
        raise PermissionError(f"Not permitted: {method} accepts {', '.join(allowed)}")


__all__ = ["DocFlow", "Transition", "Workflow", "require_method"]
