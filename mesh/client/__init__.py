"""The seed's ``NetworkClient``: a lobby session (REST + WebSocket), a peer side, a state view.

* :class:`NetworkClient` (:mod:`mesh.client.network_client`): the game client API,
  composed of the three parts below.
* :class:`LobbySession` (:mod:`mesh.client.session`): login, the lobby WebSocket
  (:class:`LobbySocket`, :class:`ReconnectPolicy`), requests answered by ACK, typed
  REST calls (:class:`LobbyRest`).
* :class:`PeerSide` (:mod:`mesh.client.peers`): the peer node, its ticket, the peers
  the lobby names, the relay.
* :class:`ClientState` (:mod:`mesh.client.state`): the pure view of our character,
  party, trades and who is near (:class:`NearbyTracker`, :class:`NearbyPlayer`).
* :class:`HandlerTable` (:mod:`mesh.client.dispatch`): handlers by message type.
"""

from __future__ import annotations

from mesh.client.dispatch import BackgroundTasks, HandlerTable
from mesh.client.nearby import NearbyPlayer, NearbyTracker
from mesh.client.network_client import DEFAULT_SERVER_URL, NetworkClient
from mesh.client.peers import PeerSettings, PeerSide
from mesh.client.requests import TradeItemsLike
from mesh.client.rest import LobbyRest
from mesh.client.session import LobbySession, SessionPhase
from mesh.client.socket import FERNET_WS_PARAM, LobbySocket, ReconnectPolicy, SocketState
from mesh.client.state import ClientState, Moved
from protocol.crypto import WS_FERNET_SALT
from protocol.messages.base import Handler

__all__ = [
    "DEFAULT_SERVER_URL",
    "FERNET_WS_PARAM",
    "FERNET_WS_SALT",
    "BackgroundTasks",
    "ClientState",
    "Handler",
    "HandlerTable",
    "LobbyRest",
    "LobbySession",
    "LobbySocket",
    "Moved",
    "NearbyPlayer",
    "NearbyTracker",
    "NetworkClient",
    "PeerSettings",
    "PeerSide",
    "ReconnectPolicy",
    "SessionPhase",
    "SocketState",
    "TradeItemsLike",
]

FERNET_WS_SALT = WS_FERNET_SALT
"""PBKDF2 salt of the WebSocket Fernet key (``protocol.crypto.WS_FERNET_SALT``, shared with
the lobby)."""
