"""``python -m mesh --lobby URL``: the terminal peer, playing through a lobby.

::

    python -m mesh --lobby http://localhost:8888 [--username aria] [--register] \
        [--name Aria --faction "Crimson Covenant" --class Mage] [--port 9000] [--json]

A missing ``--username`` is asked for on the terminal; the password comes from
``--password``, ``$SHARDS_PASSWORD`` or a prompt. With no terminal to ask on,
both must be given. An account that does not exist yet is created (``--register``
only makes that the first try). ``--name`` picks the character by name, or
creates it when missing (the first character otherwise; one named after the
user on a fresh account). ``--port`` is the peer node's UDP port (default 9000,
or a free port when 9000 is taken; 0: any free port).

The commands are the table of :mod:`mesh.terminal` (``/help`` prints them); a
line without ``/`` is global chat. An error answering one of our requests is
printed once, by the command that made it; ``ERROR`` messages that answer no
request of ours are printed as they arrive.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from mesh.client import NetworkClient
from mesh.terminal import (
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
from protocol.errors import ApiError, ErrorCode, ShardsError
from protocol.messages.base import BaseMessage, MessageType
from protocol.rest import CharacterOut

__all__ = ["add_lobby_arguments", "run_lobby"]


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


async def run_lobby(
    args: argparse.Namespace, *, stdin: TextIO | None, stdout: TextIO | None
) -> int:
    """The lobby terminal peer until /quit, end of input, SIGINT or SIGTERM."""
    out = Output(stdout, as_json=bool(getattr(args, "json", False)))
    username = getattr(args, "username", None) or await ask(stdin, "username: ", secret=False)
    password = getattr(args, "password", None) or os.environ.get("SHARDS_PASSWORD")
    if username and not password:
        password = await ask(stdin, "password: ", secret=True)
    if not username or not password:
        out.fatal(
            "lobby mode needs a username and a password: no terminal to ask on, so pass "
            "--username and --password (or $SHARDS_PASSWORD)"
        )
        return 2
    client = NetworkClient(args.lobby, p2p_port=args.port)
    try:
        character = await _login(client, args, username, password, out)
    except ShardsError as exc:
        await client.disconnect()
        out.fatal(f"cannot start: {exc}", code=str(exc.code))
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
        endpoint=client.node.endpoint if client.node else None,
    )
    await state.execute(Command("map"))  # where /go can take us, before the first prompt
    stop = stop_on_signals()

    async def on_line(line: str) -> bool:
        try:
            command = parse_command(line, "lobby")
        except CommandError as exc:
            out.emit("error", str(exc), message=str(exc))
            return True
        return command is None or await state.execute(command)

    try:
        await command_loop(stdin, stop, on_line, out=out, prompt=f"{character['name']}> ")
    finally:
        await client.disconnect()
        out.emit("bye", "bye")
    return 0


async def _login(
    client: NetworkClient, args: argparse.Namespace, username: str, password: str, out: Output
) -> CharacterOut:
    """Log in, creating the account when it does not exist; pick or create the character."""
    register = bool(getattr(args, "register", False))
    try:
        await client.connect(username, password, register=register)
    except ApiError as exc:
        if register and exc.code == ErrorCode.USERNAME_TAKEN:
            await client.connect(username, password)
        elif not register and exc.code == ErrorCode.INVALID_CREDENTIALS:
            # no such account, or a wrong password: creating it tells which
            try:
                await client.connect(username, password, register=True)
            except ApiError as again:
                if again.code == ErrorCode.USERNAME_TAKEN:
                    raise exc from None  # it exists: the password was wrong
                raise
            out.emit("account", f"(created account {username})", username=username)
        else:
            raise
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
        if msg.ref_id is not None:
            return  # answers a request of ours: the command that sent it prints it
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

    async def execute(self, command: Command) -> bool:
        """Run one command; False to quit. Errors are printed, never raised."""
        c, out = self.client, self.out
        try:
            kind = command.kind
            if kind == "quit":
                return False
            if kind == "help":
                out.emit("help", help_text("lobby"), commands=help_text("lobby"))
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
                await self._show_map(command.number)
            elif kind == "map":
                await self._show_map()
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
            elif kind == "quality":
                text, rows = quality_report(c.connection_qualities().values())
                out.emit("quality", text, peers=rows)
            elif kind == "world":
                world = await c.get_world_state()
                out.emit("world", f"* reality: {world.get('current_reality')}", world=world)
            elif kind == "party":
                await self._party(command)
        except ShardsError as exc:
            out.emit("error", f"error: {exc}", message=str(exc), code=str(exc.code))
        return True

    async def _show_map(self, here: int | None = None) -> None:
        """Where the character is (or ``here``) and the exits a ``/go`` can take."""
        c, out = self.client, self.out
        if here is None:
            here = c.character["location_id"] if c.character is not None else None
        world = await c.get_world_map()
        place = world.location(here) if here is not None else None
        if place is None:
            out.emit("map", "* no location yet (select a character)", location=None, exits=[])
            return
        exits = [loc for loc in map(world.location, place.neighbours) if loc is not None]
        rows = [{"id": e.id, "name": e.name, "players": e.players, "safe": e.safe} for e in exits]
        lines = [f"* {place.name} (#{place.id}, {place.players} here); /go ID to travel:"]
        lines += [
            f"  /go {e.id:<3} {e.name}{' (safe)' if e.safe else ''}, {e.players} here"
            for e in exits
        ]
        out.emit(
            "map",
            "\n".join(lines),
            location={"id": place.id, "name": place.name, "players": place.players},
            exits=rows,
        )

    async def _party(self, command: Command) -> None:
        c = self.client
        sub = command.target
        if sub == "create":
            details = await c.create_party(command.text or None)
        elif sub == "invite":
            target: int | str = int(command.text) if command.text.isdigit() else command.text
            details = await c.invite_to_party(target)
        elif sub in ("accept", "decline"):
            party_id = command.text or self.last_invite
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
