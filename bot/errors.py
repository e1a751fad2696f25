"""Typed DingTalk errors (built on the core's) and the one mapping of DingTalk answers to them."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from approvals.errors import BridgeError, Permanent, Retryable, Throttled

QUOTA_RETRY_AFTER_S = 900.0
"""How long work waits once the monthly call quota is spent (spec section 8.2, 90020), unless
the client's quota gate (`bot.quota`) says when it probes next, as it does for its own calls."""
BANNED_RETRY_AFTER_S = 300.0
"""An IP ban lasts 5 minutes (spec section 8.2, 10,000 calls in 20 s)."""


class DingTalkError(BridgeError):
    """Anything the DingTalk client raises: which API, DingTalk's code, HTTP status, request id.

    Subclasses list it first among their bases, so this one constructor serves them all and
    hands `retry_after` on to the core's `Retryable` where the error is one.
    """

    default_retry_after: float | None = None

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        api: str = "",
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        if isinstance(self, Retryable):
            wait = self.default_retry_after if retry_after is None else retry_after
            Retryable.__init__(self, message, wait)
        else:
            BridgeError.__init__(self, message)
        self.api, self.code, self.status, self.request_id = api, code, status, request_id


class DingTalkAuthError(DingTalkError, Permanent):
    """The app cannot authenticate (wrong key or secret, missing permission, IP not allowed)."""


class DingTalkBadRequest(DingTalkError, Permanent):
    """DingTalk refused the request itself (a 4xx with a `code`, or `success: false`)."""


class SessionExpired(DingTalkBadRequest):
    """A robot message's sessionWebhook is gone (errcode 300001, spec section 5.6)."""


class DingTalkThrottled(DingTalkError, Throttled):
    """DingTalk still says slow down after the client's own waits: a wait, not a failure."""


class QuotaExhausted(DingTalkError, Throttled):
    """The organisation's monthly call quota is spent (403 ApiCountLimitForOrg, old 90020).

    A wait, not a failure (as throttling is): the work is held until calls are allowed again.
    """

    default_retry_after = QUOTA_RETRY_AFTER_S


class DingTalkUnavailable(DingTalkError, Retryable):
    """DingTalk could not be reached or failed on its side (5xx, timeout, refused connection)."""


class Outcome(Enum):
    """How one DingTalk answer is to be treated by the client."""

    OK = "ok"
    REAUTH = "reauth"
    """The access token was refused: fetch a new one once and retry (spec section 2.3)."""
    THROTTLE = "throttle"
    """A per-second limit: wait and retry inside the client (spec section 8.2)."""
    FAIL = "fail"
    """Raise the error as it is."""


_TOKEN_CODES = frozenset({"InvalidAuthentication", "accesstoken.expired", "Unauthorized"})
_AUTH_CODES = frozenset(
    {
        "invalidClientIdOrSecret",
        "authFailed",
        "Forbidden.AccessDenied.AccessTokenPermissionDenied",
        "Forbidden.AccessDenied.IpNotInWhiteList",
    }
)
# Per-second limits, a generic 403 and "system busy": all a short wait (spec section 8.2).
_THROTTLE_CODES = frozenset(
    {"Forbidden", "system.busy", "systemBusy", "send.too.fast", "autoflowLikeTriggerRateLimited"}
)
_OLD_TOKEN = frozenset({40014, 42001, 41001, 40001})
_OLD_THROTTLE = frozenset({90018, 90002, -1})
_OLD_BANS = frozenset({90001, *range(90003, 90018)}) - _OLD_THROTTLE
_SESSION_GONE = 300001


