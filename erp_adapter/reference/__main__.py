"""Run the reference ERP alone: `python -m erp_adapter.reference --port 9000 --bridge-url URL`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from erp_adapter.reference.erp import ReferenceErp

SECRET_ENV = "APPROVAL_BRIDGE__ERP__WEBHOOK_SECRET"  # noqa: S105 - a variable name, not a secret


async def _serve(args: argparse.Namespace, secret: str) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with ReferenceErp(
        secret=secret, bridge_url=args.bridge_url, host=args.host, port=args.port
    ) as erp:
        print(
            f"reference ERP on {erp.url} (control API under {erp.url}/ref/), "
            f"events to {args.bridge_url}/erp/events",
            flush=True,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, take the secret from the environment, serve."""
    parser = argparse.ArgumentParser(prog="python -m erp_adapter.reference", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--bridge-url", default="http://127.0.0.1:8080")
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        print(f"set the shared HMAC secret in {SECRET_ENV}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_serve(args, secret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
