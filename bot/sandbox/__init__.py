"""A local, faithful stand-in for the DingTalk Open Platform subset the bridge uses."""

from __future__ import annotations

from bot.sandbox.crypto import CallbackCrypto, CryptoError
from bot.sandbox.errors import ControlError
from bot.sandbox.options import DEFAULT_APP_KEY, FaultOptions, SandboxOptions
from bot.sandbox.server import Sandbox, serve

__all__ = [
    "DEFAULT_APP_KEY",
    "CallbackCrypto",
    "ControlError",
    "CryptoError",
    "FaultOptions",
    "Sandbox",
    "SandboxOptions",
    "serve",
]
