"""The seed's ``NetworkClient``: lobby session (REST + WebSocket) plus a peer node.

* :class:`NetworkClient` (:mod:`mesh.client.facade`): the game client API.
* :class:`NearbyPlayer` (:mod:`mesh.client.nearby`): what ``get_nearby_players`` returns.
* :class:`ReconnectPolicy` (:mod:`mesh.client.socket`): lobby reconnection backoff.
* :class:`LobbyRest` / :class:`LobbySocket`: the REST and WebSocket halves.
"""

from __future__ import annotations

from mesh.client.core import DEFAULT_SERVER_URL, FERNET_WS_SALT, Handler
from mesh.client.facade import NetworkClient, TradeItemsLike
from mesh.client.nearby import NearbyPlayer, NearbyTracker
from mesh.client.rest import LobbyRest
from mesh.client.socket import FERNET_WS_PARAM, LobbySocket, ReconnectPolicy, SocketState

__all__ = [
    "DEFAULT_SERVER_URL",
    "FERNET_WS_PARAM",
    "FERNET_WS_SALT",
    "Handler",
    "LobbyRest",
    "LobbySocket",
    "NearbyPlayer",
    "NearbyTracker",
    "NetworkClient",
    "ReconnectPolicy",
    "SocketState",
    "TradeItemsLike",
]
