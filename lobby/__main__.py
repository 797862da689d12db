"""``python -m lobby`` (or ``shards-lobby``): run a master lobby until SIGINT or SIGTERM.

Every setting of :class:`~lobby.config.LobbySettings` is a flag, generated from the
model (``--help`` lists each with its ``SHARDS_*`` variable, default and meaning)::

    python -m lobby [--host 127.0.0.1] [--port 8888] [--data-dir ./shards-data]
                    [--database-url postgresql://...] [--world-file world.json]
                    [--stun-port 3478 | --no-stun] [--config lobby.toml] [...]

Flags override ``SHARDS_*`` environment variables, which override the TOML file of
``--config``, which overrides the defaults. A boolean setting has ``--name`` and
``--no-name``; a list setting (``--admin-accounts``) is repeated, one value each.

With no flags it serves on 127.0.0.1:8888 with SQLite in ``./shards-data`` and
prints one line ``lobby listening on http://HOST:PORT`` (the real port with
``--port 0``) to stdout once it accepts connections; logs go to stderr. uvloop
is used when installed. STUN Binding requests are answered on UDP at the same
port number (``--stun-port`` / ``SHARDS_STUN_PORT`` to move it, ``--no-stun`` to
turn it off). The process creates files only readable by its user (umask 077):
the data directory is 0700, the database and key files 0600.
``python -m lobby db upgrade|current`` migrates the database without serving
(:mod:`lobby.storage.cli`).

Exit status: 0 after a clean stop; 2 on a usage error (an unknown flag, a bad
setting value from a flag, the environment or the TOML file, a TOML file that
cannot be read or names unknown settings); 1 when the lobby cannot start (a port
it cannot listen on, a data directory it cannot create, write or lock because
another lobby holds it, a database it cannot open or write). Each is one line on
stderr, ``lobby: ...``, saying which it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from lobby import logs
from lobby.config import LobbySettings, env_name, load_settings
from lobby.server import MasterServer
from lobby.storage.engine import normalize_url
from lobby.version import SERVER_VERSION
from protocol.errors import ShardsError

__all__ = [
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "build_parser",
    "flag",
    "main",
    "parse_args",
    "program_name",
    "serve",
    "settings_from",
]

EXIT_USAGE = 2
"""Exit status for a bad command line, setting or config file (as argparse uses)."""
EXIT_RUNTIME = 1
"""Exit status when the lobby cannot start or run: port, data directory, database."""

_NOT_SETTINGS = frozenset({"config", "no_stun"})
"""Destinations of flags that are not fields of :class:`LobbySettings`."""

_ALIASES: dict[str, tuple[str, ...]] = {"turn_urls": ("--turn-url",)}
"""Extra spellings of some settings' flags (``--turn-url URL``, one server each)."""


def program_name(argv0: str | None = None) -> str:
    """How the program was started: ``shards-lobby`` (the script) or ``python -m lobby``."""
    name = os.path.basename(argv0 if argv0 is not None else (sys.argv[0] if sys.argv else ""))
    if not name or name in ("__main__.py", "-m", "-c") or name.startswith("python"):
        return "python -m lobby"
    return name


def flag(field: str) -> str:
    """The command-line flag of setting ``field``: ``data_dir`` -> ``--data-dir``."""
    return "--" + field.replace("_", "-")


def _plain_type(annotation: Any) -> Any:
    """``annotation`` without ``None``: ``int | None`` -> ``int``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


_METAVARS: dict[Any, str] = {int: "N", float: "NUM", Path: "PATH", str: "TEXT", SecretStr: "SECRET"}


def _help(name: str, info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    shown = "unset" if default is None or default == [] else str(default)
    text = f"{info.description or name} [{env_name(name)}; default: {shown}]"
    return text.replace("%", "%%")  # argparse formats help with %


def _add_setting(parser: argparse._ActionsContainer, name: str, info: FieldInfo) -> None:
    """One flag for field ``name``; its value is validated by the model, not by argparse."""
    kind = _plain_type(info.annotation)
    options: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
    if kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is typing.Literal:
        options["choices"] = [str(c) for c in typing.get_args(kind)]
    elif typing.get_origin(kind) is list:
        options.update(action="append", metavar="VALUE")
    else:
        options["metavar"] = _METAVARS.get(kind, "VALUE")
    parser.add_argument(flag(name), *_ALIASES.get(name, ()), help=_help(name, info), **options)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m lobby``: ``--config``, ``--version`` and one flag per
    setting (``--no-stun`` kept as the short way to say ``--no-stun-enabled``)."""
    parser = argparse.ArgumentParser(
        prog=program_name(),
        usage="%(prog)s [-h] [--version] [--config FILE] [--SETTING VALUE ...]\n"
        "       %(prog)s db {upgrade,current} [...]",
        description="Run the master lobby. Each setting is read from its flag, else its "
        "SHARDS_* environment variable, else the --config TOML file, else its default.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {SERVER_VERSION}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="TOML file of settings (name = value, names as below without --, with _)",
    )
    group = parser.add_argument_group("settings")
    stun = group.add_mutually_exclusive_group()
    stun.add_argument("--no-stun", action="store_true", help="do not answer STUN on UDP")
    for name, info in LobbySettings.model_fields.items():
        _add_setting(stun if name == "stun_port" else group, name, info)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; setting flags not given are absent from the result. Exits with
    status 2 (argparse) on an unknown flag or a missing value."""
    return build_parser().parse_args(argv)


def settings_from(args: argparse.Namespace) -> LobbySettings:
    """The settings of parsed ``args``: flags > environment > ``--config`` > defaults.

    Raises :class:`~protocol.errors.ConfigError` naming each bad value by its flag,
    environment variable or config file key.
    """
    given = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS}
    if args.no_stun:
        given["stun_enabled"] = False
    labels = {name: flag(name) for name in given}
    if args.no_stun:
        labels["stun_enabled"] = "--no-stun"
    settings = load_settings(config_file=args.config, labels=labels, **given)
    if settings.database_url:
        normalize_url(settings.database_url)  # a URL that cannot work is a usage error
    return settings


async def serve(settings: LobbySettings) -> None:
    """Start a lobby on ``settings``, print its address, run until SIGINT/SIGTERM."""
    server = MasterServer(settings=settings)
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
        settings = settings_from(args)
    except ShardsError as exc:
        print(f"lobby: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, settings.log_format)
    os.umask(0o077)  # password hashes and keys: nothing for group or others
    try:
        import uvloop
    except ImportError:  # uvloop is optional (extra "speed")
        uvloop = None  # type: ignore[assignment]
    try:
        if uvloop is not None:
            uvloop.run(serve(settings))
        else:
            asyncio.run(serve(settings))
    except ShardsError as exc:
        print(f"lobby: {exc.message}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
