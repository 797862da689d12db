"""Adapters from the product's ``mesh.PeerNode`` to the benchmarks' endpoint interface.

A benchmark "lobby" is an Ed25519 key made in the orchestrating process (raw bytes handed to
children); each node gets a real peer ticket from it and authenticates with
``mesh.auth.LobbyTicketAuth``, as in the mesh's own tests. ``sent_log`` maps each update's
``seq`` to its send time, since the binary movement update carries the sender's loop time, not
a nanosecond stamp; the driver joins the logs by ``seq``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

__all__ = [
    "PeerNodeEndpoint",
    "lobby_key_bytes",
    "make_node",
    "peer_endpoint",
    "product_skip_reason",
    "start_node",
]


def product_skip_reason() -> str | None:
    """Why the mesh benchmarks cannot measure the product yet (None: they can)."""
    try:
        from mesh.node import PeerNode  # noqa: F401
    except ImportError as exc:
        return f"mesh.PeerNode is not importable yet ({exc})"
    return None


def lobby_key_bytes() -> bytes:
    """A fresh benchmark lobby signing key (Ed25519, raw private bytes)."""
    return os.urandom(32)


async def make_node(
    lobby_key: bytes,
    character_id: int,
    name: str,
    *,
    config: dict[str, Any] | None = None,
    relay: Any = None,
) -> Any:
    """A started PeerNode on 127.0.0.1:0 with a ticket from the benchmark lobby key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.crypto import Identity, issue_ticket, public_key_raw

    key = Ed25519PrivateKey.from_private_bytes(lobby_key)
    identity = Identity.generate()
    ticket = issue_ticket(
        key,
        character_id=character_id,
        character_name=name,
        faction="Crimson Covenant",
        public_key=identity.public_key,
        box_key=identity.box_public_key,
        now=time.time(),
        ttl=3600.0,
    )
    return await start_node(identity, ticket, public_key_raw(key), config=config, relay=relay)


async def start_node(
    identity: Any,
    ticket: str,
    lobby_public_key: bytes,
    *,
    config: dict[str, Any] | None = None,
    relay: Any = None,
) -> Any:
    """A started PeerNode on 127.0.0.1:0 for ``identity`` holding ``ticket``."""
    from mesh.auth import LobbyTicketAuth
    from mesh.core import MeshConfig
    from mesh.node import PeerNode

    auth = LobbyTicketAuth(lobby_public_key, ticket)
    mesh_config = MeshConfig(**(config or {}))
    kwargs: dict[str, Any] = {}
    if relay is not None:
        kwargs["relay"] = relay
    node = PeerNode(
        identity,
        host="127.0.0.1",
        port=0,
        auth=auth,
        config=mesh_config,
        max_connections=mesh_config.max_connections,
        **kwargs,
    )
    await node.start()
    node.bench_ticket = ticket  # type: ignore[attr-defined]
    return node


class PeerNodeEndpoint:
    """One PeerNode sending its own position; receives the other's (see ``bench._pairs``)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.node: Any = None
        self.credential: str | None = None
        self.sent_log: dict[int, int] = {}
        self.character_id = int.from_bytes(os.urandom(3), "big") + 1

    async def open(self, on_update: Any) -> tuple[str, int]:
        from protocol.messages.base import MessageType

        self.node = await make_node(
            self.options["lobby_key"],
            self.character_id,
            f"Bench{self.character_id}",
            config=self.options.get("config"),
        )
        self.credential = self.node.bench_ticket

        def on_position(update: Any) -> None:
            on_update(update.seq, -1)

        self.node.register_handler(MessageType.POSITION_UPDATE, on_position)
        return (str(self.node.address[0]), int(self.node.address[1]))

    async def connect(
        self, peer: tuple[str, int], dial: bool, credential: str | None = None
    ) -> None:
        if dial:
            assert credential is not None
            await asyncio.wait_for(self.node.connect(credential, peer), 15.0)
            return
        deadline = time.monotonic() + 15.0
        while not self.node.peers:
            if time.monotonic() > deadline:
                raise TimeoutError("the other node never connected")
            await asyncio.sleep(0.01)

    def send_update(self, seq: int, send_ns: int) -> None:
        update = self.node.send_position_update((1.0, 2.0, 3.0), (0.5, 0.0, 0.5), location_id=1)
        self.sent_log[update.seq] = send_ns

    async def close(self) -> None:
        if self.node is not None:
            await self.node.close()


async def peer_endpoint(options: dict[str, Any]) -> PeerNodeEndpoint:
    """The ``bench._pairs`` factory for a PeerNode side."""
    return PeerNodeEndpoint(options)
