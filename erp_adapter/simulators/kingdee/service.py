"""DynamicFormService operations: rights, then the operation, answered in each one's envelope."""

from __future__ import annotations

from typing import Any

from erp_adapter.simulators.kingdee.model import Bill, OpError, Store
from erp_adapter.simulators.kingdee.query import as_dicts, get_key, run_query
from erp_adapter.simulators.kingdee.rows import canonical_form
from erp_adapter.simulators.kingdee.save import save, view

WRITE_OPS = {"save", "submit", "audit", "unaudit", "cancelassign", "delete", "excuteoperation"}
QUERY_OPS = {"executebillquery", "billquery"}
FORM_NAMES = {"PUR_PurchaseOrder": "采购订单", "PUR_Requisition": "采购申请单"}
_RIGHT = {"executebillquery": "查看", "billquery": "查看", "view": "查看", "save": "新增"}
_RIGHT |= {"submit": "提交", "audit": "审核", "unaudit": "反审核", "cancelassign": "撤销"}
_RIGHT |= {"delete": "删除", "excuteoperation": "作废", "workflowaudit": "审核"}


def status(errors: list[dict[str, Any]], msg_code: int = 0) -> dict[str, Any]:
    """A ResponseStatus."""
    return {
        "ErrorCode": 500 if errors else 0,
        "IsSuccess": not errors,
        "Errors": errors,
        "SuccessEntitys": [],
        "SuccessMessages": [],
        "MsgCode": msg_code,
    }


def failure(op: str, message: str, msg_code: int, field: str | None = None) -> Any:
    """A refusal in the envelope the operation uses."""
    rs = status([{"FieldName": field, "Message": message, "DIndex": 0}], msg_code)
    if op in QUERY_OPS:
        return [[{"Result": {"ResponseStatus": rs}}]]
    if op == "view":
        return {"Result": {"ResponseStatus": rs}}
    return {"Result": {"ResponseStatus": rs, "Id": "", "Number": "", "NeedReturnData": []}}


class FormService:
    """Runs one operation for an authenticated caller against the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.denied: set[tuple[str, str]] = set()

    def call(self, op: str, formid: str | None, op_number: str | None, data: Any) -> Any:
        """One operation; a refusal comes back as data (HTTP 200), as the real server does."""
        if not isinstance(data, dict):
            return failure(op, "参数 data 格式不正确", 8)
        form_raw = formid or str(get_key(data, "FormId", "") or "")
        form = canonical_form(form_raw)
        try:
            if form is None:
                raise OpError(f"业务对象“{form_raw}”不存在", 5 if not form_raw else 9)
            self._check_right(op, form, op_number)
            return self._run(op, form, op_number, data)
        except OpError as exc:
            return failure(op, exc.message, exc.msg_code, exc.field_name)

    def _check_right(self, op: str, form: str, op_number: str | None) -> None:
        key = (form.lower(), op if op != "excuteoperation" else f"op:{(op_number or '').lower()}")
        if key in self.denied or (form.lower(), op) in self.denied:
            name = FORM_NAMES.get(form, form)
            raise OpError(f"没有“{name}”的“{_RIGHT.get(op, op)}”权限", 2)

    def _run(self, op: str, form: str, op_number: str | None, data: dict[str, Any]) -> Any:
        if op == "executebillquery":
            return run_query(self.store, data)[1]
        if op == "billquery":
            return as_dicts(*run_query(self.store, data))
        if op == "view":
            return {
                "Result": {
                    "ResponseStatus": None,
                    "Result": view(self.store, self._one(form, data)),
                }
            }
        if op == "save":
            bill = save(self.store, form, data)
            return _success([bill])
        if op == "workflowaudit":
            return self._workflow(form, data)
        bills = self._targets(form, data)
        errors: list[dict[str, Any]] = []
        done: list[Bill] = []
        code = 0
        for index, bill in enumerate(bills):
            try:
                self._act(op, op_number, bill, data)
                done.append(bill)
            except OpError as exc:
                errors.append(
                    {"FieldName": exc.field_name, "Message": exc.message, "DIndex": index}
                )
                code = exc.msg_code
        if errors:
            body = _success(done)
            body["Result"]["ResponseStatus"].update(status(errors, code))
            body["Result"]["ResponseStatus"]["SuccessEntitys"] = _entities(done)
            return body
        return _success(done)

    def _act(self, op: str, op_number: str | None, bill: Bill, data: dict[str, Any]) -> None:
        if op == "submit":
            self.store.submit(bill)
        elif op == "audit":
            verify = str(get_key(data, "IsVerifyProcInst", "true")).lower() != "false"
            self.store.audit(bill, verify)
        elif op == "unaudit":
            self.store.unaudit(bill)
        elif op == "cancelassign":
            self.store.cancel_assign(bill)
        elif op == "delete":
            self.store.delete(bill)
        elif op == "excuteoperation" and (op_number or "").lower() == "cancel":
            self.store.void(bill)
        else:
            raise OpError(f"操作“{op_number or op}”不存在", 3)

    def _workflow(self, form: str, data: dict[str, Any]) -> Any:
        approval_type = int(get_key(data, "ApprovalType", 0) or 0)
        disposition = str(get_key(data, "Disposition", "") or "")
        done: list[Bill] = []
        for bill in self._targets(form, data):
            self.store.workflow_audit(bill, approval_type, disposition)
            done.append(bill)
        body = _success(done)
        body["Result"]["OperationResults"] = [{"Id": b.fid, "Number": b.number} for b in done]
        return body

    def _targets(self, form: str, data: dict[str, Any]) -> list[Bill]:
        numbers = get_key(data, "Numbers") or []
        ids = get_key(data, "Ids") or ""
        if isinstance(ids, str):
            id_list = [int(i) for i in ids.split(",") if i.strip()]
        else:
            id_list = [int(i) for i in ids]
        bills = [self.store.by_number(form, str(n)) for n in numbers]
        for fid in id_list:
            bill = self.store.bills.get(fid)
            if bill is None or bill.form != form:
                raise OpError(f"内码为“{fid}”的单据不存在", 10)
            bills.append(bill)
        if not bills:
            raise OpError("Numbers 和 Ids 不能同时为空", 8)
        return bills

    def _one(self, form: str, data: dict[str, Any]) -> Bill:
        number = get_key(data, "Number")
        fid = get_key(data, "Id")
        if number:
            return self.store.by_number(form, str(number))
        bill = self.store.bills.get(int(fid)) if fid else None
        if bill is None or bill.form != form:
            raise OpError("单据不存在", 10)
        return bill


def _entities(bills: list[Bill]) -> list[dict[str, Any]]:
    return [{"Id": b.fid, "Number": b.number, "DIndex": i} for i, b in enumerate(bills)]


def _success(bills: list[Bill]) -> dict[str, Any]:
    rs = status([])
    rs["SuccessEntitys"] = _entities(bills)
    first = bills[0] if bills else None
    return {
        "Result": {
            "ResponseStatus": rs,
            "Id": first.fid if first else "",
            "Number": first.number if first else "",
            "NeedReturnData": [{}],
        }
    }
