"""``python -m mesh``: a terminal peer a person can play with.

LAN mode (no lobby; peers found over mDNS, admitted by passphrase)::

    python -m mesh --lan --name Aria --passphrase "our secret" \
        [--interface 192.168.1.20] [--port 9000]

``--passphrase`` may be left out: it is then read from ``$SHARDS_PASSPHRASE``
or asked for on the terminal. ``--interface`` picks the one local IPv4 address
to play on (mDNS and the node's socket); by default mDNS runs on every LAN
address of the host. ``--json`` prints one JSON object per event instead of
text (for scripts and tests).

Commands (a line without ``/`` is party chat)::

    /w NAME text      whisper to one player (name or peer id)
    /p text           party chat to everyone in the group
    /move X Y Z       move (sent to every peer as a movement update)
    /who              who is connected, who was seen
    /quit             leave (also Ctrl-D)

The lobby mode of the same program (``--lobby URL``) is added with the
NetworkClient: a new mode registers a runner in :data:`MODES`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib.metadata
import logging
import math
import os
import shlex
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from mesh.discovery import LanNode, MemberJoined, MemberLeft, PeerFound, PeerIgnored, PeerLost
from mesh.discovery.lan import LanEvent
from mesh.terminal import LOG_IDS, Output, command_loop, stop_on_signals
from mesh.terminal_lobby import add_lobby_arguments, run_lobby  # lobby mode (NetworkClient)
from protocol import logformat
from protocol.crypto import derive_group_key
from protocol.errors import ShardsError
from protocol.messages.base import MessageType
from protocol.version import DISTRIBUTION

__all__ = [
    "MODES",
    "Command",
    "CommandError",
    "build_parser",
    "main",
    "parse_command",
    "run_lan",
]

log = logging.getLogger("mesh.cli")

HELP = """commands:
  /w NAME text    whisper to NAME (character name or peer id)
  /p text         party chat (also: any line without a leading /)
  /move X Y Z     move to X Y Z
  /who            list connected and discovered peers
  /quit           leave"""


# -- commands (pure) -------------------------------------------------------------


class CommandError(ValueError):
    """A line that is not a valid command; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command line: ``kind`` in whisper/party/move/who/quit/help."""

    kind: str
    target: str = ""
    text: str = ""
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)


def parse_command(line: str) -> Command | None:
    """Parse one input line; None for an empty line. Raises :class:`CommandError`."""
    line = line.strip()
    if not line:
        return None
    if not line.startswith("/"):
        return Command("party", text=line)
    head, _, rest = line.partition(" ")
    rest = rest.strip()
    verb = head[1:].lower()
    if verb in ("w", "whisper", "msg"):
        target, text = _split_target(rest)
        if not target or not text:
            raise CommandError('usage: /w NAME text (quote a name with spaces: /w "Sir Aria" hi)')
        return Command("whisper", target=target, text=text)
    if verb in ("p", "party"):
        if not rest:
            raise CommandError("usage: /p text")
        return Command("party", text=rest)
    if verb in ("move", "m"):
        try:
            parts = shlex.split(rest)
            x, y, z = (float(v) for v in parts)
        except ValueError as exc:
            raise CommandError("usage: /move X Y Z (three numbers)") from exc
        if not all(math.isfinite(v) for v in (x, y, z)):
            raise CommandError("usage: /move X Y Z (finite numbers)")
        return Command("move", position=(x, y, z))
    if verb in ("who", "list"):
        return Command("who")
    if verb in ("quit", "exit", "q"):
        return Command("quit")
    if verb in ("help", "h", "?"):
        return Command("help")
    raise CommandError(f"unknown command /{verb} (try /help)")


def _split_target(rest: str) -> tuple[str, str]:
    if rest[:1] in ('"', "'"):
        end = rest.find(rest[0], 1)
        if end < 0:
            return "", ""
        return rest[1:end].strip(), rest[end + 1 :].strip()
    target, _, text = rest.partition(" ")
    return target, text.strip()


# -- argument parsing ----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of every mode; a mode adds its options in its own group."""
    parser = argparse.ArgumentParser(
        prog="python -m mesh",
        description="Shards of Eternity terminal peer.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    modes = parser.add_mutually_exclusive_group(required=True)
    modes.add_argument("--lan", action="store_true", help="play on the LAN with no lobby (mDNS)")
    modes.add_argument("--lobby", metavar="URL", help="play through a lobby (NetworkClient)")
    parser.add_argument("--name", help="character name (lobby mode: to play or create)")
    parser.add_argument("--port", type=int, default=9000, help="UDP port of the node (0: any)")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines (stderr) as text or one JSON object per line, with this peer's id",
    )
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
    """Run one command; False when the user asked to quit. Errors are printed, not raised."""
    try:
        if command.kind == "quit":
            return False
        if command.kind == "help":
            out.emit("help", HELP)
        elif command.kind == "who":
            members = [
                {"peer_id": m.peer_id, "name": m.character_name} for m in lan.members.values()
            ]
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
        elif command.kind == "whisper":
            result = await lan.send_whisper(command.target, command.text)
            out.emit(
                "sent",
                f"(whisper to {command.target} delivered, {result.path})",
                kind="whisper",
                target=command.target,
                path=result.path,
            )
        elif command.kind == "party":
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
        elif command.kind == "move":
            update = lan.send_position_update(command.position)
            out.emit(
                "sent",
                f"(moved to {command.position})",
                kind="move",
                position=list(command.position),
                seq=update.seq,
            )
    except ShardsError as exc:
        out.emit("error", f"error: {exc}", message=str(exc), code=str(exc.code))
    return True


async def run_lan(args: argparse.Namespace, *, stdin: TextIO, stdout: TextIO) -> int:
    """The LAN terminal peer until /quit, end of input, SIGINT or SIGTERM."""
    out = Output(stdout, as_json=args.json)
    passphrase = args.passphrase or os.environ.get("SHARDS_PASSPHRASE")
    if not passphrase and stdin.isatty():
        passphrase = await asyncio.to_thread(getpass.getpass, "group passphrase: ")
    if not passphrase or not args.name:
        out.emit("error", "LAN mode needs --name and a passphrase", message="missing arguments")
        return 2
    try:
        # PBKDF2 (100,000 iterations) off the event loop
        group_key = await asyncio.to_thread(derive_group_key, passphrase)
        lan = LanNode(
            name=args.name,
            group_key=group_key,
            interfaces=args.interface,
            port=args.port,
            location_id=args.location,
            heartbeat=args.heartbeat,
            peer_timeout=args.peer_timeout,
        )
    except (ShardsError, ValueError) as exc:
        out.emit("error", f"cannot start: {exc}", message=str(exc))
        return 2
    LOG_IDS.set(peer_id=lan.peer_id)
    lan.add_listener(lambda event: _on_lan_event(out, event))
    _install_message_handlers(lan, out)
    stop = stop_on_signals()
    try:
        await lan.start()
    except (ShardsError, OSError) as exc:
        out.emit("error", f"cannot start: {exc}", message=str(exc))
        await lan.close()
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
                command = parse_command(line)
            except CommandError as exc:
                out.emit("error", str(exc), message=str(exc))
                return True
            return command is None or await execute(lan, command, out)

        await command_loop(stdin, stop, on_line)
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
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logformat.configure(level, args.log_format, LOG_IDS)
    mode = "lan" if args.lan else "lobby"
    try:
        return asyncio.run(MODES[mode](args, stdin=sys.stdin, stdout=sys.stdout))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
