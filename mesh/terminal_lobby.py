"""``python -m mesh --lobby URL``: the terminal peer, playing through a lobby.

::

    python -m mesh --lobby http://localhost:8888 --username aria [--register] \
        [--name Aria --faction "Crimson Covenant" --class Mage] [--port 9000] [--json]

The password comes from ``--password``, ``$SHARDS_PASSWORD`` or a prompt.
``--name`` picks the character by name, or creates it when missing (the first
character otherwise; one named after the user on a fresh account). ``--port``
is the peer node's UDP port (0: any free port).

Commands (a line without ``/`` is global chat)::

    /w NAME text           whisper (peer to peer, relay fallback)
    /p text                party chat (peer to peer)
    /f text                faction chat
    /go LOCATION           move to a neighbouring location
    /pos X Y Z             send a movement update to the peers nearby
    /who                   players near you
    /party create [NAME] | invite NAME | accept [ID] | decline [ID] | leave | kick ID | disband
    /world                 the world state
    /quit                  leave (also Ctrl-D)

``--json`` prints one JSON object per event (for scripts and tests).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import math
import os
from dataclasses import dataclass
from typing import Any, TextIO

from mesh.client import NetworkClient
from mesh.terminal import LOG_IDS, Output, command_loop, stop_on_signals
from protocol.errors import ApiError, ErrorCode, ShardsError
from protocol.messages.base import BaseMessage, MessageType
from protocol.rest import CharacterOut

__all__ = [
    "LOBBY_HELP",
    "LobbyCommand",
    "LobbyCommandError",
    "add_lobby_arguments",
    "parse_lobby_command",
    "run_lobby",
]

LOBBY_HELP = """commands (a line without / is global chat):
  /w NAME text     whisper          /p text       party chat     /f text   faction chat
  /go LOCATION     move             /pos X Y Z    position       /who      who is near
  /party create [NAME] | invite NAME | accept [ID] | decline [ID] | leave | kick ID | disband
  /world           world state      /quit         leave"""

_PARTY_VERBS = ("create", "invite", "accept", "decline", "leave", "kick", "disband")


class LobbyCommandError(ValueError):
    """A line that is not a valid command; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class LobbyCommand:
    """One parsed line: ``kind`` and its arguments."""

    kind: str
    target: str = ""
    text: str = ""
    number: int = 0
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)


def parse_lobby_command(line: str) -> LobbyCommand | None:
    """Parse one input line (None for an empty one); raises :class:`LobbyCommandError`."""
    line = line.strip()
    if not line:
        return None
    if not line.startswith("/"):
        return LobbyCommand("chat", text=line)
    head, _, rest = line.partition(" ")
    verb, rest = head[1:].lower(), rest.strip()
    if verb in ("w", "whisper", "msg"):
        target, _, text = rest.partition(" ")
        if not target or not text.strip():
            raise LobbyCommandError("usage: /w NAME text")
        return LobbyCommand("whisper", target=target, text=text.strip())
    if verb in ("p", "f", "party", "faction") and (
        verb != "party" or rest.split(" ")[0] not in _PARTY_VERBS
    ):
        if not rest:
            raise LobbyCommandError(f"usage: /{verb} text")
        return LobbyCommand("party_chat" if verb in ("p", "party") else "faction", text=rest)
    if verb == "party":
        sub, _, arg = rest.partition(" ")
        arg = arg.strip()
        if sub in ("invite", "kick") and not arg:
            raise LobbyCommandError(f"usage: /party {sub} {'NAME' if sub == 'invite' else 'ID'}")
        if sub == "kick" and not arg.isdigit():
            raise LobbyCommandError("usage: /party kick CHARACTER_ID")
        return LobbyCommand(f"party_{sub}", target=arg, number=int(arg) if arg.isdigit() else 0)
    if verb in ("go", "move"):
        if not rest.isdigit():
            raise LobbyCommandError("usage: /go LOCATION_ID")
        return LobbyCommand("go", number=int(rest))
    if verb == "pos":
        try:
            x, y, z = (float(v) for v in rest.split())
        except ValueError as exc:
            raise LobbyCommandError("usage: /pos X Y Z (three numbers)") from exc
        if not all(math.isfinite(v) for v in (x, y, z)):
            raise LobbyCommandError("usage: /pos X Y Z (finite numbers)")
        return LobbyCommand("pos", position=(x, y, z))
    if verb in ("who", "world", "quit", "help"):
        return LobbyCommand(verb)
    if verb in ("exit", "q"):
        return LobbyCommand("quit")
    raise LobbyCommandError(f"unknown command /{verb} (try /help)")


