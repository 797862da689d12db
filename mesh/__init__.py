"""The peer node: QUIC mesh, discovery and the seed's ``NetworkClient``.

* :class:`PeerNode` (:mod:`mesh.node`): one UDP socket, direct authenticated QUIC
  connections, reliable whisper/party chat, movement datagrams, relay fallback.
* :class:`MeshCore` (:mod:`mesh.core`): the sans-I/O state machine under it.
* :class:`Authenticator` / :class:`LobbyTicketAuth` (:mod:`mesh.auth`): who may connect.
* :class:`CloseCode` (:mod:`mesh.handshake`): application error codes of closed connections.
"""

from __future__ import annotations

from mesh.auth import Authenticator, LobbyTicketAuth, PeerIdentity
from mesh.core import PEER_MESSAGE_TYPES, MeshConfig, MeshCore
from mesh.handshake import CloseCode
from mesh.node import PartySendResult, PeerNode, RelayTransport, SendResult

__all__ = [
    "PEER_MESSAGE_TYPES",
    "Authenticator",
    "CloseCode",
    "LobbyTicketAuth",
    "MeshConfig",
    "MeshCore",
    "PartySendResult",
    "PeerIdentity",
    "PeerNode",
    "RelayTransport",
    "SendResult",
]
