"""The peer half of a client: its node, its lobby-signed ticket, the peers the lobby names.

:class:`PeerSide` starts the client's :class:`~mesh.node.PeerNode` (one UDP
socket on ``host:port``) when a character is selected and registers it with
the lobby (:meth:`PeerSide.select`: ``POST /api/characters/select`` with the
node's Ed25519 and X25519 keys and its endpoints; the answer carries the
lobby-signed ticket the node then presents in every handshake). It renews that
ticket at 80 % of its lifetime, turns the lobby directory's ``PeerFound`` /
``PeerLost`` into node peers (dialled at once with ``auto_connect``, :class:`PeerSettings`),
pairs with a whisper target on demand (:meth:`PeerSide.lookup`:
``POST /api/peers/{id}/pair``, after ``GET /api/peers?name=`` for a name) and
carries relay envelopes out through the lobby socket as ``RELAY`` messages
(and in, :meth:`PeerSide.relayed`).

Rendezvous (:mod:`mesh.client.rendezvous`): the lobby hands a peer's
candidates only to peers it pairs with it; :attr:`PeerSide.candidates` keeps
what it handed us (:meth:`PeerSide.peer_candidates`). We register host
candidates (the advertised endpoints) at select, and the server-reflexive /
relayed ones the node learns are registered with :meth:`PeerSide.add_candidates`
(a re-select). :meth:`PeerSide.ice_servers` answers the STUN servers and TURN
credentials to use.

Until our own ticket is in place no peer is adopted (a handshake would fail):
``PEER_INFO`` that arrives before the select answer is adopted right after it.

It reads the game view (our character, party, who is near) from a
:class:`~mesh.client.state.ClientState` and talks to the lobby through a
:class:`~mesh.client.session.LobbySession`; it changes neither.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mesh.auth import LobbyTicketAuth
from mesh.client.dispatch import BackgroundTasks
from mesh.client.rendezvous import (
    CandidateBook,
    IceCache,
    LocalCandidates,
    PeerCandidates,
    stun_server_address,
)
from mesh.client.session import LobbySession, decode_keys
from mesh.client.state import ClientState, Moved
from mesh.client.turn import TurnFallback
from mesh.config import MeshConfig
from mesh.discovery.base import DiscoveryEvent, PeerFound, PeerLost
from mesh.discovery.lobby import LobbyDirectory
from mesh.node import PeerNode
from protocol.candidates import Candidate, CandidateKind
from protocol.crypto import Identity, b64url_decode, b64url_encode
from protocol.errors import (
    ApiError,
    CryptoError,
    ErrorCode,
    MeshConfigError,
    MeshError,
    NotConnectedError,
    PeerUnreachableError,
    ShardsError,
)
from protocol.messages.base import BaseMessage, MessageType
from protocol.messages.peer import PeerInfoMessage, RelayMessage
from protocol.rest import CharacterSelectResponse, IceServersOut, PeerInfoOut
from protocol.version import parse_version

__all__ = ["PEER_TYPES", "PeerSettings", "PeerSide", "env_p2p_port"]

Address = tuple[str, int]

logger = logging.getLogger("mesh.client")

PEER_TYPES = (
    MessageType.WHISPER,
    MessageType.PARTY_CHAT,
    MessageType.CHAT,
    MessageType.MOVE,
    MessageType.POSITION_UPDATE,
    MessageType.PLAYER_LEFT_AREA,
)
"""What the node delivers to the client's handlers."""

