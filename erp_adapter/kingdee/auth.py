"""K3Cloud request signing: the SDK-8.x per-request headers and the LoginBySign sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

# The SDK de-obfuscates the app id's second half with this fixed key: it is
# rot13("0054s397p6234378o09pn7q3r5qropr7") (k3cloud_webapi_sdk/util/encode_util.py).
_OBFUSCATION_KEY = b"0054f397c6234378b09ca7d3e5debce7"


@dataclass(frozen=True)
class Credentials:
    """Who the bridge signs as."""

    acct_id: str
    username: str
    app_id: str
    app_secret: str
    lcid: int
    org_number: str


def _hmac_b64_hex(key: str, message: str) -> str:
    """Kingdee encodes the hex text of the HMAC in base64, not the raw digest."""
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def client_secret(app_id: str) -> str:
    """The X-Api-Signature key hidden in the app id (`<clientId>_<32 chars>`); '' if malformed."""
    parts = app_id.split("_")
    if len(parts) != 2 or len(parts[1]) != 32:
        return ""
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return ""
    return base64.b64encode(
        bytes(b ^ k for b, k in zip(raw, _OBFUSCATION_KEY, strict=False))
    ).decode()


def signed_headers(creds: Credentials, path: str, now_s: int) -> dict[str, str]:
    """The headers of one signed call to `path` (URL path only) at Unix time `now_s`."""
    timestamp = nonce = str(now_s)
    quoted = quote(path, encoding="utf-8").replace("/", "%2F")
    api_sign = f"POST\n{quoted}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp}\n"
    app_data = f"{creds.acct_id},{creds.username},{creds.lcid},{creds.org_number}"
    return {
        "X-Api-ClientID": creds.app_id.split("_")[0],
        "X-Api-Auth-Version": "2.0",
        "x-api-timestamp": timestamp,
        "x-api-nonce": nonce,
        "x-api-signheaders": "x-api-timestamp,x-api-nonce",
        "X-Api-Signature": _hmac_b64_hex(client_secret(creds.app_id), api_sign),
        "X-Kd-Appkey": creds.app_id,
        "X-Kd-Appdata": base64.b64encode(app_data.encode()).decode(),
        "X-Kd-Signature": _hmac_b64_hex(creds.app_secret, creds.app_id + app_data),
    }


def login_sign(creds: Credentials, now_s: int) -> str:
    """LoginBySign's sign: sha256 of the ordinal-sorted fields, concatenated."""
    fields = sorted([creds.acct_id, creds.username, creds.app_id, creds.app_secret, str(now_s)])
    return hashlib.sha256("".join(fields).encode()).hexdigest()
