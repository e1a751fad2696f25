"""Reading request fields the way DingTalk checks them, failing with invalidParameter."""

from __future__ import annotations

from typing import Any

from bot.sandbox.errors import ApiError, invalid


def obj(body: Any) -> dict[str, Any]:
    """The body as a JSON object."""
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    return body


def text(body: dict[str, Any], key: str, *, code: str | None = None) -> str:
    """A required non-empty string; `code` overrides the error code when it is missing."""
    value = body.get(key)
    if value is None or value == "":
        raise ApiError(code or "invalidParameter", f"{key} is mandatory for this action")
    if not isinstance(value, str):
        raise invalid(f"{key} must be a string")
    return value


def opt_text(body: dict[str, Any], key: str, default: str = "") -> str:
    """An optional string."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid(f"{key} must be a string")
    return value


def integer(body: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    """A Long; numeric strings are accepted as the gateway converts them."""
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise invalid(f"{key} is mandatory for this action")
        return None
    if isinstance(value, bool):
        raise invalid(f"{key} must be a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise invalid(f"{key} must be a number")


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    """A Boolean."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"{key} must be true or false")
    return value


def strings(body: dict[str, Any], key: str, *, limit: int | None = None) -> list[str]:
    """An optional list of non-empty strings, at most `limit` long."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid(f"{key} must be a list of strings")
    if limit is not None and len(value) > limit:
        raise invalid(f"{key} can have at most {limit} items")
    return list(value)
