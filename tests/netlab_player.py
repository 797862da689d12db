"""A game player in a NAT-lab namespace: a real :class:`mesh.NetworkClient` driven by JSON lines.

``python -m tests.netlab_player SERVER_URL [CONFIG_JSON]`` (run with ``ip netns
exec`` by :meth:`tests.netlab.NatLab.player`) reads one command per line on
stdin and writes one JSON object per line on stdout: the answer to each command
(``{"id": N, "ok": true, "result": ...}`` or ``{"id": N, "ok": false, "error":
{"type", "code", "message"}}``) and, in between, events as they happen
(``{"event": ...}``). ``CONFIG_JSON`` holds the client's options:
``p2p_host`` (default ``0.0.0.0``), ``p2p_port`` (default 0) and ``mesh``
(:class:`mesh.MeshConfig` fields).

Commands (``{"id": N, "op": NAME, ...arguments}``):

- ``connect`` ``username`` ``password`` [``register``]; ``create_character``
  ``name`` [``faction``, ``character_class``]; ``select`` ``character_id``;
  ``play`` ``name`` [``faction``]: the three at once (username ``user_<name>``),
  answers ``{"character_id", "name", "location_id", "endpoint"}``;
- ``create_party`` [``name``] (answers the ``party_id``), ``invite`` ``target``,
  ``accept`` ``party_id``, ``party`` (our party as last heard, or null);
- ``move`` ``to_location_id`` (the lobby's MOVE);
- ``whisper`` ``target`` ``content``: answers ``{"path", "message_id"}``;
- ``party_chat`` ``content``: answers ``{"paths": {id: path}, "failed": {id: text}}``;
- ``position`` ``position`` [``velocity``]: one ``send_position_update``,
  answers ``{"seq"}``;
- ``quality`` [``target``]: :class:`mesh.ConnectionQuality` of one player (or
  of every connected one, by character id) as objects;
- ``movement_available`` ``target``; ``peers``: the character ids with a live
  peer connection; ``candidates``: what the lobby paired us with;
- ``quit``: disconnect, answer, exit 0.

Events:

- ``{"event": "message", "type", "sender_id", "sender_name", "content", "path"}``
  for every whisper and party chat received, ``path`` the one it came by
  (``"direct"``, ``"relay"``, or what else the node reports);
- ``{"event": "position", "character_id", "seq", "position"}`` for each
  movement update received;
- ``{"event": "peer", "kind": "connected"|"disconnected", "character_id",
  "address"}`` as peer connections go up and down (``address``: ``[host, port]``,
  or ``"turn:host:port"`` for a link through our own TURN allocation);
- ``{"event": "path", "character_id", "path", "silent"}`` when a connected
  player moves to another path (direct, TURN) or the one in use goes silent;
- ``{"event": "party_invite", "party_id", "inviter_id"}`` and
  ``{"event": "party", "party_id", "members": [character ids online]}``.

Logging goes to stderr (WARNING and above); the lab reads it to check that
nothing logged a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from mesh import MeshConfig, MessageType, NetworkClient, ReconnectPolicy
from mesh.events import MessageDelivered, PathChanged, PeerConnected
from mesh.node import PeerEvent
from mesh.paths import Route, TurnRoute
from protocol.errors import ShardsError
from protocol.messages.base import BaseMessage
from protocol.messages.chat import PartyChatMessage, WhisperMessage
from protocol.messages.location import PositionUpdateMessage
from protocol.messages.party import PartyInviteMessage, PartyUpdateMessage

__all__ = ["Player", "main"]

Op = Callable[[dict[str, Any]], Awaitable[Any]]


def _address(route: Route) -> list[Any] | str:
    """A link's route as JSON: ``[host, port]``, or ``"turn:host:port"`` through our TURN."""
    return str(route) if isinstance(route, TurnRoute) else list(route)


