"""The exceptions the simulated Odoo raises, named as Odoo's own (`odoo.exceptions.*`)."""

from __future__ import annotations


class OdooError(Exception):
    """An exception Odoo serialises with its qualified name."""

    name = "builtins.Exception"
    fault_code = 1
    """XML-RPC `/xmlrpc/2` fault code: 1 application error, 2 user error, 3 denied, 4 access."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserError(OdooError):
    """A business rule refused the call."""

    name = "odoo.exceptions.UserError"
    fault_code = 2


class ValidationError(UserError):
    """A constraint failed."""

    name = "odoo.exceptions.ValidationError"


class MissingError(UserError):
    """A record no longer exists."""

    name = "odoo.exceptions.MissingError"


class AccessDenied(OdooError):
    """Wrong login, password or API key."""

    name = "odoo.exceptions.AccessDenied"
    fault_code = 3

    def __init__(self, message: str = "Access Denied") -> None:
        super().__init__(message)


class AccessError(OdooError):
    """The user lacks the rights for the operation."""

    name = "odoo.exceptions.AccessError"
    fault_code = 4


class BadCall(OdooError):
    """A Python error raised by the server code (wrong field, argument or method)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.name = f"builtins.{kind}"
