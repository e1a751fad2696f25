"""Encrypted HTTP-callback delivery, against a tiny receiver with its own crypto (spec §6)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.sandbox import Sandbox
from tests.test_sandbox_support import APP_KEY, APP_SECRET, Api, fast

TOKEN = "123456"
AES = "1234567890123456789012345678901234567890123"


# -- the receiver's own crypto, written from the spec and checked against its vectors ---------


def sign(*values: str) -> str:
    return hashlib.sha1("".join(sorted(values)).encode(), usedforsecurity=False).hexdigest()


def cipher(aes_key: str) -> Cipher[modes.CBC]:
    key = base64.b64decode(aes_key + "=")
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def decrypt(aes_key: str, encrypt: str) -> tuple[str, str]:
    """(message, owner key)."""
    decryptor = cipher(aes_key).decryptor()
    plain = decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()
    plain = plain[: -plain[-1]]
    (size,) = struct.unpack(">I", plain[16:20])
    return plain[20 : 20 + size].decode(), plain[20 + size :].decode()


def encrypt(aes_key: str, message: str, owner: str, prefix: bytes | None = None) -> str:
    body = message.encode()
    plain = (prefix or secrets.token_hex(8).encode()) + struct.pack(">I", len(body)) + body
    plain += owner.encode()
    pad = 32 - len(plain) % 32
    encryptor = cipher(aes_key).encryptor()
    return base64.b64encode(
        encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()
    ).decode()


def test_receiver_crypto_matches_the_spec_vectors() -> None:
    vector_a = (
        "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCY"
        "xxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"
    )
    aes_a = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
    assert decrypt(aes_a, vector_a) == ('{"EventType":"check_url"}', "ding6ccabc44d2c8d38b")
    assert sign("mryue", "1608001896814", "WL4PK6yA", vector_a) == (
        "03044561471240d4a14bb09372dfcfd4fd0e40cb"
    )
    vector_b = (
        "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA=="
    )
    assert decrypt(AES, vector_b) == ("success", "dingsnotzck6pm5veliw")
    assert sign(TOKEN, "1614767836", "A7Co0cJLMzIDtMMI", vector_b) == (
        "9a95a004dd16f5c307e849b994173f76aa26e5eb"
    )
    vector_c = encrypt(AES, "success", "dingsnotzck6pm5veliw", b"a" * 16)
    assert vector_c == (
        "xb2B223Q38TZgqvtbhvigfmvA/nQHMMTAiVqpBj30t8+Kg3IIqZQk5z16Awk3ljSKxonEzL0E1EqzrV/AfxVlg=="
    )


# -- a receiver as the bridge would run one ------------------------------------------------


class Receiver:
    """Checks the signature and the owner key, keeps the plaintext, answers as told."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.received: list[dict[str, Any]] = []
        self.queries: list[dict[str, str]] = []
        self.misbehave: list[str] = []
        """Answers to give before behaving: "plain" (not encrypted), "slow", "500"."""
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.queries.append(query)
        body = await request.json()
        expected = sign(TOKEN, query["timestamp"], query["nonce"], body["encrypt"])
        assert query["msg_signature"] == expected
        message, owner = decrypt(AES, body["encrypt"])
        assert owner == self.owner
        self.received.append(json.loads(message))
        mode = self.misbehave.pop(0) if self.misbehave else "ok"
        if mode == "plain":
            return web.json_response({"msg": "success"})
        if mode == "500":
            return web.json_response({}, status=500)
        if mode == "slow":
            await asyncio.sleep(1.0)
        timestamp, nonce = query["timestamp"], secrets.token_hex(8)
        reply = encrypt(AES, "success", self.owner)
        return web.json_response(
            {
                "msg_signature": sign(TOKEN, timestamp, nonce, reply),
                "timeStamp": timestamp,
                "nonce": nonce,
                "encrypt": reply,
            }
        )

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/dingtalk/callback", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/dingtalk/callback"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver(APP_KEY) as receiver:
        yield receiver


def callback_options(url: str, **changes: Any) -> Any:
    return fast(
        app_key=APP_KEY,
        app_secret=APP_SECRET,
        callback_url=url,
        callback_token=TOKEN,
        callback_aes_key=AES,
        callback_timeout=0.5,
        **changes,
    )