def _emit(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


class Player:
    """One ``NetworkClient`` and the commands that drive it (see the module docstring)."""

    def __init__(self, server_url: str, config: dict[str, Any]) -> None:
        mesh = {"dial_timeout": 1.0, "relay_resend_interval": 0.5, **config.get("mesh", {})}
        self.client = NetworkClient(
            server_url,
            p2p_host=config.get("p2p_host", "0.0.0.0"),  # noqa: S104 - inside a lab namespace
            p2p_port=config.get("p2p_port", 0),
            mesh_config=MeshConfig(**mesh),
            reconnect=ReconnectPolicy(initial_delay=0.1, max_delay=1.0, seed=1),
            request_timeout=20.0,
        )
        self._paths: dict[str, str] = {}
        """The path each delivered reliable message came by, by message id (the node tells
        its handlers the message only)."""
        self._tapped = False
        for kind in (MessageType.WHISPER, MessageType.PARTY_CHAT):
            self.client.register_handler(kind, self._on_chat)
        self.client.register_handler(MessageType.POSITION_UPDATE, self._on_position)
        self.client.register_handler(MessageType.PARTY_INVITE, self._on_invite)
        self.client.register_handler(MessageType.PARTY_UPDATE, self._on_party)
        self.ops: dict[str, Op] = {
            "connect": self.connect,
            "create_character": self.create_character,
            "select": self.select,
            "play": self.play,
            "create_party": self.create_party,
            "invite": self.invite,
            "accept": self.accept,
            "party": self.party,
            "move": self.move,
            "whisper": self.whisper,
            "party_chat": self.party_chat,
            "position": self.position,
            "quality": self.quality,
            "movement_available": self.movement_available,
            "peers": self.peers,
            "candidates": self.candidates,
        }

    # -- commands -------------------------------------------------------------------------

    async def connect(self, args: dict[str, Any]) -> Any:
        login = await self.client.connect(
            args["username"], args["password"], register=bool(args.get("register", False))
        )
        return {"account_id": login.account_id}

    async def create_character(self, args: dict[str, Any]) -> Any:
        character = await self.client.create_character(
            args["name"],
            args.get("faction", "Crimson Covenant"),
            args.get("character_class", "Warrior"),
        )
        return character.model_dump(mode="json")

    async def select(self, args: dict[str, Any]) -> Any:
        character = await self.client.select_character(int(args["character_id"]))
        self._tap_node()
        node = self.client.node
        return {
            "character_id": character.id,
            "name": character.name,
            "location_id": character.location_id,
            "endpoint": node.endpoint if node is not None else None,
        }

    async def play(self, args: dict[str, Any]) -> Any:
        name = args["name"]
        await self.connect(
            {"username": f"user_{name.lower()}", "password": "password123", "register": True}
        )
        character = await self.create_character(args)
        return await self.select({"character_id": character["id"]})

    async def create_party(self, args: dict[str, Any]) -> Any:
        return {"party_id": (await self.client.create_party(args.get("name"))).party_id}

    async def invite(self, args: dict[str, Any]) -> Any:
        return {"target_id": (await self.client.invite_to_party(args["target"])).target_id}

    async def accept(self, args: dict[str, Any]) -> Any:
        return {"party_id": (await self.client.accept_party_invite(args["party_id"])).party_id}

    async def party(self, args: dict[str, Any]) -> Any:
        party = self.client.party
        return _party(party) if party is not None else None

    async def move(self, args: dict[str, Any]) -> Any:
        ack = await self.client.send_move(int(args["to_location_id"]))
        return {"location_id": ack.location_id}

    async def whisper(self, args: dict[str, Any]) -> Any:
        result = await self.client.send_whisper(args["target"], args["content"])
        return {"path": result.path, "message_id": result.message_id}

    async def party_chat(self, args: dict[str, Any]) -> Any:
        result = await self.client.send_party_chat(args["content"])
        return {
            "message_id": result.message_id,
            "paths": {str(k): v for k, v in result.paths.items()},
            "failed": {str(k): f"{type(v).__name__}: {v}" for k, v in result.failed.items()},
        }

    async def position(self, args: dict[str, Any]) -> Any:
        update = await self.client.send_position_update(args["position"], args.get("velocity"))
        return {"seq": update.seq}

    async def quality(self, args: dict[str, Any]) -> Any:
        target = args.get("target")
        if target is None:
            return {
                str(cid): dataclasses.asdict(q)
                for cid, q in self.client.connection_qualities().items()
            }
        found = self.client.connection_quality(target)
        return dataclasses.asdict(found) if found is not None else None

    async def movement_available(self, args: dict[str, Any]) -> Any:
        return self.client.movement_available(args["target"])

    async def peers(self, args: dict[str, Any]) -> Any:
        node = self.client.node
        return sorted(p.character_id for p in node.peers.values()) if node is not None else []

    async def candidates(self, args: dict[str, Any]) -> Any:
        return {
            str(cid): [c.model_dump(mode="json") for c in entry.candidates]
            for cid, entry in self.client.peers.candidates.peers.items()
        }

    # -- events ---------------------------------------------------------------------------

    def _tap_node(self) -> None:
        """Record the path of every delivered message and report peer connections."""
        node = self.client.node
        if node is None or self._tapped:
            return
        self._tapped = True
        events = node.core.events  # the queue the node drains after every flush
        dispatch = node._dispatch
        paths = self._paths

        def tapped() -> None:
            for event in events:  # read before the node pops them and calls the handlers
                if isinstance(event, MessageDelivered):
                    paths[event.message.message_id] = event.path
            dispatch()

        node._dispatch = tapped  # type: ignore[method-assign]
        node.add_peer_listener(self._on_peer)
        node.add_path_listener(self._on_path)

    def _on_path(self, event: PathChanged) -> None:
        _emit(
            {
                "event": "path",
                "character_id": event.identity.character_id,
                "path": event.path,
                "silent": event.silent,
            }
        )

    def _on_peer(self, event: PeerEvent) -> None:
        connected = isinstance(event, PeerConnected)
        _emit(
            {
                "event": "peer",
                "kind": "connected" if connected else "disconnected",
                "character_id": event.identity.character_id,
                "address": _address(event.address) if isinstance(event, PeerConnected) else None,
            }
        )

    def _on_chat(self, message: BaseMessage) -> None:
        assert isinstance(message, WhisperMessage | PartyChatMessage)  # noqa: S101
        _emit(
            {
                "event": "message",
                "type": str(message.type),
                "sender_id": message.sender_id,
                "sender_name": message.sender_name,
                "content": message.content,
                "path": self._paths.pop(message.message_id, None),
            }
        )

    def _on_position(self, message: BaseMessage) -> None:
        assert isinstance(message, PositionUpdateMessage)  # noqa: S101
        _emit(
            {
                "event": "position",
                "character_id": message.character_id,
                "seq": message.seq,
                "position": [message.position.x, message.position.y, message.position.z],
            }
        )

    def _on_invite(self, message: BaseMessage) -> None:
        assert isinstance(message, PartyInviteMessage)  # noqa: S101
        _emit(
            {
                "event": "party_invite",
                "party_id": message.party_id,
                "inviter_id": message.inviter_id,
            }
        )

    def _on_party(self, message: BaseMessage) -> None:
        assert isinstance(message, PartyUpdateMessage)  # noqa: S101
        _emit({"event": "party", **_party(message)})

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Answer commands from stdin until ``quit`` or its end; then disconnect."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        _emit({"event": "ready"})
        pending: set[asyncio.Task[None]] = set()
        try:
            while line := await reader.readline():
                command = json.loads(line)
                if command.get("op") == "quit":
                    await self.client.disconnect()
                    _emit({"id": command.get("id"), "ok": True, "result": None})
                    return
                # each command runs on its own: a whisper waiting for its ACK does not hold
                # back the party chat the test sends next
                task = asyncio.create_task(self._answer(command))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
            await self.client.disconnect()

    async def _answer(self, command: dict[str, Any]) -> None:
        ident = command.get("id")
        op = self.ops.get(command.get("op", ""))
        if op is None:
            error = {"type": "UnknownOp", "code": None, "message": f"no op {command.get('op')!r}"}
            _emit({"id": ident, "ok": False, "error": error})
            return
        try:
            result = await op(command)
        except ShardsError as exc:
            code = getattr(exc, "code", None)
            error = {
                "type": type(exc).__name__,
                "code": str(code) if code else None,
                "message": str(exc),
            }
            _emit({"id": ident, "ok": False, "error": error})
            return
        _emit({"id": ident, "ok": True, "result": result})


def _party(party: PartyUpdateMessage) -> dict[str, Any]:
    return {
        "party_id": party.party_id,
        "leader_id": party.leader_id,
        "members": sorted(m.character_id for m in party.members if m.online),
    }


def main(argv: list[str]) -> None:
    server_url = argv[0]
    config = json.loads(argv[1]) if len(argv) > 1 else {}
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(Player(server_url, config).run())


if __name__ == "__main__":
    main(sys.argv[1:])
