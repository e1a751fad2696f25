"""Callback crypto against the official test vectors (reference §6.3 A, B and C)."""

from __future__ import annotations

import base64

import pytest

from bot.crypto import (
    BadCiphertext,
    BadKey,
    BadSignature,
    CallbackCrypto,
    OwnerMismatch,
    signature,
)

# Vector A: DingCallbackCrypto3.py
A_TOKEN, A_AES, A_OWNER = (
    "mryue",
    "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
    "ding6ccabc44d2c8d38b",
)
A_TS, A_NONCE = "1608001896814", "WL4PK6yA"
A_ENC = (
    "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYx"
    "xOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"
)
A_SIG = "03044561471240d4a14bb09372dfcfd4fd0e40cb"

# Vector B: the configure-stream-push FAQ (a reply DingTalk accepts)
B_TOKEN, B_AES, B_OWNER = (
    "123456",
    "1234567890123456789012345678901234567890123",
    "dingsnotzck6pm5veliw",
)
B_TS, B_NONCE = "1614767836", "A7Co0cJLMzIDtMMI"
B_ENC = "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA=="
B_SIG = "9a95a004dd16f5c307e849b994173f76aa26e5eb"

# Vector C: B's keys, random16 "aaaaaaaaaaaaaaaa", msg "success"
C_ENC = "xb2B223Q38TZgqvtbhvigfmvA/nQHMMTAiVqpBj30t8+Kg3IIqZQk5z16Awk3ljSKxonEzL0E1EqzrV/AfxVlg=="
C_SIG = "e65c50d9b5e5ab5d4b1c28873a740147bed3b5dc"


@pytest.fixture
def a() -> CallbackCrypto:
    return CallbackCrypto(A_TOKEN, A_AES, A_OWNER)


@pytest.fixture
def b() -> CallbackCrypto:
    return CallbackCrypto(B_TOKEN, B_AES, B_OWNER)


def test_vector_a_signature_and_plaintext(a: CallbackCrypto) -> None:
    assert signature(A_TOKEN, A_TS, A_NONCE, A_ENC) == A_SIG
    a.verify(A_SIG, A_TS, A_NONCE, A_ENC)
    assert a.decrypt(A_ENC) == '{"EventType":"check_url"}'


def test_vector_b_signature_and_plaintext(b: CallbackCrypto) -> None:
    assert b.signature(B_TS, B_NONCE, B_ENC) == B_SIG
    b.verify(B_SIG, B_TS, B_NONCE, B_ENC)
    assert b.decrypt(B_ENC) == "success"


def test_vector_c_encryption(b: CallbackCrypto) -> None:
    encrypted = b.encrypt("success", random16=b"aaaaaaaaaaaaaaaa")
    assert encrypted == C_ENC
    assert b.signature(B_TS, B_NONCE, encrypted) == C_SIG


def test_padding_is_a_32_byte_block(a: CallbackCrypto, b: CallbackCrypto) -> None:
    # Vector A's pad byte is 31, vector B's 17 (§6.3): only a 32-byte block gives those.
    assert len(base64.b64decode(A_ENC)) % 32 == 0
    assert len(base64.b64decode(C_ENC)) == 64
    for size in range(0, 70):
        msg = "x" * size
        assert b.decrypt(b.encrypt(msg)) == msg
        assert len(base64.b64decode(b.encrypt(msg))) % 32 == 0


def test_reply_decrypts_to_success_and_is_signed(b: CallbackCrypto) -> None:
    reply = b.reply()
    assert set(reply) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    assert len(reply["nonce"]) == 16 and reply["timeStamp"].isdigit()
    b.verify(reply["msg_signature"], reply["timeStamp"], reply["nonce"], reply["encrypt"])
    assert b.decrypt(reply["encrypt"]) == "success"
    assert b.reply()["encrypt"] != reply["encrypt"]  # a fresh random prefix every time


def test_a_tampered_signature_is_refused(a: CallbackCrypto) -> None:
    with pytest.raises(BadSignature):
        a.verify(A_SIG[:-1] + "0", A_TS, A_NONCE, A_ENC)
    with pytest.raises(BadSignature):
        a.verify(A_SIG, A_TS, "other", A_ENC)
    with pytest.raises(BadSignature):
        CallbackCrypto("other", A_AES, A_OWNER).verify(A_SIG, A_TS, A_NONCE, A_ENC)


def test_another_owner_is_refused() -> None:
    with pytest.raises(OwnerMismatch):
        CallbackCrypto(A_TOKEN, A_AES, "dingsomeoneelse").decrypt(A_ENC)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not base64!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(bytes(32)).decode(),  # whole blocks, but garbage inside
        A_ENC[:-8] + "AAAAAAA=",
    ],
)
def test_garbage_ciphertext_is_a_typed_error(a: CallbackCrypto, garbage: str) -> None:
    with pytest.raises(BadCiphertext):
        a.decrypt(garbage)


def test_a_wrong_key_decrypts_to_garbage_not_to_a_crash() -> None:
    with pytest.raises((BadCiphertext, OwnerMismatch)):
        CallbackCrypto(A_TOKEN, B_AES, A_OWNER).decrypt(A_ENC)


@pytest.mark.parametrize("key", ["short", "*" * 43, A_AES + "x"])
def test_an_illegal_aes_key_is_refused_up_front(key: str) -> None:
    with pytest.raises(BadKey):
        CallbackCrypto(A_TOKEN, key, A_OWNER)
