"""The RPC services behind every endpoint: `common` (version, login) and `object` (execute_kw)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from erp_adapter.simulators.odoo import orm, purchase
from erp_adapter.simulators.odoo.errors import AccessDenied, AccessError, BadCall
from erp_adapter.simulators.odoo.orm import Env, Store

Method = Callable[..., Any]

# Methods on a model class (no record ids): (env, model, ...).
_MODEL_METHODS: dict[str, Method] = {
    "search": orm.search,
    "search_read": orm.search_read,
    "search_count": lambda env, model, domain=None, limit=None: orm.search(
        env, model, domain, count=True
    ),
    "read": orm.read,
    "fields_get": orm.fields_get,
}


class OdooService:
    """Authentication and method dispatch over the store, shared by every protocol."""

    def __init__(self, store: Store, db: str) -> None:
        self.store = store
        self.db = db

    def version(self) -> dict[str, Any]:
        """`common.version()`: what `/web/webclient/version_info` also answers."""
        major = self.store.version
        return {
            "server_version": f"{major}.0",
            "server_version_info": [major, 0, 0, "final", 0, ""],
            "server_serie": f"{major}.0",
            "protocol_version": 1,
        }

    def login(self, db: str, login: str, password: str, *, interactive: bool = False) -> int | bool:
        """A uid, or False for wrong credentials (API keys are refused for interactive logins)."""
        if db != self.db:
            return False
        for user in self.store.table("res.users").values():
            if user["login"] == login and user.get("active", True):
                if password == user.get("password"):
                    return int(user["id"])
                if not interactive and password in user.get("api_keys", ()):
                    return int(user["id"])
        return False

    def key_user(self, api_key: str) -> int | None:
        """The user an API key belongs to (JSON-2 bearer), if any."""
        for user in self.store.table("res.users").values():
            if user.get("active", True) and api_key in user.get("api_keys", ()):
                return int(user["id"])
        return None

    def common(self, method: str, args: Sequence[Any]) -> Any:
        """The `common` service."""
        if method == "version":
            return self.version()
        if method in ("login", "authenticate"):
            db, login, password = args[0], args[1], args[2]
            return self.login(str(db), str(login), str(password))
        if method == "about":
            return "See http://openerp.com"
        raise BadCall("NameError", f"'{method}' is not a valid method of the common service")

    def object(self, method: str, args: Sequence[Any], now: Any) -> Any:
        """The `object` service: `execute(db, uid, pw, model, method, *args)` and `execute_kw`."""
        if method not in ("execute", "execute_kw"):
            raise BadCall("NameError", f"Method not available {method}")
        db, uid, password, model, name = args[:5]
        user = self.store.table("res.users").get(uid) if isinstance(uid, int) else None
        if db != self.db or user is None or self.login(db, user["login"], password) != uid:
            raise AccessDenied()
        if method == "execute":
            call_args, call_kwargs = list(args[5:]), {}
        else:
            call_args = list(args[5]) if len(args) > 5 else []
            call_kwargs = dict(args[6]) if len(args) > 6 and args[6] else {}
        return self.call(Env(self.store, uid, now), str(model), str(name), call_args, call_kwargs)

    def call(self, env: Env, model: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """One model method with its positional and keyword arguments (context is dropped)."""
        kwargs.pop("context", None)
        self.store.fields(model)  # unknown model -> UserError
        if name.startswith("_"):
            raise AccessError(
                f"Private methods (such as '{model}.{name}') cannot be called remotely."
            )
        function, needs_model = self._method(env, model, name)
        bound_args = [env, model, *args] if needs_model else [env, *args]
        try:
            inspect.signature(function).bind(*bound_args, **kwargs)
        except TypeError as exc:
            raise BadCall("TypeError", f"{model}.{name}() {exc}") from None
        return function(*bound_args, **kwargs)

    def record_method(self, model: str, name: str) -> bool:
        """Whether a method runs on records (takes `ids` first), for JSON-2's `ids` key."""
        return name not in _MODEL_METHODS and not (
            name == "create" or (name == "has_group" and self.store.version < 17)
        )

    def _method(self, env: Env, model: str, name: str) -> tuple[Method, bool]:
        if name in _MODEL_METHODS:
            return _MODEL_METHODS[name], True
        if model == "purchase.order":
            found = _ORDER_METHODS.get(name)
            if found is not None:
                return found, False
        if model == "res.users":
            if name == "context_get":
                return _context_get, False
            if name == "has_group":
                return (_has_group_model if self.store.version < 17 else _has_group), False
        raise BadCall(
            "AttributeError", f"The method '{name}' does not exist on the model '{model}'"
        )


def _create(env: Env, vals_list: Any) -> Any:
    if isinstance(vals_list, list):
        return [purchase.create_order(env, dict(v)) for v in vals_list]
    return purchase.create_order(env, dict(vals_list))


def _context_get(env: Env) -> dict[str, Any]:
    return {"lang": "en_US", "tz": "Asia/Shanghai", "uid": env.uid}


def _has_group_model(env: Env, group_ext_id: str) -> bool:
    """16: `has_group` is an `@api.model` method on the calling user."""
    return group_ext_id in env.groups()


def _has_group(env: Env, ids: Sequence[int], group_ext_id: str) -> bool:
    """17+: `has_group` runs on one user record."""
    if len(ids) != 1:
        raise BadCall("ValueError", f"Expected singleton: res.users{tuple(ids)!r}")
    return group_ext_id in Env(env.store, ids[0], env.now).groups()


def _write(env: Env, ids: Sequence[int], vals: dict[str, Any]) -> bool:
    return purchase.write_order(env, ids, vals)


_ORDER_METHODS: dict[str, Method] = {
    "create": _create,
    "write": _write,
    "button_confirm": purchase.button_confirm,
    "button_approve": purchase.button_approve,
    "button_cancel": purchase.button_cancel,
    "button_draft": purchase.button_draft,
    "message_post": purchase.message_post,
}
