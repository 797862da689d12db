"""The original specification's "Running the Master Server" (docs/specification.md).

    python examples/run_master_server.py

Serves on ``SHARDS_HOST``:``SHARDS_PORT`` (default 127.0.0.1:8888; the specification's
``0.0.0.0`` serves other machines too, port 0 picks a free port) with SQLite in
``SHARDS_DATA_DIR`` (default ``./shards-data``). Prints ``lobby listening on URL``
once it accepts connections; Ctrl-C (or SIGTERM) stops it cleanly.
``python -m lobby`` does the same with command-line flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from lobby import MasterServer

__all__ = ["main"]


async def main() -> None:
    server = MasterServer(
        host=os.environ.get("SHARDS_HOST", "127.0.0.1"),
        port=int(os.environ.get("SHARDS_PORT", "8888")),
    )
    await server.start()
    print(f"lobby listening on {server.url}", flush=True)

    # Keep running (until Ctrl-C / SIGTERM)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