def add_lobby_arguments(parser: argparse.ArgumentParser) -> None:
    """The lobby mode's options (``--name`` and ``--port`` are shared with LAN mode)."""
    group = parser.add_argument_group("lobby mode (--lobby URL)")
    group.add_argument("--username", help="account name")
    group.add_argument("--password", help="password (else $SHARDS_PASSWORD or a prompt)")
    group.add_argument("--register", action="store_true", help="create the account first")
    group.add_argument("--faction", default="Crimson Covenant", help="faction of a new character")
    group.add_argument(
        "--class", dest="character_class", default="Warrior", help="new character's class"
    )


async def run_lobby(args: argparse.Namespace, *, stdin: TextIO, stdout: TextIO) -> int:
    """The lobby terminal peer until /quit, end of input, SIGINT or SIGTERM."""
    out = Output(stdout, as_json=bool(getattr(args, "json", False)))
    username = getattr(args, "username", None)
    password = getattr(args, "password", None) or os.environ.get("SHARDS_PASSWORD")
    if not password and username and stdin.isatty():
        password = await asyncio.to_thread(getpass.getpass, "password: ")
    if not username or not password:
        out.emit("error", "lobby mode needs --username and a password", message="missing arguments")
        return 2
    client = NetworkClient(args.lobby, p2p_port=args.port)
    try:
        character = await _login(client, args, username, password)
    except ShardsError as exc:
        out.emit("error", f"cannot start: {exc}", message=str(exc), code=str(exc.code))
        await client.disconnect()
        return 1
    state = _Session(client, out)
    state.install()
    LOG_IDS.set(peer_id=client.node.peer_id if client.node else None)
    out.emit(
        "ready",
        f"{character['name']} at location {character['location_id']} via {client.server_url};"
        " /help for commands",
        name=character["name"],
        character_id=character["id"],
        location_id=character["location_id"],
        peer_id=client.node.peer_id if client.node else None,
    )
    stop = stop_on_signals()

    async def on_line(line: str) -> bool:
        try:
            command = parse_lobby_command(line)
        except LobbyCommandError as exc:
            out.emit("error", str(exc), message=str(exc))
            return True
        return command is None or await state.execute(command)

    try:
        await command_loop(stdin, stop, on_line)
    finally:
        await client.disconnect()
        out.emit("bye", "bye")
    return 0


async def _login(
    client: NetworkClient, args: argparse.Namespace, username: str, password: str
) -> CharacterOut:
    try:
        await client.connect(username, password, register=bool(getattr(args, "register", False)))
    except ApiError as exc:
        if exc.code != ErrorCode.USERNAME_TAKEN:
            raise
        await client.connect(username, password)
    characters = await client.get_characters()
    wanted = getattr(args, "name", None)
    chosen = None
    if wanted:
        chosen = next((c for c in characters if c["name"].casefold() == wanted.casefold()), None)
    elif characters:
        chosen = characters[0]
    if chosen is None:
        name = wanted or username.capitalize()
        chosen = await client.create_character(
            name,
            getattr(args, "faction", "Crimson Covenant"),
            getattr(args, "character_class", "Warrior"),
        )
    return await client.select_character(int(chosen["id"]))


