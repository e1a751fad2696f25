"""The sandbox's HTTP-callback crypto against the spec's test vectors A, B and C."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.sandbox import CallbackCrypto, CryptoError
from bot.sandbox.crypto import signature

# Vector A: DingCallbackCrypto3.py.
A_TOKEN, A_AES, A_OWNER = (
    "mryue",
    "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
    "ding6ccabc44d2c8d38b",
)
A_TS, A_NONCE = "1608001896814", "WL4PK6yA"
A_ENCRYPT = (
    "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCY"
    "xxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"
)
# Vector B: the configure-stream-push FAQ.
B_TOKEN, B_AES, B_OWNER = (
    "123456",
    "1234567890123456789012345678901234567890123",
    "dingsnotzck6pm5veliw",
)
B_TS, B_NONCE = "1614767836", "A7Co0cJLMzIDtMMI"
B_ENCRYPT = (
    "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA=="
)
# Vector C: vector B's keys, random16 = "a" * 16, msg "success".
C_ENCRYPT = (
    "xb2B223Q38TZgqvtbhvigfmvA/nQHMMTAiVqpBj30t8+Kg3IIqZQk5z16Awk3ljSKxonEzL0E1EqzrV/AfxVlg=="
)


def test_vector_a_signature_and_plaintext() -> None:
    crypto = CallbackCrypto(A_TOKEN, A_AES, A_OWNER)
    assert crypto.sign(A_TS, A_NONCE, A_ENCRYPT) == "03044561471240d4a14bb09372dfcfd4fd0e40cb"
    assert crypto.decrypt(A_ENCRYPT) == '{"EventType":"check_url"}'


def test_vector_b_signature_and_plaintext() -> None:
    crypto = CallbackCrypto(B_TOKEN, B_AES, B_OWNER)
    assert crypto.sign(B_TS, B_NONCE, B_ENCRYPT) == "9a95a004dd16f5c307e849b994173f76aa26e5eb"
    assert crypto.decrypt(B_ENCRYPT) == "success"


def test_vector_c_encryption_is_deterministic_given_the_prefix() -> None:
    crypto = CallbackCrypto(B_TOKEN, B_AES, B_OWNER)
    encrypt = crypto.encrypt("success", prefix="a" * 16)
    assert encrypt == C_ENCRYPT
    assert crypto.sign(B_TS, B_NONCE, encrypt) == "e65c50d9b5e5ab5d4b1c28873a740147bed3b5dc"


def test_signature_sorts_the_four_values() -> None:
    assert signature(B_TOKEN, B_TS, B_NONCE, B_ENCRYPT) == signature(
        B_ENCRYPT, B_NONCE, B_TS, B_TOKEN
    )


def test_wrong_owner_key_is_refused_with_900010() -> None:
    crypto = CallbackCrypto(B_TOKEN, B_AES, "dingsomeoneelse")
    with pytest.raises(CryptoError) as caught:
        crypto.decrypt(B_ENCRYPT)
    assert caught.value.code == 900010


def test_bad_signature_is_refused_with_900005() -> None:
    crypto = CallbackCrypto(B_TOKEN, B_AES, B_OWNER)
    with pytest.raises(CryptoError) as caught:
        crypto.verify("0" * 40, B_TS, B_NONCE, B_ENCRYPT)
    assert caught.value.code == 900005


@pytest.mark.parametrize("aes_key", ["short", "!" * 43])
def test_illegal_aes_key_is_900004(aes_key: str) -> None:
    with pytest.raises(CryptoError) as caught:
        CallbackCrypto(B_TOKEN, aes_key, B_OWNER)
    assert caught.value.code == 900004


def test_reply_envelope_opens_to_the_message() -> None:
    crypto = CallbackCrypto(B_TOKEN, B_AES, B_OWNER)
    envelope = crypto.envelope("success", "1783610513")
    assert set(envelope) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    assert len(envelope["nonce"]) == 16
    assert crypto.open_envelope(envelope) == "success"


@given(st.text(max_size=300))
def test_round_trip_any_text(message: str) -> None:
    crypto = CallbackCrypto(A_TOKEN, A_AES, A_OWNER)
    encrypt = crypto.encrypt(message)
    # The 32-byte block: the ciphertext is always a whole number of 32-byte blocks.
    assert len(base64.b64decode(encrypt)) % 32 == 0
    assert crypto.decrypt(encrypt) == message
