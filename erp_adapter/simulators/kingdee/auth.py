"""The server side of K3Cloud authentication: SDK-8.x signed headers, LoginBySign, sessions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

# rot13("0054s397p6234378o09pn7q3r5qropr7"): the fixed XOR key the SDK obfuscates app ids with.
_XOR_KEY = b"0054f397c6234378b09ca7d3e5debce7"
MAX_SKEW_S = 900
"""Signed requests older or newer than this are refused (replay window)."""


class AuthError(Exception):
    """Credentials refused."""


@dataclass
class App:
    """A third-party system registration (第三方系统登录授权): app id, secret, and its user."""

    app_id: str
    app_secret: str


@dataclass
class Identity:
    """Who a request acts as."""

    acct_id: str
    username: str
    lcid: int = 2052


@dataclass
class Auth:
    """Registered apps, the data centre (acct), users with passwords, live sessions."""

    acct_id: str
    apps: dict[str, App] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, Identity] = field(default_factory=dict)
    keep_sessions: bool = True

    def client_secret(self, app_id: str) -> str:
        """The HMAC key of X-Api-Signature: the app id's second half, de-obfuscated."""
        parts = app_id.split("_")
        if len(parts) != 2 or len(parts[1]) != 32:
            return ""
        try:
            raw = base64.b64decode(parts[1], validate=True)
        except ValueError:
            return ""
        return base64.b64encode(bytes(b ^ k for b, k in zip(raw, _XOR_KEY, strict=False))).decode()

    def verify_headers(self, headers: Mapping[str, str], path: str, now: float) -> Identity:
        """Check the SDK-8.x headers of one request; AuthError says what is wrong."""
        app_id = headers.get("X-Kd-Appkey", "")
        app = self.apps.get(app_id)
        if app is None:
            raise AuthError(f"应用ID“{app_id}”未注册或已禁用")
        timestamp = headers.get("x-api-timestamp", "")
        nonce = headers.get("x-api-nonce", "")
        try:
            skew = abs(now - int(timestamp))
        except ValueError:
            raise AuthError("x-api-timestamp 无效") from None
        if skew > MAX_SKEW_S:
            raise AuthError("请求时间戳已过期，请检查服务器时间")
        quoted = quote(path, encoding="utf-8").replace("/", "%2F")
        message = f"POST\n{quoted}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n"
        if headers.get("X-Api-ClientID", "") != app_id.split("_")[0]:
            raise AuthError("X-Api-ClientID 与应用ID不一致")
        expected = sign(self.client_secret(app_id), message)
        if not hmac.compare_digest(expected, headers.get("X-Api-Signature", "")):
            raise AuthError("X-Api-Signature 签名验证失败")
        try:
            appdata = base64.b64decode(headers.get("X-Kd-Appdata", ""), validate=True).decode()
        except ValueError:
            raise AuthError("X-Kd-Appdata 无效") from None
        expected = sign(app.app_secret, app_id + appdata)
        if not hmac.compare_digest(expected, headers.get("X-Kd-Signature", "")):
            raise AuthError("X-Kd-Signature 签名验证失败，请检查应用密钥")
        fields = appdata.split(",")
        if len(fields) < 3:
            raise AuthError("X-Kd-Appdata 无效")
        acct, user, lcid = fields[0], fields[1], fields[2]
        self._check_user(acct, user)
        return Identity(acct, user, int(lcid) if lcid.isdigit() else 2052)

    def _check_user(self, acct: str, user: str) -> None:
        if acct != self.acct_id:
            raise AuthError(f"数据中心“{acct}”不存在")
        if user not in self.passwords:
            raise AuthError(f"用户“{user}”不存在或已禁用")

    def login_by_sign(self, acct: str, user: str, app_id: str, ts: str, signature: str) -> None:
        """LoginBySign: sha256 over the sorted (acct, user, app id, secret, timestamp)."""
        app = self.apps.get(app_id)
        if app is None:
            raise AuthError(f"应用ID“{app_id}”未注册或已禁用")
        self._check_user(acct, user)
        joined = "".join(sorted([acct, user, app_id, app.app_secret, ts]))
        if not hmac.compare_digest(hashlib.sha256(joined.encode()).hexdigest(), signature.lower()):
            raise AuthError("签名信息验证失败")

    def login_by_secret(self, acct: str, user: str, app_id: str, secret: str) -> None:
        """LoginByAppSecret: the secret in clear."""
        app = self.apps.get(app_id)
        self._check_user(acct, user)
        if app is None or not hmac.compare_digest(app.app_secret, secret):
            raise AuthError("应用ID或应用密钥不正确")

    def validate_user(self, acct: str, user: str, password: str) -> None:
        """ValidateUser: user name and password."""
        self._check_user(acct, user)
        if not hmac.compare_digest(self.passwords[user], password):
            raise AuthError("用户名或密码错误")

    def open_session(self, identity: Identity) -> str:
        """A new session id (kdservice-sessionid)."""
        sid = secrets.token_hex(16)
        if self.keep_sessions:
            self.sessions[sid] = identity
        return sid


def sign(key: str, message: str) -> str:
    """base64 of the hex HMAC-SHA256 (the hex text is what gets encoded, not the digest)."""
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode()).decode()
