"""``python -m mesh``: a terminal peer a person can play with.

LAN mode (no lobby; peers found over mDNS, admitted by passphrase)::

    python -m mesh --lan --name Aria --passphrase "our secret" \
        [--interface 192.168.1.20] [--port 9000]

Lobby mode (through a lobby, with the game client :class:`mesh.NetworkClient`)::

    python -m mesh --lobby http://localhost:8888 [--username aria] [--name Aria]

``--passphrase`` may be left out: it is then read from ``$SHARDS_PASSPHRASE``
or asked for on the terminal (the lobby mode asks for a missing username and
password the same way). ``--interface`` picks the one local IPv4 address to
play on (mDNS and the node's socket); by default mDNS runs on every LAN address
of the host. ``--port`` (or ``$SHARDS_P2P_PORT``) is the node's UDP port; by
default 9000, or a free port (printed) when another peer on this machine holds
9000. ``--json`` prints one JSON object per event instead of text (for scripts
and tests). The node's tunables are read from ``SHARDS_P2P_*`` variables
(:meth:`mesh.config.MeshConfig.from_env`, e.g. ``SHARDS_P2P_MAX_CONNECTIONS=20``).

The commands of both modes are one table, :data:`mesh.terminal.COMMANDS`;
``/help`` prints the rows of the running mode. Standard input may be a
terminal (a prompt), a pipe or file of commands (the program leaves at its
end), or nothing (closed, ``/dev/null``: it runs until SIGINT or SIGTERM).
Exit status: 0 after /quit, end of input or a signal; 1 when the node or the
lobby cannot be reached or bound; 2 on bad arguments or a bad ``SHARDS_P2P_*``
value. A start-up failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from mesh.config import MeshConfig
from mesh.discovery import LanNode, MemberJoined, MemberLeft, PeerFound, PeerIgnored, PeerLost
from mesh.discovery.lan import LanEvent
from mesh.terminal import (
    COMMANDS,
    LOG_IDS,
    Command,
    CommandError,
    Output,
    ask,
    command_loop,
    help_text,
    parse_command,
    quality_report,
    stop_on_signals,
)
from mesh.terminal_lobby import add_lobby_arguments, run_lobby  # lobby mode (NetworkClient)
from protocol import logformat
from protocol.crypto import derive_group_key
from protocol.errors import ShardsError
from protocol.messages.base import MessageType
from protocol.version import DISTRIBUTION

__all__ = ["MODES", "build_parser", "main", "p2p_port", "run_lan"]

log = logging.getLogger("mesh.cli")


def _epilog() -> str:
    lines = ["commands (type /help in the program for the running mode's list):"]
    for spec in COMMANDS:
        only = "" if len(spec.modes) > 1 else f"  [{next(iter(spec.modes))} mode]"
        lines.append(f"  {spec.usage}")
        lines.append(f"      {spec.summary}{only}")
    lines.append("a line without / is party chat in LAN mode, global chat in lobby mode")
    return "\n".join(lines)


# -- argument parsing ----------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535)")
    return port


def p2p_port(args: argparse.Namespace) -> int | None:
    """The node's UDP port: ``--port``, else ``$SHARDS_P2P_PORT``, else None (9000 or free).

    Raises ``argparse.ArgumentTypeError`` for a ``$SHARDS_P2P_PORT`` that is not a port.
    """
    if args.port is not None:
        return int(args.port)
    text = os.environ.get("SHARDS_P2P_PORT", "").strip()
    return _port(text) if text else None


def build_parser() -> argparse.ArgumentParser:
    """The parser of every mode; a mode adds its options in its own group."""
    parser = argparse.ArgumentParser(
        prog="python -m mesh",
        description="Shards of Eternity terminal peer.\n\nThe node's tunables are read from "
        "SHARDS_P2P_<FIELD> environment variables\n(the fields of mesh.config.MeshConfig, "
        "e.g. SHARDS_P2P_MAX_CONNECTIONS=20).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    modes = parser.add_mutually_exclusive_group(required=True)
    modes.add_argument("--lan", action="store_true", help="play on the LAN with no lobby (mDNS)")
    modes.add_argument("--lobby", metavar="URL", help="play through a lobby (NetworkClient)")
    parser.add_argument("--name", help="character name (lobby mode: to play or create)")
    parser.add_argument(
        "--port",
        type=_port,
        default=None,
        help="UDP port of the node ($SHARDS_P2P_PORT; default 9000, or a free port when "
        "9000 is taken; 0: any free port)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines (stderr) as text or one JSON object per line, with this peer's id",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    lan = parser.add_argument_group("LAN mode")
    lan.add_argument("--passphrase", help="group passphrase (else $SHARDS_PASSPHRASE or a prompt)")
    lan.add_argument(
        "--interface",
        metavar="IP",
        action="append",
        help="local IPv4 address to play on (repeatable; default: every LAN address)",
    )
    lan.add_argument("--location", type=int, default=1, help="location id to report in movement")
    lan.add_argument("--heartbeat", type=float, default=5.0, help=argparse.SUPPRESS)
    lan.add_argument("--peer-timeout", type=float, default=None, help=argparse.SUPPRESS)
    add_lobby_arguments(parser)  # lobby mode's options (mesh/terminal_lobby.py)
    return parser


# -- output ---------------------------------------------------------------------------


def _short(peer_id: str) -> str:
    return peer_id[:8]


def _on_lan_event(out: Output, event: LanEvent) -> None:
    if isinstance(event, PeerFound):
        out.emit(
            "found",
            f"* seen {event.name} ({_short(event.peer_id)}) at "
            + ", ".join(f"{h}:{p}" for h, p in event.endpoints),
            peer_id=event.peer_id,
            name=event.name,
            endpoints=[list(e) for e in event.endpoints],
            version=event.version,
        )
    elif isinstance(event, PeerLost):
        out.emit("lost", f"* {_short(event.peer_id)} is gone from the LAN", peer_id=event.peer_id)
    elif isinstance(event, MemberJoined):
        who = event.identity
        out.emit(
            "joined",
            f"+ {who.character_name} ({_short(who.peer_id)}) joined",
            peer_id=who.peer_id,
            name=who.character_name,
        )
    elif isinstance(event, MemberLeft):
        who = event.identity
        out.emit(
            "left",
            f"- {who.character_name} ({_short(who.peer_id)}) left: {event.reason}",
            peer_id=who.peer_id,
            name=who.character_name,
            reason=event.reason,
        )
    elif isinstance(event, PeerIgnored):
        out.emit(
            "ignored",
            f"! not admitting {event.name} ({_short(event.peer_id)}): {event.reason}",
            peer_id=event.peer_id,
            name=event.name,
            reason=event.reason,
        )


def _install_message_handlers(lan: LanNode, out: Output) -> None:
    def on_whisper(msg: Any) -> None:
        out.emit(
            "whisper",
            f"[whisper] {msg.sender_name}: {msg.content}",
            sender=msg.sender_name,
            sender_id=msg.sender_id,
            content=msg.content,
        )

    def on_party(msg: Any) -> None:
        out.emit(
            "party",
            f"[party] {msg.sender_name}: {msg.content}",
            sender=msg.sender_name,
            sender_id=msg.sender_id,
            content=msg.content,
        )

    def on_position(update: Any) -> None:
        member = lan.sender_of(update.character_id)
        name = member.character_name if member else f"#{update.character_id}"
        p = update.position
        out.emit(
            "position",
            f"~ {name} moved to ({p.x:g}, {p.y:g}, {p.z:g})",
            sender=name,
            sender_id=update.character_id,
            position=[p.x, p.y, p.z],
            seq=update.seq,
        )

    lan.register_handler(MessageType.WHISPER, on_whisper)
    lan.register_handler(MessageType.PARTY_CHAT, on_party)
    lan.register_handler(MessageType.POSITION_UPDATE, on_position)


# -- LAN mode ---------------------------------------------------------------------------


async def execute(lan: LanNode, command: Command, out: Output) -> bool:
    """Run one command; False when the user asked to quit. Errors are printed once, not raised."""
    try:
        if command.kind == "quit":
            return False
        if command.kind == "help":
            out.emit("help", help_text("lan"), commands=help_text("lan"))
        elif command.kind == "who":
            _who(lan, out)
        elif command.kind == "quality":
            text, rows = quality_report(lan.node.connection_qualities().values())
            out.emit("quality", text, peers=rows)
        elif command.kind == "whisper":
            result = await lan.send_whisper(command.target, command.text)
            out.emit(
                "sent",
                f"(whisper to {command.target} delivered, {result.path})",
                kind="whisper",
                target=command.target,
                path=result.path,
            )
        elif command.kind == "party_chat":
            if not lan.members:
                out.emit("error", "(nobody to talk to yet)", message="no members")
                return True
            party = await lan.send_party_chat(command.text)
            failed = {pid: str(err) for pid, err in party.failed.items()}
            out.emit(
                "sent",
                f"(party chat delivered to {len(party.paths)}"
                + (f", failed for {len(failed)})" if failed else ")"),
                kind="party",
                delivered=sorted(str(t) for t in party.paths),
                failed=failed,
            )
        elif command.kind == "pos":
            update = lan.send_position_update(command.position)
            out.emit(
                "sent",
                f"(position {command.position})",
                kind="position",
                position=list(command.position),
                seq=update.seq,
            )
    except ShardsError as exc:
        out.emit("error", f"error: {exc}", message=str(exc), code=str(exc.code))
    return True


def _who(lan: LanNode, out: Output) -> None:
    members = [{"peer_id": m.peer_id, "name": m.character_name} for m in lan.members.values()]
    seen = [
        {"peer_id": p.peer_id, "name": p.name, "admitted": p.peer_id in lan.members}
        for p in lan.found.values()
    ]
    lines = [f"you: {lan.name} ({_short(lan.peer_id)})"]
    lines += [f"  connected: {m['name']} ({_short(m['peer_id'])})" for m in members]
    lines += [
        f"  seen: {p.name} ({_short(p.peer_id)})"
        + (f" - {lan.ignored[p.peer_id].reason}" if p.peer_id in lan.ignored else "")
        for p in lan.found.values()
        if p.peer_id not in lan.members
    ]
    out.emit("who", "\n".join(lines), members=members, seen=seen)


async def run_lan(args: argparse.Namespace, *, stdin: TextIO | None, stdout: TextIO | None) -> int:
    """The LAN terminal peer until /quit, end of input, SIGINT or SIGTERM."""
    out = Output(stdout, as_json=args.json)
    passphrase = args.passphrase or os.environ.get("SHARDS_PASSPHRASE")
    if not passphrase:
        passphrase = await ask(stdin, "group passphrase: ", secret=True)
    if not passphrase or not args.name:
        out.fatal("LAN mode needs --name and a passphrase (--passphrase or $SHARDS_PASSPHRASE)")
        return 2
    try:
        # PBKDF2 (100,000 iterations) off the event loop
        group_key = await asyncio.to_thread(derive_group_key, passphrase)
        lan = LanNode(
            name=args.name,
            group_key=group_key,
            interfaces=args.interface,
            port=p2p_port(args),
            location_id=args.location,
            heartbeat=args.heartbeat,
            peer_timeout=args.peer_timeout,
            config=getattr(args, "mesh_config", None),
        )
    except (ShardsError, ValueError) as exc:
        out.fatal(f"cannot start: {exc}")
        return 2
    LOG_IDS.set(peer_id=lan.peer_id)
    lan.add_listener(lambda event: _on_lan_event(out, event))
    _install_message_handlers(lan, out)
    stop = stop_on_signals()
    try:
        await lan.start()
    except (ShardsError, OSError) as exc:
        await lan.close()
        out.fatal(f"cannot start: {exc}")
        return 1
    try:
        host, port = lan.node.address
        out.emit(
            "ready",
            f"{lan.name} ({_short(lan.peer_id)}) on {host}:{port}, mDNS on "
            f"{', '.join(lan.interfaces)}; /help for commands",
            peer_id=lan.peer_id,
            name=lan.name,
            endpoint=[host, port],
            interfaces=lan.interfaces,
            group_tag=lan.group_tag,
        )

        async def on_line(line: str) -> bool:
            try:
                command = parse_command(line, "lan")
            except CommandError as exc:
                out.emit("error", str(exc), message=str(exc))
                return True
            return command is None or await execute(lan, command, out)

        await command_loop(stdin, stop, on_line, out=out, prompt=f"{lan.name}> ")
    finally:
        await lan.close()
        out.emit("bye", "bye")
    return 0


def _version() -> str:
    """The installed package's version (``pyproject.toml``), not a copy of it."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


Runner = Callable[..., Coroutine[Any, Any, int]]
MODES: dict[str, Runner] = {"lan": run_lan, "lobby": run_lobby}
"""Mode name (the option that selects it) -> ``async runner(args, *, stdin, stdout)``."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mesh`` (and the ``shards-peer`` script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.port = p2p_port(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"$SHARDS_P2P_PORT: {exc}")
    try:
        args.mesh_config = MeshConfig.from_env()
    except ShardsError as exc:  # a usage error, in one line
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logformat.configure(level, args.log_format, LOG_IDS)
    mode = "lan" if args.lan else "lobby"
    try:
        return asyncio.run(MODES[mode](args, stdin=sys.stdin, stdout=None))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
