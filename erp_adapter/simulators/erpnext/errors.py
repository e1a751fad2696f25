"""Frappe's exceptions as the site raises them, and the JSON error body its API answers with."""

from __future__ import annotations

import json
import uuid
from typing import Any


class FrappeError(Exception):
    """A `frappe.exceptions.*` error: its class name and HTTP status travel to the client."""

    exc_type = "ValidationError"
    http_status = 417

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body `frappe.utils.response.report_error` builds (v15 shape)."""
        text = f"frappe.exceptions.{self.exc_type}"
        if self.message:
            text = f"{text}: {self.message}"
        body: dict[str, Any] = {
            "exception": text,
            "exc_type": self.exc_type,
            "exc": json.dumps([f"Traceback (most recent call last):\n  ...\n{text}\n"]),
        }
        if self.message:
            note = {
                "message": self.message,
                "title": "Message",
                "indicator": "red",
                "raise_exception": 1,
                "__frappe_exc_id": uuid.uuid4().hex,
            }
            body["_server_messages"] = json.dumps([json.dumps(note)])
        return body


class ValidationError(FrappeError):
    """417: the document or the request is not valid."""


class DataError(ValidationError):
    """417: a query asked for something that cannot be selected or filtered."""

    exc_type = "DataError"


class TimestampMismatchError(ValidationError):
    """417: the document changed since the client read it."""

    exc_type = "TimestampMismatchError"


class WorkflowTransitionError(ValidationError):
    """417: the workflow has no such action for this user in this state."""

    exc_type = "WorkflowTransitionError"


class DocstatusTransitionError(ValidationError):
    """417: e.g. submitting a document that is already submitted."""

    exc_type = "DocstatusTransitionError"


class AuthenticationError(FrappeError):
    """401: unknown API key, wrong secret or password."""

    exc_type = "AuthenticationError"
    http_status = 401


class PermissionError(FrappeError):
    """403: the user's roles do not allow it."""

    exc_type = "PermissionError"
    http_status = 403


class DoesNotExistError(ValidationError):
    """404: no such document or doctype."""

    exc_type = "DoesNotExistError"
    http_status = 404


class OperationalError(FrappeError):
    """500: what MariaDB answers for an unknown column (Frappe does not catch it)."""

    exc_type = "OperationalError"
    http_status = 500

    def body(self) -> dict[str, Any]:
        """pymysql's error escapes Frappe's handlers: only `exception` and `exc` come back."""
        text = f"pymysql.err.OperationalError: {self.message}"
        return {"exception": text, "exc_type": self.exc_type, "exc": json.dumps([text])}
