"""Discovery: how a node learns which peers exist (mDNS on a LAN, or the lobby).

:class:`Discovery` is the one interface; :class:`MdnsDiscovery` is its LAN source.
:class:`LanNode` is LAN play: a ``PeerNode`` admitted by passphrase, joined over mDNS.
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
from mesh.discovery.lan import LanEvent, LanNode, MemberJoined, MemberLeft, PeerIgnored
from mesh.discovery.lan_auth import LanGroupAuth, lan_character_id
from mesh.discovery.mdns import SERVICE_TYPE, MdnsDiscovery, lan_interface_addresses

__all__ = [
    "SERVICE_TYPE",
    "Discovery",
    "DiscoveryEvent",
    "DiscoveryListener",
    "Endpoint",
    "LanEvent",
    "LanGroupAuth",
    "LanNode",
    "ManualDiscovery",
    "MdnsDiscovery",
    "MemberJoined",
    "MemberLeft",
    "PeerFound",
    "PeerIgnored",
    "PeerLost",
    "lan_character_id",
    "lan_interface_addresses",
]