async def test_events_are_posted_encrypted(receiver: Receiver) -> None:
    async with Sandbox(callback_options(receiver.url)) as sandbox, aiohttp.ClientSession() as s:
        api = Api(s, sandbox.url)
        await api.login()
        instance_id = await api.create()
        await sandbox.approve(instance_id, remark="同意")
        events = await sandbox.wait_events_settled(5)
        stats = await sandbox.stats()
    assert [e["status"] for e in events] == ["delivered"] * 4
    assert stats["events"]["delivery"] == "http" and stats["callback"]["ok"] == 4
    kinds = sorted((m["EventType"], m["type"]) for m in receiver.received)
    assert kinds == [
        ("bpms_instance_change", "finish"),
        ("bpms_instance_change", "start"),
        ("bpms_task_change", "finish"),
        ("bpms_task_change", "start"),
    ]
    finish = next(m for m in receiver.received if m["type"] == "finish" and "url" in m)
    assert (finish["result"], finish["staffId"], finish["processInstanceId"]) == (
        "agree",
        "u1001",
        instance_id,
    )
    assert finish["CorpId"] == sandbox.options.corp_id
    assert isinstance(finish["EventTime"], int) and finish["eventId"]
    assert all(set(q) == {"msg_signature", "timestamp", "nonce"} for q in receiver.queries)


@pytest.mark.parametrize("fault", ["plain", "slow", "500"])
async def test_a_bad_or_late_reply_means_redelivery(receiver: Receiver, fault: str) -> None:
    receiver.misbehave = [fault]
    async with Sandbox(callback_options(receiver.url)) as sandbox:
        await sandbox.check_callback()  # the first POST meets the fault
        assert len(receiver.received) == 1
        async with aiohttp.ClientSession() as session:
            api = Api(session, sandbox.url)
            await api.login()
            await api.create()
        events = await sandbox.wait_events_settled(5)
        assert [e["status"] for e in events] == ["delivered"] * 2
        stats = (await sandbox.stats())["callback"]
    assert stats["posts"] == 3 and stats["ok"] == 2
    receiver.misbehave = [fault, fault]
    async with Sandbox(callback_options(receiver.url, max_deliveries=None)) as sandbox:
        async with aiohttp.ClientSession() as session:
            api = Api(session, sandbox.url)
            await api.login()
            await api.create()
        events = await sandbox.wait_events_settled(5)
    assert sorted(e["deliveries"] for e in events) in ([1, 3], [2, 2])


async def test_check_url_and_configuration_through_the_control_api(receiver: Receiver) -> None:
    async with Sandbox(fast()) as sandbox, aiohttp.ClientSession() as session:
        setting = {"url": receiver.url, "token": TOKEN, "aesKey": AES, "ownerKey": APP_KEY}
        async with session.post(sandbox.url + "/sandbox/callback", json=setting) as resp:
            assert resp.status == 200
            assert (await resp.json())["config"] == {"url": receiver.url, "ownerKey": APP_KEY}
        async with session.post(sandbox.url + "/sandbox/callback/check") as resp:
            assert await resp.json() == {"ok": True, "error": ""}
        assert receiver.received == [{"EventType": "check_url"}]
        async with session.post(
            sandbox.url + "/sandbox/callback", json={**setting, "aesKey": "x"}
        ) as resp:
            assert resp.status == 400
        async with session.post(sandbox.url + "/sandbox/callback", json={"url": None}) as resp:
            assert (await resp.json())["config"] is None
        assert (await sandbox.stats())["events"]["delivery"] == "stream"


async def test_owner_key_can_be_the_corp_id() -> None:
    """A corp-level subscription puts the corpId where an app-level one puts the app key."""
    async with Receiver("dingcorp0001") as receiver:
        options = callback_options(receiver.url, callback_owner_key="dingcorp0001")
        async with Sandbox(options) as sandbox:
            assert await sandbox.check_callback() is True
        async with Sandbox(callback_options(receiver.url)) as sandbox:
            assert await sandbox.check_callback() is False  # the receiver refuses the app key
            stats = (await sandbox.stats())["callback"]
        assert (stats["httpErrors"], stats["lastError"]) == (1, "HTTP 500")
