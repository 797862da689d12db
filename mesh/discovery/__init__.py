"""Discovery: how a node learns which peers exist (mDNS on a LAN, or the lobby).

:class:`Discovery` is the one interface (events :class:`PeerFound` / :class:`PeerLost`);
:class:`MdnsDiscovery` is its LAN source, :class:`LobbyDirectory` its lobby source (fed
with the lobby's ``PEER_INFO``). :class:`LanNode` is LAN play: a ``PeerNode`` admitted by
passphrase (:class:`LanGroupAuth`), joined over mDNS.
"""

from __future__ import annotations

from mesh.discovery.base import (
    Discovery,
    DiscoveryEvent,
    DiscoveryListener,
    Endpoint,
    ManualDiscovery,
    PeerFound,
    PeerLost,
)
from mesh.discovery.lan import (
    LanEvent,
    LanListener,
    LanNode,
    MemberJoined,
    MemberLeft,
    PeerIgnored,
)
from mesh.discovery.lan_auth import LanGroupAuth, lan_character_id
from mesh.discovery.lobby import LobbyDirectory, parse_endpoint
from mesh.discovery.mdns import SERVICE_TYPE, MdnsDiscovery, lan_interface_addresses

__all__ = [
    "SERVICE_TYPE",
    "Discovery",
    "DiscoveryEvent",
    "DiscoveryListener",
    "Endpoint",
    "LanEvent",
    "LanGroupAuth",
    "LanListener",
    "LanNode",
    "LobbyDirectory",
    "ManualDiscovery",
    "MdnsDiscovery",
    "MemberJoined",
    "MemberLeft",
    "PeerFound",
    "PeerIgnored",
    "PeerLost",
    "lan_character_id",
    "lan_interface_addresses",
    "parse_endpoint",
]