RENEW_AT = 0.8
"""Renew the ticket at this fraction of its lifetime."""
RENEW_RETRY = 30.0
"""Seconds between renewal attempts after a failure (while the ticket is valid)."""


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """Where and how the client's node runs.

    ``host`` / ``port``: the UDP bind (``port`` None: the node's own default;
    0: any free port); ``advertise``: the ``address:port`` endpoints (IP
    literals: the lobby takes no names) to publish instead of the bound one;
    ``max_connections``: direct peers kept;
    ``auto_connect``: dial peers as soon as the lobby names them (else on first
    send); ``mesh_config``: node tunables; ``learn_reflexive``: learn the node's
    public address by STUN at select and register it (None, the default: only
    when ``advertise`` is not given; an explicit ``advertise`` is all we publish),
    and again every ``reflexive_refresh`` seconds (below common NAT UDP timeouts of
    30 s, so the mapping peers were handed stays open).
    """

    host: str = "127.0.0.1"
    port: int | None = None
    max_connections: int = 10
    advertise: tuple[str, ...] | None = None
    auto_connect: bool = True
    mesh_config: MeshConfig | None = None
    learn_reflexive: bool | None = None
    reflexive_refresh: float = 20.0

    @property
    def learns_reflexive(self) -> bool:
        """Whether select learns and registers the server-reflexive address."""
        if self.learn_reflexive is not None:
            return self.learn_reflexive
        return self.advertise is None


