"""DingTalk's HTTP-callback crypto (spec §6.3), written here from the spec, not shared."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import string
import struct
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 32
"""DingTalk pads to a 32-byte block (PKCS#7 style), not AES's 16."""
_ALPHABET = string.ascii_letters + string.digits


class CryptoError(Exception):
    """A callback that cannot be decrypted or verified; `code` is DingTalk's 9000xx number."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def random_text(length: int = 16) -> str:
    """Random letters and digits, as DingTalk uses for nonces and the 16-byte prefix."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1 hex of the four strings sorted and concatenated."""
    joined = "".join(sorted([token, timestamp, nonce, encrypt]))
    return hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()


class CallbackCrypto:
    """Encrypts, decrypts and signs callback messages for one token, AES key and owner key."""

    def __init__(self, token: str, aes_key: str, owner_key: str) -> None:
        if len(aes_key) != 43:
            raise CryptoError(900004, "illegal aes key: it must be 43 characters")
        try:
            self._key = base64.b64decode(aes_key + "=", validate=True)
        except binascii.Error as exc:
            raise CryptoError(900004, f"illegal aes key: {exc}") from exc
        if len(self._key) != 32:
            raise CryptoError(900004, "illegal aes key: it must decode to 32 bytes")
        self.token = token
        self.owner_key = owner_key

    def encrypt(self, message: str, prefix: str | None = None) -> str:
        """base64(AES-256-CBC(prefix16 + len + message + owner key)), iv = key[:16]."""
        head = (prefix if prefix is not None else random_text()).encode()
        if len(head) != 16:
            raise ValueError("the random prefix must be 16 bytes")
        body = message.encode()
        plain = head + struct.pack(">I", len(body)) + body + self.owner_key.encode()
        pad = _BLOCK - len(plain) % _BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypt: str) -> str:
        """The message inside `encrypt`, after checking the padding and the owner key."""
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except binascii.Error as exc:
            raise CryptoError(900008, f"bad base64: {exc}") from exc
        if not raw or len(raw) % 16:
            raise CryptoError(900008, "ciphertext is not a whole number of AES blocks")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or len(plain) < 20 + pad:
            raise CryptoError(900008, "bad padding")
        plain = plain[:-pad]
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise CryptoError(900008, "bad message length")
        message, owner = plain[20 : 20 + length], plain[20 + length :]
        if owner.decode(errors="replace") != self.owner_key:
            raise CryptoError(900010, "owner key (corpId or app key) does not match")
        try:
            return message.decode()
        except UnicodeDecodeError as exc:
            raise CryptoError(900008, "message is not UTF-8") from exc

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """The signature for these values under this token."""
        return signature(self.token, timestamp, nonce, encrypt)

    def verify(self, signed: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Raise CryptoError 900005 when `signed` is not the signature of the values."""
        if not secrets.compare_digest(
            signed.encode(), self.sign(timestamp, nonce, encrypt).encode()
        ):
            raise CryptoError(900005, "signature mismatch")

    def envelope(self, message: str, timestamp: str, nonce: str | None = None) -> dict[str, Any]:
        """The encrypted reply body: `msg_signature`, `timeStamp`, `nonce`, `encrypt`."""
        nonce = nonce or random_text()
        encrypt = self.encrypt(message)
        return {
            "msg_signature": self.sign(timestamp, nonce, encrypt),
            "timeStamp": timestamp,
            "nonce": nonce,
            "encrypt": encrypt,
        }

    def open_envelope(self, body: Any) -> str:
        """Verify and decrypt a reply body as `envelope` builds it."""
        if not isinstance(body, dict):
            raise CryptoError(900008, "the reply is not a JSON object")
        values = [body.get(k) for k in ("msg_signature", "timeStamp", "nonce", "encrypt")]
        if not all(isinstance(v, str) and v for v in values):
            raise CryptoError(900008, "the reply lacks msg_signature, timeStamp, nonce or encrypt")
        signed, timestamp, nonce, encrypt = (str(v) for v in values)
        self.verify(signed, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII kept, as DingTalk sends it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
