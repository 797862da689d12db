"""Fixtures for the mesh tests: a test "lobby" key issuing tickets, and real PeerNodes."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.auth import LobbyTicketAuth
from mesh.core import MeshConfig
from mesh.node import PeerNode
from protocol.crypto import Identity, issue_ticket, public_key_raw
from tests.optin import OptInMark


@dataclass
class FakeLobby:
    """Stands in for the lobby: holds the signing key and issues peer tickets."""

    key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return public_key_raw(self.key)

    def ticket(
        self,
        identity: Identity,
        character_id: int,
        name: str,
        *,
        now: float | None = None,
        ttl: float = 3600.0,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        return issue_ticket(
            key or self.key,
            character_id=character_id,
            character_name=name,
            faction="Crimson Covenant",
            public_key=identity.public_key,
            box_key=identity.box_public_key,
            now=time.time() if now is None else now,
            ttl=ttl,
        )


@pytest.fixture
def fake_lobby() -> FakeLobby:
    """A stand-in lobby signing key (named apart from the real-lobby ``lobby`` fixture)."""
    return FakeLobby(Ed25519PrivateKey.generate())


NodeFactory = Callable[..., Awaitable[PeerNode]]


@pytest.fixture
async def make_node(fake_lobby: FakeLobby) -> AsyncIterator[NodeFactory]:
    """``await make_node(character_id, name, **kwargs)``: a started node on 127.0.0.1:0."""
    nodes: list[PeerNode] = []
    ids = itertools.count(1)

    async def factory(
        character_id: int | None = None,
        name: str | None = None,
        *,
        config: MeshConfig | None = None,
        **kwargs: object,
    ) -> PeerNode:
        cid = character_id if character_id is not None else next(ids)
        identity = Identity.generate()
        auth = LobbyTicketAuth(
            fake_lobby.public_key, fake_lobby.ticket(identity, cid, name or f"hero{cid}")
        )
        node = PeerNode(identity, host="127.0.0.1", port=0, auth=auth, config=config, **kwargs)  # type: ignore[arg-type]
        await node.start()
        nodes.append(node)
        return node

    yield factory
    for node in reversed(nodes):
        await node.close()


def ticket_of(node: PeerNode) -> str:
    return node.core.auth.credential()


_SLOW = OptInMark(
    "slow",
    Path(__file__).parent,
    "{n} slow mesh tests (many-seed soaks) were deselected: "
    "run them with `-m slow` (bash scripts/check.sh -m slow --no-cov)",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``slow`` mesh tests (many-seed soaks) run only when asked for with ``-m slow``.

    This is where the default run leaves them out (about 700); the terminal summary
    says how many and how to run them (README.md, "Two commands for a fresh machine").
    """
    _SLOW.deselect(config, items)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    _SLOW.summarize(terminalreporter, config)
