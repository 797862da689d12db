"""The peer node: QUIC mesh, discovery and the seed's ``NetworkClient``.

* :class:`PeerNode` (:mod:`mesh.node`): one UDP socket, direct authenticated QUIC
  connections, reliable whisper/party chat, movement datagrams, relay fallback;
  :class:`PeerConnected` / :class:`PeerDisconnected` (:data:`PeerEvent`) from
  ``PeerNode.add_peer_listener`` and ``PeerNode.peer_events``.
* :class:`ConnectionQuality` (:mod:`mesh.quality`): per connected peer, the path in
  use, RTT, loss and bytes each way (``PeerNode.connection_quality``,
  ``NetworkClient.connection_quality``).
* :class:`MeshCore` (:mod:`mesh.core`): the sans-I/O state machine under it.
* :class:`Authenticator` / :class:`LobbyTicketAuth` (:mod:`mesh.auth`): who may connect.
* :class:`CloseCode` (:mod:`mesh.handshake`): application error codes of closed connections.
* Discovery (:mod:`mesh.discovery`): :class:`PeerFound` / :class:`PeerLost` from
  :class:`MdnsDiscovery` (LAN) or :class:`LobbyDirectory` (the lobby's peer directory);
  :class:`LanNode`, LAN play with no lobby, admitted by :class:`LanGroupAuth`.
* :class:`NetworkClient` (:mod:`mesh.client`): the seed's game client, composed of a
  lobby session (REST + WebSocket), a peer side (the node) and a pure state view;
  :class:`NearbyPlayer`, :class:`ReconnectPolicy`. ``MessageType`` is re-exported for the
  seed's ``from network import NetworkClient, MessageType``.
"""

from __future__ import annotations

from mesh.auth import Authenticator, LobbyTicketAuth, PeerIdentity
from mesh.client import NearbyPlayer, NetworkClient, ReconnectPolicy
from mesh.config import PEER_MESSAGE_TYPES, MeshConfig
from mesh.core import MeshCore
from mesh.discovery import (
    LanGroupAuth,
    LanNode,
    LobbyDirectory,
    MdnsDiscovery,
    PeerFound,
    PeerLost,
)
from mesh.events import PathChanged, PeerConnected, PeerDisconnected
from mesh.handshake import CloseCode
from mesh.node import (
    ConnectionQuality,
    PartySendResult,
    PeerEvent,
    PeerNode,
    RelayTransport,
    SendResult,
)
from protocol.messages.base import MessageType

__all__ = [
    "PEER_MESSAGE_TYPES",
    "Authenticator",
    "CloseCode",
    "ConnectionQuality",
    "LanGroupAuth",
    "LanNode",
    "LobbyDirectory",
    "LobbyTicketAuth",
    "MdnsDiscovery",
    "MeshConfig",
    "MeshCore",
    "MessageType",
    "NearbyPlayer",
    "NetworkClient",
    "PartySendResult",
    "PathChanged",
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "PeerFound",
    "PeerIdentity",
    "PeerLost",
    "PeerNode",
    "ReconnectPolicy",
    "RelayTransport",
    "SendResult",
]
