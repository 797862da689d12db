"""Helpers for discovery tests: unique groups, and waiting on discovery events."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from mesh.discovery import Discovery, MdnsDiscovery, PeerFound

__all__ = ["LOOPBACK", "make_node", "new_peer_id", "new_tag", "wait_for_view"]

LOOPBACK = ["127.0.0.1"]


def new_peer_id() -> str:
    return secrets.token_hex(16)


def new_tag() -> str:
    """A fresh group tag, so concurrent test runs on loopback never see each other's nodes."""
    return secrets.token_hex(8)


def make_node(name: str, tag: str | None, **kwargs: object) -> MdnsDiscovery:
    options: dict[str, object] = {
        "peer_id": new_peer_id(),
        "name": name,
        "port": 40000 + secrets.randbelow(20000),
        "group_tag": tag,
        "interfaces": LOOPBACK,
        "heartbeat": 0.5,
        "peer_timeout": 3.0,
    }
    options.update(kwargs)
    return MdnsDiscovery(**options)  # type: ignore[arg-type]


async def wait_for_view(
    discovery: Discovery,
    predicate: Callable[[dict[str, PeerFound]], bool],
    within: float = 20.0,
) -> dict[str, PeerFound]:
    """Wait (on discovery events, with a timeout) until ``predicate(peers)`` holds."""

    async def watch() -> dict[str, PeerFound]:
        events = discovery.events()
        if predicate(dict(discovery.peers)):
            return dict(discovery.peers)
        async for _event in events:
            if predicate(dict(discovery.peers)):
                return dict(discovery.peers)
        raise AssertionError("discovery closed before the condition held")

    return await asyncio.wait_for(watch(), within)
