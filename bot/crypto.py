"""DingTalk HTTP-callback crypto: AES-256-CBC, 32-byte PKCS#7, SHA-1 signatures (spec §6.3)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32
"""DingTalk pads to 32 bytes, not AES's 16 (§6.3)."""

_ALPHABET = string.ascii_letters + string.digits


class CryptoError(Exception):
    """Base of the callback crypto errors."""


class BadKey(CryptoError):
    """The EncodingAESKey is not 43 base64 characters (DingTalk's 900004)."""


class BadSignature(CryptoError):
    """The signature does not match token, timestamp, nonce and ciphertext (900005)."""


class BadCiphertext(CryptoError):
    """The ciphertext is not base64, not whole blocks, or its padding or layout is wrong."""


class OwnerMismatch(CryptoError):
    """The message was encrypted for another app or corp (900010)."""


def random_text(size: int = 16) -> str:
    """Random letters and digits, as the official library uses for the prefix and nonce."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(size))


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1 hex over the sorted concatenation of token, timestamp, nonce and ciphertext."""
    joined = "".join(sorted([token, timestamp, nonce, encrypt]))
    return hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()


class CallbackCrypto:
    """Encrypts, decrypts and signs callback messages for one app's token, key and owner."""

    def __init__(self, token: str, aes_key: str, owner_key: str) -> None:
        if len(aes_key) != 43:
            raise BadKey("the EncodingAESKey must be 43 characters")
        try:
            key = base64.b64decode(aes_key + "=", validate=True)
        except binascii.Error:
            raise BadKey("the EncodingAESKey must be base64 letters and digits") from None
        self._token = token
        self._key = key
        self._owner = owner_key.encode()

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """This app's signature over a message."""
        return signature(self._token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Raise BadSignature unless the signature matches (constant-time)."""
        expected = self.signature(timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), msg_signature.lower().encode()):
            raise BadSignature("signature mismatch")

    def _cipher(self) -> Cipher[modes.CBC]:
        # iv = the key's first 16 bytes (§6.3); no cipher padding, the layout pads itself.
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, msg: str, random16: bytes | None = None) -> str:
        """random16 + big-endian length + msg + owner key, padded to 32 bytes, as base64."""
        prefix = random16 if random16 is not None else random_text().encode()
        if len(prefix) != 16:
            raise ValueError("random16 must be 16 bytes")
        body = msg.encode()
        plain = prefix + len(body).to_bytes(4, "big") + body + self._owner
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypt: str) -> str:
        """The message inside; raises BadCiphertext or OwnerMismatch."""
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise BadCiphertext("not base64") from None
        if not raw or len(raw) % 16:
            raise BadCiphertext("not whole AES blocks")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise BadCiphertext("bad padding")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise BadCiphertext("too short")
        size = int.from_bytes(plain[16:20], "big")
        if 20 + size > len(plain):
            raise BadCiphertext("length field past the end")
        body, owner = plain[20 : 20 + size], plain[20 + size :]
        if not hmac.compare_digest(owner, self._owner):
            raise OwnerMismatch("encrypted for another app or corp")
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise BadCiphertext("not UTF-8") from None

    def reply(
        self, msg: str = "success", timestamp: str | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """The JSON body DingTalk expects back: `msg_signature`, `timeStamp`, `nonce`, `encrypt`."""
        stamp = timestamp or str(int(time.time() * 1000))  # ms, as the Java library does (§6.4)
        nonce = nonce or random_text()
        encrypt = self.encrypt(msg)
        return {
            "msg_signature": self.signature(stamp, nonce, encrypt),
            "timeStamp": stamp,
            "nonce": nonce,
            "encrypt": encrypt,
        }
