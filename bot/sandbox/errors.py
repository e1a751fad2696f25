"""Errors in DingTalk's two shapes (new API, old API) and the control API's own."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A new-API failure: HTTP status with `{"code", "message", "requestid"}`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class OapiError(Exception):
    """An old-API failure: HTTP 200 with `{"errcode", "errmsg"}`."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class ControlError(Exception):
    """A control-API failure: `{"error", "message"}` with an HTTP status."""

    def __init__(self, error: str, message: str, status: int = 400) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.error = error
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        """The body the control API answers with."""
        return {"error": self.error, "message": self.message}


def invalid(message: str) -> ApiError:
    """DingTalk's generic 400 for a missing or malformed parameter."""
    return ApiError("invalidParameter", message)
