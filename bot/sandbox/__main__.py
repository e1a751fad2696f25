"""Run the DingTalk sandbox alone: `python -m bot.sandbox --port 8790`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from bot.sandbox.options import SandboxOptions
from bot.sandbox.server import serve


async def _main(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM."""
    task = asyncio.create_task(
        serve(
            args.host, args.port, SandboxOptions(app_key=args.app_key, app_secret=args.app_secret)
        )
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m bot.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--app-key", help="accept only this app key (default: any)")
    parser.add_argument("--app-secret", help="accept only this app secret (default: any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
