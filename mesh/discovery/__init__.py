"""Discovery: how a node learns which peers exist (mDNS on a LAN, or the lobby).

:class:`Discovery` is the one interface; :class:`MdnsDiscovery` is its LAN source.
"""

from __future__ import annotations

from mesh.discovery.base import (
    Discovery,
    DiscoveryEvent,
    DiscoveryListener,
    Endpoint,
    PeerFound,
    PeerLost,
)
from mesh.discovery.mdns import SERVICE_TYPE, MdnsDiscovery, lan_interface_addresses

__all__ = [
    "SERVICE_TYPE",
    "Discovery",
    "DiscoveryEvent",
    "DiscoveryListener",
    "Endpoint",
    "MdnsDiscovery",
    "PeerFound",
    "PeerLost",
    "lan_interface_addresses",
]