def classify(
    api: str, status: int, body: Mapping[str, Any] | None, text: str
) -> tuple[Outcome, DingTalkError | None]:
    """Turn one HTTP answer (new or old API) into an outcome and, unless OK, the error to raise."""
    body = body or {}
    request_id = _str(body.get("requestid") or body.get("request_id"))
    where = f"DingTalk {api} answered HTTP {status}"
    if "errcode" in body and (200 <= status < 300 or body.get("errcode") not in (0, "0")):
        return _classify_old(api, status, body, request_id)
    code = _str(body.get("code") or body.get("Code"))
    message = _str(body.get("message") or body.get("errmsg")) or text[:200]
    detail = f"{where}: {code or '-'}: {message} (request id {request_id or '-'})"
    kw: dict[str, Any] = {"api": api, "code": code, "status": status, "request_id": request_id}
    if 200 <= status < 300:
        if body.get("success") in (False, "false"):
            return Outcome.FAIL, DingTalkBadRequest(f"{where} with success=false: {detail}", **kw)
        return Outcome.OK, None
    if (status == 401 and code not in _AUTH_CODES) or code in _TOKEN_CODES:
        return Outcome.REAUTH, DingTalkAuthError(f"access token refused: {detail}", **kw)
    if code in _AUTH_CODES:
        return Outcome.FAIL, DingTalkAuthError(f"check app_key and app_secret: {detail}", **kw)
    if code is not None and "ApiCountLimitForOrg" in code:
        return Outcome.FAIL, QuotaExhausted(f"monthly call quota spent: {detail}", **kw)
    if status == 429 or (code is not None and ("QpsLimit" in code or "QpmLimit" in code)):
        return Outcome.THROTTLE, DingTalkThrottled(detail, **kw)
    if code in _THROTTLE_CODES:
        return Outcome.THROTTLE, DingTalkThrottled(detail, **kw)
    if status == 403 and (not body or "punish" in body):
        # An IP ban answers with HTML or {"status":1111,"punish":"deny",...} (spec section 8.2).
        return Outcome.FAIL, DingTalkThrottled(f"IP banned: {detail}", BANNED_RETRY_AFTER_S, **kw)
    if status >= 500 or status == 408 or not 400 <= status < 500:
        return Outcome.FAIL, DingTalkUnavailable(detail, **kw)
    return Outcome.FAIL, DingTalkBadRequest(detail, **kw)


def _classify_old(
    api: str, status: int, body: Mapping[str, Any], request_id: str | None
) -> tuple[Outcome, DingTalkError | None]:
    """Old-API answers: HTTP 200 with `errcode` (spec sections 1 and 8.1)."""
    try:
        errcode = int(body.get("errcode", 0))
    except (TypeError, ValueError):
        errcode = -2
    if errcode == 0 and 200 <= status < 300:
        return Outcome.OK, None
    sub_code = _str(body.get("sub_code"))
    message = _str(body.get("errmsg")) or ""
    rid = request_id or "-"
    detail = f"DingTalk {api} answered errcode {errcode}: {message} (request id {rid})"
    kw: dict[str, Any] = {"api": api, "code": str(errcode), "status": status}
    kw["request_id"] = request_id
    if errcode in _OLD_TOKEN:
        return Outcome.REAUTH, DingTalkAuthError(f"access token refused: {detail}", **kw)
    if errcode in _OLD_THROTTLE:
        return Outcome.THROTTLE, DingTalkThrottled(detail, **kw)
    if errcode == 90020:
        return Outcome.FAIL, QuotaExhausted(f"monthly call quota spent: {detail}", **kw)
    if errcode in _OLD_BANS:
        return Outcome.FAIL, DingTalkThrottled(f"banned: {detail}", BANNED_RETRY_AFTER_S, **kw)
    if errcode == 15 or (errcode == 88 and not sub_code):
        # 88 with no sub_code is the auth service timing out, not a bad credential.
        return Outcome.FAIL, DingTalkUnavailable(detail, **kw)
    if errcode == 88:
        return Outcome.FAIL, DingTalkAuthError(f"{detail} ({sub_code})", **kw)
    if errcode == _SESSION_GONE:
        return Outcome.FAIL, SessionExpired(f"the chat session has expired: {detail}", **kw)
    return Outcome.FAIL, DingTalkBadRequest(detail, **kw)


def _str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