class _Session:
    """Prints what arrives; runs commands."""

    def __init__(self, client: NetworkClient, out: Output) -> None:
        self.client = client
        self.out = out
        self.last_invite: str | None = None

    def install(self) -> None:
        c = self.client
        for kind in (
            MessageType.CHAT,
            MessageType.WHISPER,
            MessageType.PARTY_CHAT,
            MessageType.FACTION_CHAT,
            MessageType.WORLD_ANNOUNCEMENT,
        ):
            c.register_handler(kind, self._on_chat)
        c.register_handler(MessageType.PLAYER_JOINED_AREA, self._on_presence)
        c.register_handler(MessageType.PLAYER_LEFT_AREA, self._on_presence)
        c.register_handler(MessageType.LOCATION_UPDATE, self._on_location)
        c.register_handler(MessageType.PARTY_INVITE, self._on_invite)
        c.register_handler(MessageType.PARTY_UPDATE, self._on_party)
        c.register_handler(MessageType.ERROR, self._on_error)
        c.register_handler(MessageType.DISCONNECT, self._on_disconnect)
        for kind in (MessageType.SHARD_CAPTURED, MessageType.REALITY_SHIFT, MessageType.AETHERFALL):
            c.register_handler(kind, self._on_world)

    def _on_chat(self, msg: Any) -> None:
        label = {"chat": msg.channel, "world_announcement": "announcement"}.get(
            str(msg.type), str(msg.type)
        )
        self.out.emit(
            str(msg.type),
            f"[{label}] {msg.sender_name}: {msg.content}",
            sender=msg.sender_name,
            sender_id=msg.sender_id,
            content=msg.content,
        )

    def _on_presence(self, msg: Any) -> None:
        joined = msg.type == MessageType.PLAYER_JOINED_AREA
        name = msg.character_name or f"#{msg.character_id}"
        self.out.emit(
            "joined" if joined else "left",
            f"{'+' if joined else '-'} {name} {'arrived' if joined else 'left'}",
            name=name,
            character_id=msg.character_id,
        )

    def _on_location(self, msg: Any) -> None:
        if self.client.character is not None and msg.character_id == self.client.character["id"]:
            self.out.emit(
                "location",
                f"* you are now at {msg.location_name or msg.location_id}",
                location_id=msg.location_id,
            )

    def _on_invite(self, msg: Any) -> None:
        self.last_invite = msg.party_id
        self.out.emit(
            "invite",
            f"* {msg.inviter_name or 'someone'} invites you to party {msg.party_id}"
            " (/party accept)",
            party_id=msg.party_id,
            inviter=msg.inviter_name,
        )

    def _on_party(self, msg: Any) -> None:
        members = [m.character_name for m in msg.members]
        self.out.emit(
            "party",
            f"* party {msg.party_id}: {', '.join(members) or 'empty'}",
            party_id=msg.party_id,
            members=members,
        )

    def _on_error(self, msg: Any) -> None:
        self.out.emit(
            "error", f"error {msg.error_code}: {msg.error_message}", code=str(msg.error_code),
            message=msg.error_message,
        )  # fmt: skip

    def _on_disconnect(self, msg: Any) -> None:
        self.out.emit(
            "lobby", f"* lobby: {msg.reason or 'disconnected'} (reconnecting)", reason=msg.reason
        )

    def _on_world(self, msg: BaseMessage) -> None:
        data = msg.model_dump(mode="json", exclude={"message_id", "timestamp", "version", "type"})
        self.out.emit(str(msg.type), f"* {msg.type}: {data}", data=data)

    async def execute(self, command: LobbyCommand) -> bool:
        """Run one command; False to quit. Errors are printed, never raised."""
        c, out = self.client, self.out
        try:
            kind = command.kind
            if kind == "quit":
                return False
            if kind == "help":
                out.emit("help", LOBBY_HELP)
            elif kind == "chat":
                await c.send_chat(command.text)
            elif kind == "faction":
                await c.send_faction_chat(command.text)
            elif kind == "whisper":
                sent = await c.send_whisper(command.target, command.text)
                out.emit(
                    "sent",
                    f"(whisper to {command.target}: {sent.path})",
                    kind="whisper",
                    path=sent.path,
                )
            elif kind == "party_chat":
                party = await c.send_party_chat(command.text)
                out.emit(
                    "sent",
                    f"(party chat: {len(party.paths)} delivered, {len(party.failed)} failed)",
                    kind="party",
                    paths={str(k): v for k, v in party.paths.items()},
                    failed=[str(k) for k in party.failed],
                )
            elif kind == "go":
                details = await c.send_move(command.number)
                out.emit("moved", f"(moved to {details.get('location_id')})", details=details)
            elif kind == "pos":
                update = await c.send_position_update(command.position)
                out.emit("sent", f"(position {command.position})", kind="position", seq=update.seq)
            elif kind == "who":
                players = c.get_nearby_players()
                rows = [
                    {"name": p.character_name, "level": p.level, "faction": p.faction,
                     "position": p.position.model_dump() if p.position else None}
                    for p in players
                ]  # fmt: skip
                text = (
                    "\n".join(f"  {r['name']} (Level {r['level']}, {r['faction']})" for r in rows)
                    or "  nobody near"
                )
                out.emit("who", text, players=rows)
            elif kind == "world":
                world = await c.get_world_state()
                out.emit("world", f"* reality: {world.get('current_reality')}", world=world)
            elif kind.startswith("party_"):
                await self._party(command)
        except ShardsError as exc:
            out.emit("error", f"error: {exc}", message=str(exc), code=str(exc.code))
        return True

    async def _party(self, command: LobbyCommand) -> None:
        c = self.client
        sub = command.kind.removeprefix("party_")
        if sub == "create":
            details = await c.create_party(command.target or None)
        elif sub == "invite":
            target: int | str = int(command.target) if command.target.isdigit() else command.target
            details = await c.invite_to_party(target)
        elif sub in ("accept", "decline"):
            party_id = command.target or self.last_invite
            if not party_id:
                self.out.emit("error", "no invitation to answer", message="no invitation")
                return
            if sub == "accept":
                details = await c.accept_party_invite(party_id)
            else:
                details = await c.decline_party_invite(party_id)
        elif sub == "leave":
            details = await c.leave_party()
        elif sub == "kick":
            details = await c.kick_from_party(command.number)
        elif sub == "disband":
            details = await c.disband_party()
        else:
            self.out.emit("error", f"unknown party command {sub}", message="unknown party command")
            return
        self.out.emit("ok", f"(party {sub}: ok)", kind=f"party_{sub}", details=details)
