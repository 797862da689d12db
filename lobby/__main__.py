"""``python -m lobby``: run a master lobby until SIGINT or SIGTERM.

Flags override ``SHARDS_*`` environment variables, which override defaults::

    python -m lobby [--host 127.0.0.1] [--port 8888] [--data-dir ./shards-data]
                    [--database-url postgresql://...] [--world-file world.json]
                    [--stun-port 3478 | --no-stun]

With no flags it serves on 127.0.0.1:8888 with SQLite in ``./shards-data`` and
prints one line ``lobby listening on http://HOST:PORT`` (the real port with
``--port 0``) to stdout once it accepts connections. uvloop is used when
installed. STUN Binding requests are answered on UDP at the same port number
(``--stun-port`` / ``SHARDS_STUN_PORT`` to move it, ``--no-stun`` to turn it off).
Exit status: 0 after a clean stop, 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lobby import logs
from lobby.config import LobbySettings
from lobby.server import MasterServer
from lobby.version import SERVER_VERSION
from protocol.errors import ShardsError

__all__ = ["main", "parse_args", "serve"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lobby", description="Run the master lobby.")
    parser.add_argument("--host", help="address to listen on (SHARDS_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port, 0 = any free (SHARDS_PORT, default 8888)")
    parser.add_argument("--data-dir", type=Path, help="data directory (default ./shards-data)")
    parser.add_argument("--database-url", help="sqlite:///file or postgresql://... URL")
    parser.add_argument("--world-file", type=Path, help="a world definition JSON file")
    stun = parser.add_mutually_exclusive_group()
    stun.add_argument(
        "--stun-port", type=int, help="UDP port answering STUN, 0 = any (default: --port's number)"
    )
    stun.add_argument("--no-stun", action="store_true", help="do not answer STUN on UDP")
    # -- rendezvous: TURN servers whose credentials the lobby issues --
    parser.add_argument(
        "--turn-url",
        action="append",
        help="TURN server turn:host:port?transport=udp (repeatable or comma-separated)",
    )
    parser.add_argument(
        "--turn-secret", help="the TURN server's use-auth-secret (better: SHARDS_TURN_SECRET)"
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    # -- operations: version and log format (lobby.version, lobby.logs) --
    parser.add_argument("--version", action="version", version=f"%(prog)s {SERVER_VERSION}")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines or one JSON object per line (with request/session ids)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Start a lobby from ``args``, print its address, run until SIGINT/SIGTERM."""
    overrides: dict[str, Any] = {} if args.log_level is None else {"log_level": args.log_level}
    if args.stun_port is not None:
        overrides["stun_port"] = args.stun_port
    if args.no_stun:
        overrides["stun_enabled"] = False
    if args.turn_url:
        overrides["turn_urls"] = args.turn_url
    if args.turn_secret is not None:
        overrides["turn_secret"] = args.turn_secret
    settings = LobbySettings(**overrides)
    server = MasterServer(
        args.host,
        args.port,
        data_dir=args.data_dir,
        database_url=args.database_url,
        world_file=args.world_file,
        settings=settings,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        print(f"lobby listening on {server.url}", flush=True)
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        level = args.log_level or LobbySettings().log_level
    except ValidationError as exc:
        print(f"invalid SHARDS_* setting: {exc}", file=sys.stderr)
        return 2
    logs.configure(level, args.log_format)
    try:
        import uvloop
    except ImportError:  # uvloop is optional (extra "speed")
        uvloop = None  # type: ignore[assignment]
    try:
        if uvloop is not None:
            uvloop.run(serve(args))
        else:
            asyncio.run(serve(args))
    except ShardsError as exc:
        print(f"lobby: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"lobby: invalid setting: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lobby: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
