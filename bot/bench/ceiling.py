"""The durable ceiling of our stack: aiohttp parses the JSON, checks the HMAC, and does one
stdlib-sqlite3 insert and commit per request. Nothing an intake path can do costs less.

Run as `python -m bot.bench.ceiling PORT DB_FILE SECRET SYNCHRONOUS`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import sys
import time

from aiohttp import web


def make_app(db_file: str, secret: bytes, synchronous: str) -> web.Application:
    """The ceiling's one endpoint, on a table shaped like the bridge's inbox."""
    db = sqlite3.connect(db_file, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute(
        "CREATE TABLE IF NOT EXISTS event (event_id TEXT PRIMARY KEY, type TEXT, "
        "received_at REAL, body TEXT)"
    )

    async def events(request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Bridge-Timestamp", "")
        expected = "v1=" + hmac.new(secret, f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Bridge-Signature", ""), expected):
            return web.json_response({"error": "bad_signature"}, status=401)
        body = json.loads(raw)
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO event VALUES (?, ?, ?, ?)",
            (body["event_id"], body["type"], time.time(), raw.decode()),
        )
        db.execute("COMMIT")
        return web.json_response(
            {"status": "accepted", "approval_id": body["event_id"]}, status=202
        )

    app = web.Application()
    app.router.add_post("/erp/events", events)
    return app


def main() -> int:
    """Serve until killed."""
    port, db_file, secret, synchronous = sys.argv[1:5]
    web.run_app(
        make_app(db_file, secret.encode(), synchronous),
        host="127.0.0.1",
        port=int(port),
        print=None,
        access_log=None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
