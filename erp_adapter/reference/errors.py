"""Typed errors of the reference ERP, each with the HTTP status its control API answers."""

from __future__ import annotations


class ErpError(Exception):
    """Base error: an operation the reference ERP refuses, with a status and an error code."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        """The JSON body the control API answers with."""
        return {"error": self.code, "message": self.message}


class InputError(ErpError):
    """Malformed or incomplete input (400)."""

    status = 400
    code = "invalid_payload"


class NotFoundError(ErpError):
    """No such document (404)."""

    status = 404
    code = "not_found"


class ConflictError(ErpError):
    """The document's state forbids the operation (409)."""

    status = 409
    code = "conflict"


class NotReadyError(ErpError):
    """Events cannot be emitted yet: no bridge URL, or not started (503)."""

    status = 503
    code = "not_ready"