class PeerSide:
    """Node, ticket, directory adoption, peer lookups (see the module docstring)."""

    def __init__(
        self,
        session: LobbySession,
        state: ClientState,
        *,
        on_message: Callable[[BaseMessage], None],
        settings: PeerSettings | None = None,
        identity: Identity | None = None,
    ) -> None:
        self._session = session
        self._state = state
        self._on_message = on_message
        self.settings = settings or PeerSettings()
        self.identity = identity or Identity.generate()
        """The node's Ed25519 identity (a new one for each character switch)."""
        self.directory = LobbyDirectory()
        """The peers the lobby named (``PEER_INFO``), as discovery events."""
        self.node: PeerNode | None = None
        """The running node (None before a character is selected)."""
        self.ticket: str | None = None
        """Our lobby-signed peer ticket (None until the select answer)."""
        self.ticket_expires_at: float | None = None
        self._auth: LobbyTicketAuth | None = None
        self._renewal: asyncio.TimerHandle | None = None
        self._peer_characters: dict[str, int] = {}
        self._tasks = BackgroundTasks()
        self.directory.add_listener(self._on_discovery)
        self.candidates = CandidateBook()
        """The candidates of the peers the lobby paired us with."""
        self.local = LocalCandidates()
        """Our own candidates, as registered at the last select."""
        self._ice = IceCache(session.ice_servers, time.time)
        self._learning: asyncio.Task[None] | None = None
        self._learned = asyncio.Event()
        self._punching: dict[str, set[tuple[str, int]]] = {}
        self.turn = TurnFallback(
            node=lambda: self.node,
            ice=lambda refresh: self.ice_servers(refresh=refresh),
            register=self._register_turn_candidates,
            peer_candidates=self.candidates.get,
            tasks=self._tasks,
            reflexive=self.settings.learns_reflexive,
        )
        """When a paired peer is reached through TURN (:mod:`mesh.client.turn`)."""

    # -- lifecycle ----------------------------------------------------------------------------

    def reset_directory(
        self, lobby_public_key: bytes, accepted_keys: tuple[bytes, ...] = ()
    ) -> None:
        """A new lobby session: a fresh directory whose tickets verify against its keys."""
        self.directory = LobbyDirectory(lobby_public_key, accepted_keys)
        self.directory.add_listener(self._on_discovery)
        self.candidates.clear()
        self._ice.clear()

    async def select(self, character_id: int) -> CharacterSelectResponse:
        """Start the node (a fresh identity when switching characters), register it, adopt peers.

        Returns the lobby's answer; the caller records the character in the state.
        """
        current = self._state.character
        if current is not None and current.id != character_id and self.node is not None:
            await self.close_node()
            self.identity = Identity.generate()
        node = await self._ensure_node()
        answer = await self._post_select(character_id, node)
        node.set_location(answer.character.location_id)
        if self.settings.learns_reflexive and (self._learning is None or self._learning.done()):
            self._learned.clear()
            self._learning = asyncio.create_task(self._keep_learning(), name="mesh-stun")
        return answer

    async def learn_candidates(self) -> list[Candidate]:
        """Learn the node's server-reflexive address now and register it with the lobby.

        Asks the lobby's STUN servers (:meth:`ice_servers`) through the node's own
        socket (:meth:`PeerNode.discover_reflexive`); a new mapping is registered
        with :meth:`add_candidates` (the paired peers get it at once), one that is
        a host candidate already (no NAT) or unchanged is not. Relayed candidates
        stay as they are. Returns every candidate registered now, best first.
        :meth:`select` runs this in the background, and again every
        ``reflexive_refresh`` seconds (:class:`PeerSettings`): the Binding keeps our
        NAT's mapping alive while no peer is linked, and a changed network (a new
        mapping) reaches the paired peers.
        """
        node = self.require_node()
        ice = await self.ice_servers()
        servers = [a for a in map(stun_server_address, ice.stun_urls) if a is not None]
        srflx = await node.discover_reflexive(servers) if servers else None
        learned = [] if srflx is None or self.local.is_host(srflx) else [srflx]
        if learned != list(self.local.learned_of(CandidateKind.SRFLX)):
            await self.add_candidates([*learned, *self.local.learned_of(CandidateKind.RELAY)])
            logger.info("registered candidates: %s", [c.endpoint for c in self.local.all])
        return self.local.all

    async def candidates_learned(self) -> list[Candidate]:
        """Wait for the first learning :meth:`select` started (if any); our candidates."""
        if self._learning is not None and not self._learning.done():
            await self._learned.wait()
        return self.local.all

    async def _keep_learning(self) -> None:
        failing = False
        while True:
            try:
                await self.learn_candidates()
                failing = False
            except (MeshError, OSError) as exc:  # no STUN, the lobby refused: host only
                level = logging.DEBUG if failing else logging.WARNING
                logger.log(level, "could not learn our public address (host only): %s", exc)
                failing = True
            finally:
                self._learned.set()
            await asyncio.sleep(self.settings.reflexive_refresh)

    def adopt_known(self) -> None:
        """Adopt every peer the directory named while we waited for the ticket."""
        node = self.node
        if node is None:
            return
        for found in list(self.directory.peers.values()):
            self._adopt(node, found)
        if self.ticket is not None:
            for entry in list(self.candidates.peers.values()):
                self.turn.paired(entry)

    async def renew(self) -> None:
        """Renew our ticket now (re-select the same character); schedules the next renewal."""
        node, character = self.node, self._state.character
        if node is None or character is None:
            raise NotConnectedError("no peer node: select a character first")
        await self._post_select(character.id, node)

    async def add_candidates(self, candidates: list[Candidate]) -> None:
        """Register the node's server-reflexive / relayed candidates with the lobby.

        They replace the ones added before (host candidates stay the advertised
        endpoints) and reach the paired peers at once: a re-select, so each
        of them gets our new ``PEER_INFO``.
        """
        self.local.learn(candidates)
        if self.node is not None and self._state.character is not None:
            await self.renew()

    async def _register_turn_candidates(self, candidates: list[Candidate]) -> None:
        """Our TURN allocation's candidates (none: it ended), registered at once."""
        self.local.learn_turn(candidates)
        if self.node is not None and self._state.character is not None:
            await self.renew()

    async def ice_servers(self, *, refresh: bool = False) -> IceServersOut:
        """The STUN servers and TURN credentials to use (cached while they are fresh)."""
        self._state.require_character()
        return await self._ice.get(refresh=refresh)

    def peer_candidates(self, character_id: int) -> PeerCandidates | None:
        """The candidates the lobby gave us for ``character_id`` (None: not paired)."""
        return self.candidates.get(character_id)

    @property
    def renewal_due(self) -> bool:
        """True while a ticket renewal is scheduled."""
        return self._renewal is not None

    async def stop_background(self) -> None:
        """Stop what calls the lobby on its own: the ticket renewal, the address learning,
        the TURN fallback's timers and every background task (punches, TURN dials,
        registrations). The node keeps running. Idempotent."""
        await self._stop_node_work()
        await self._tasks.cancel_all()

    async def _stop_node_work(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        learning, self._learning = self._learning, None
        if learning is not None and not learning.done():
            learning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await learning
        self._learned.set()  # whoever waits in candidates_learned: there is no more to wait for
        self.turn.close()

    async def close_node(self) -> None:
        """Stop the node and the ticket renewal (the directory stays)."""
        await self._stop_node_work()
        self.local.learn_turn([])
        node, self.node = self.node, None
        self.ticket = None
        self.ticket_expires_at = None
        if node is not None:
            await node.close()
        self._peer_characters.clear()

    async def close(self) -> None:
        """Stop the node, the directory and every background task (idempotent)."""
        await self.close_node()
        await self.directory.close()
        await self._tasks.cancel_all()

    def require_node(self) -> PeerNode:
        self._state.require_character()
        if self.node is None:
            raise NotConnectedError("the peer node is not running")
        return self.node

    # -- what the lobby says ------------------------------------------------------------------

    def peer_info(self, msg: PeerInfoMessage, now: float) -> bool:
        """A ``PEER_INFO`` of another character; False when its ticket does not verify.

        Its candidates are kept first, so adopting the peer punches every one of them.
        """
        previous = self.candidates.get(msg.character_id)
        entry = self.candidates.update(msg, now=now)
        try:
            self.directory.peer_info(msg, now=now)
        except CryptoError as exc:
            self.candidates.restore(msg.character_id, previous)
            logger.warning("PEER_INFO for %s refused: %s", msg.character_name, exc)
            return False
        if entry is not None and self.node is not None and self.ticket is not None:
            self.turn.paired(entry)
        return True

    def character_left(self, character_id: int) -> None:
        """The lobby says ``character_id`` left our area (or went offline)."""
        self.directory.character_left(character_id)
        if character_id not in self._state.party_member_ids():
            self.candidates.forget(character_id)

    def peer_moved(self, character_id: int, location_id: int) -> None:
        """Another character's location, for the node's area of interest."""
        if self.node is not None:
            self.node.set_peer_location(character_id, location_id)

    def moved(self, moved: Moved) -> None:
        """We moved: forget the peers no longer near, tell the node our location."""
        for character_id in moved.forgotten:
            self.directory.character_left(character_id)
            if character_id not in self._state.party_member_ids():
                self.candidates.forget(character_id)
        if self.node is not None:
            self.node.set_location(moved.location_id)

    def relayed(self, msg: RelayMessage) -> None:
        """A relay envelope from the lobby, for our node."""
        if self.node is None:
            return
        try:
            data = base64.b64decode(msg.payload, validate=True)
        except (binascii.Error, ValueError):
            logger.debug("relay payload is not base64")
            return
        self.node.receive_relayed(data)

    async def lookup(self, target: int | str) -> int:
        """The character id of ``target`` (id or name), known to the node.

        Unknown to the node: the lobby pairs us with it for a whisper (both
        sides get each other's candidates and dial), or, when it refuses to
        pair (rate limit), gives its identity alone (the relay path works).
        Raises :class:`PeerUnreachableError` when the lobby knows no usable entry.
        """
        node = self.require_node()
        me = self._state.require_character()
        if target == me.id or (isinstance(target, str) and target.casefold() == me.name.casefold()):
            raise MeshError("that is your own character", code=ErrorCode.VALIDATION_ERROR)
        if isinstance(target, int):
            if node.core.known_peer(target) is not None:
                return target
        else:
            player = self._state.nearby.by_name(target)
            if player is not None and node.core.known_peer(player.character_id) is not None:
                return player.character_id
        try:
            entry = await self._pair(target)
            info = PeerInfoMessage.model_validate(entry.model_dump(exclude={"paired"}))
            if not self.peer_info(info, time.time()):
                raise CryptoError("its ticket does not verify")
        except ApiError as exc:
            if exc.status == 404:
                raise PeerUnreachableError(
                    f"{target!r} is offline or has no peer node", details={"target": target}
                ) from exc
            raise
        except (ValueError, ShardsError) as exc:
            raise PeerUnreachableError(f"the lobby's entry for {target!r} is unusable") from exc
        if node.core.known_peer(info.character_id) is None:
            raise PeerUnreachableError(f"{target!r} has no usable peer ticket")
        return info.character_id

    # -- internals ----------------------------------------------------------------------------

    async def _pair(self, target: int | str) -> PeerInfoOut:
        """Pair with ``target`` for a whisper; its identity alone if the lobby will not pair."""
        if isinstance(target, str):
            target = (await self._session.peer(target)).character_id
        status = self._session.status
        if status is not None and parse_version(status.protocol_version) < (1, 1):
            return await self._session.peer(target)  # a 1.0 lobby: no pairing, addresses for all
        try:
            return await self._session.pair(target)
        except ApiError as exc:
            if exc.status not in (409, 429):
                raise
            logger.info("the lobby did not pair us with %s (%s): relay path", target, exc)
            return await self._session.peer(target)

    async def _ensure_node(self) -> PeerNode:
        if self.node is not None:
            return self.node
        key = self._session.lobby_public_key
        if key is None:
            raise NotConnectedError("not logged in: call connect() first")
        self.ticket = None
        self._auth = LobbyTicketAuth(key, "-", accepted_keys=self._session.lobby_accepted_keys)
        settings = self.settings
        # None: the node's own default port.
        port: dict[str, Any] = {} if settings.port is None else {"port": settings.port}
        node = PeerNode(
            self.identity,
            host=settings.host,
            auth=self._auth,
            relay=self._relay_send,
            max_connections=settings.max_connections,
            config=settings.mesh_config,
            **port,
        )
        for message_type in PEER_TYPES:
            node.register_handler(message_type, self._on_message)
        node.add_path_listener(self.turn.path_changed)
        node.add_turn_listener(self.turn.turn_event)
        await node.start()
        self.node = node
        return node

    async def _post_select(self, character_id: int, node: PeerNode) -> CharacterSelectResponse:
        """``POST /api/characters/select`` with the node's keys and endpoints; take the ticket."""
        body: dict[str, Any] = {
            "character_id": character_id,
            "peer_public_key": b64url_encode(self.identity.public_key),
            "box_key": b64url_encode(self.identity.box_public_key),
            "endpoints": self.local.set_host(await self._advertised_endpoints(node)),
        }
        if self.local.learned:  # a 1.0 lobby knows no "candidates": only sent when there are
            body["candidates"] = [c.model_dump(mode="json") for c in self.local.learned]
        answer = await self._session.select(body)
        if answer.ticket is None:
            raise ApiError("the lobby issued no peer ticket", code=ErrorCode.UNAVAILABLE)
        try:
            lobby_key = b64url_decode(answer.lobby_public_key)
        except ValueError:
            lobby_key = b""
        session = self._session
        if lobby_key != session.lobby_public_key and lobby_key not in session.lobby_accepted_keys:
            raise ApiError(
                "the ticket key differs from the lobby's published keys",
                code=ErrorCode.HANDSHAKE_FAILED,
            )
        assert self._auth is not None  # noqa: S101 - set by _ensure_node
        # a rotating lobby names the keys it trusts now: peers holding any of them are admitted
        named = decode_keys(answer.lobby_accepted_keys)
        self._auth.trust((*session.lobby_accepted_keys, lobby_key, *named))
        self.directory.set_lobby_key(self._auth.lobby_public_key, self._auth.trusted_keys[1:])
        self._auth.update_ticket(answer.ticket)
        self.ticket = answer.ticket
        self.ticket_expires_at = answer.ticket_expires_at
        self._schedule_renewal(answer.ticket_expires_at)
        return answer

    def _schedule_renewal(self, expires_at: float | None, delay: float | None = None) -> None:
        """Renew at 80 % of the ticket's lifetime (or after ``delay``)."""
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        if expires_at is None:
            return
        if delay is None:
            delay = max(5.0, RENEW_AT * (expires_at - time.time()))
        loop = asyncio.get_running_loop()
        self._renewal = loop.call_later(
            delay, lambda: self._tasks.spawn(self._renew_due(expires_at))
        )

    async def _renew_due(self, expires_at: float) -> None:
        self._renewal = None
        if self.node is None or self._state.character is None:
            return
        try:
            await self.renew()
        except MeshError as exc:
            logger.warning("peer ticket renewal failed (retrying): %s", exc)
            if time.time() < expires_at:
                self._schedule_renewal(expires_at, RENEW_RETRY)

    async def _advertised_endpoints(self, node: PeerNode) -> list[str]:
        """``advertise``, else the bound endpoint; for a wildcard bind, the local
        address of the route towards the lobby (a UDP ``connect`` sends nothing)."""
        if self.settings.advertise is not None:
            return list(self.settings.advertise)
        host, port = node.address
        if not ipaddress.ip_address(host).is_unspecified:
            return [node.endpoint]
        lobby_host = urlsplit(self._session.rest.base_url).hostname or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                lobby_host, 9, family=family, type=socket.SOCK_DGRAM
            )
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(infos[0][4])
                local = str(probe.getsockname()[0])
        except (OSError, IndexError):
            logger.warning("cannot tell which address to advertise; peers will use the relay")
            return []
        return [f"[{local}]:{port}" if ":" in local else f"{local}:{port}"]

    async def _relay_send(self, character_id: int, data: bytes) -> None:
        payload = base64.b64encode(data).decode("ascii")
        socket_ = self._session.socket
        if socket_ is None:
            raise NotConnectedError("no lobby connection to relay through")
        await socket_.send(RelayMessage(target_id=character_id, payload=payload))

    def _on_discovery(self, event: DiscoveryEvent) -> None:
        node = self.node
        if node is None:
            return
        if isinstance(event, PeerLost):
            cid = self._peer_characters.pop(event.peer_id, None)
            if cid is not None and cid in self._state.party_member_ids():
                return
            node.disconnect_peer(event.peer_id)
            return
        self._adopt(node, event)

    def _adopt(self, node: PeerNode, found: PeerFound) -> None:
        if found.ticket is None:
            return
        cid_text = found.extra.get("character_id")
        if cid_text is not None:
            self._peer_characters[found.peer_id] = int(cid_text)
        if found.peer_id == node.peer_id or self.ticket is None:
            # Until our own ticket is in place a handshake would fail: select adopts
            # every directory entry once it is (adopt_known).
            return
        paired = self.candidates.get(int(cid_text)) if cid_text is not None else None
        if paired is not None:
            addresses = paired.direct_addresses()
        else:  # no pairing (a 1.0 lobby, the LAN): its endpoints, IP addresses only
            addresses = [e for e in found.endpoints if _is_ip(e[0])]
        # where the node redials the direct path: the best host / server-reflexive
        # address, never a relayed one (the legacy endpoints list relayed candidates too;
        # a TURN address dialled as "direct" would carry the peer through the relay
        # under the wrong path, and be redialled as if it were the peer)
        addr = addresses[0] if addresses else None
        try:
            node.add_peer(found.ticket, addr)
        except MeshError as exc:
            logger.warning("lobby named a peer with a bad ticket (%s): %s", found.name, exc)
            return
        location = found.extra.get("location_id")
        if cid_text is not None and location is not None:
            node.set_peer_location(int(cid_text), int(location))
        if not self.settings.auto_connect or found.peer_id in node.peers:
            return  # a linked peer is never punched again
        # a punch under way takes only the addresses it is not dialling yet
        dialling = self._punching.setdefault(found.peer_id, set())
        new = [a for a in addresses if a not in dialling]
        if new:
            dialling.update(new)
            self._tasks.spawn(self._punch(node, found, new))

    async def _punch(self, node: PeerNode, found: PeerFound, addresses: list[Address]) -> None:
        assert found.ticket is not None  # noqa: S101 - only peers with a ticket are adopted
        try:
            await node.punch(found.ticket, addresses)
        except (MeshError, OSError) as exc:
            logger.info("no direct connection to %s yet (%s): relay fallback", found.name, exc)
        finally:
            dialling = self._punching.get(found.peer_id)
            if dialling is not None:
                dialling.difference_update(addresses)
                if not dialling:
                    del self._punching[found.peer_id]


def env_p2p_port() -> int | None:
    """``SHARDS_P2P_PORT`` from the environment (None when unset: the node's default)."""
    text = os.environ.get("SHARDS_P2P_PORT", "").strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError as exc:
        raise MeshConfigError(f"SHARDS_P2P_PORT must be a port number, got {text!r}") from exc
    if not 0 <= port <= 65535:
        raise MeshConfigError(f"SHARDS_P2P_PORT out of range: {port}")
    return port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
