"""``python -m lobby`` (or ``shards-lobby``): run a master lobby until SIGINT or SIGTERM.

Flags override ``SHARDS_*`` environment variables, which override defaults::

    python -m lobby [--host 127.0.0.1] [--port 8888] [--data-dir ./shards-data]
                    [--database-url postgresql://...] [--world-file world.json]
                    [--stun-port 3478 | --no-stun]
                    [--redis-url redis://127.0.0.1:6379/0]

With no flags it serves on 127.0.0.1:8888 with SQLite in ``./shards-data`` and
prints one line ``lobby listening on http://HOST:PORT`` (the real port with
``--port 0``) to stdout once it accepts connections; logs go to stderr. uvloop
is used when installed. STUN Binding requests are answered on UDP at the same
port number (``--stun-port`` / ``SHARDS_STUN_PORT`` to move it, ``--no-stun`` to
turn it off). The process creates files only readable by its user (umask 077):
the data directory is 0700, the database and key files 0600.
``python -m lobby db upgrade|current`` migrates the database without serving
(:mod:`lobby.storage.cli`).

Exit status: 0 after a clean stop; 2 when it cannot start: a bad setting, a
port it cannot listen on, a data directory it cannot create, write or lock
(another lobby holds it), a database it cannot open. Each is one line on
stderr, ``lobby: ...``, saying which it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from lobby import logs
from lobby.config import LobbySettings, load_settings
from lobby.server import MasterServer
from lobby.version import SERVER_VERSION
from protocol.errors import ShardsError

__all__ = ["main", "parse_args", "program_name", "serve"]


def program_name(argv0: str | None = None) -> str:
    """How the program was started: ``shards-lobby`` (the script) or ``python -m lobby``."""
    name = os.path.basename(argv0 if argv0 is not None else (sys.argv[0] if sys.argv else ""))
    if not name or name in ("__main__.py", "-m", "-c") or name.startswith("python"):
        return "python -m lobby"
    return name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=program_name(), description="Run the master lobby.")
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
    # -- several lobby processes (lobby.cluster) --
    parser.add_argument(
        "--redis-url",
        help="redis://host:port/db: run as one of several lobby processes behind a load "
        "balancer, sharing pushes, presence and rate limits (SHARDS_REDIS_URL)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, settings: LobbySettings) -> None:
    """Start a lobby from ``args``, print its address, run until SIGINT/SIGTERM."""
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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["db"]:  # python -m lobby db upgrade|current|revision
        from lobby.storage.cli import main as db_main  # noqa: PLC0415

        return db_main(argv[1:])
    args = parse_args(argv)
    try:
        overrides: dict[str, Any] = {}
        if args.log_level is not None:
            overrides["log_level"] = args.log_level
        if args.stun_port is not None:
            overrides["stun_port"] = args.stun_port
        if args.no_stun:
            overrides["stun_enabled"] = False
        if args.redis_url is not None:
            overrides["redis_url"] = args.redis_url
        if args.turn_url:
            overrides["turn_urls"] = args.turn_url
        if args.turn_secret is not None:
            overrides["turn_secret"] = args.turn_secret
        settings = load_settings(**overrides)
    except ShardsError as exc:
        print(f"lobby: {exc.message}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, args.log_format)
    os.umask(0o077)  # password hashes and keys: nothing for group or others
    try:
        import uvloop
    except ImportError:  # uvloop is optional (extra "speed")
        uvloop = None  # type: ignore[assignment]
    try:
        if uvloop is not None:
            uvloop.run(serve(args, settings))
        else:
            asyncio.run(serve(args, settings))
    except ShardsError as exc:
        print(f"lobby: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
