"""A connection lasts while the peer's ticket does, unless the peer renews it (virtual time)."""

from __future__ import annotations

import pytest

from mesh.auth import LobbyTicketAuth
from mesh.events import PeerDisconnected
from mesh.handshake import CloseCode
from protocol.crypto import Identity
from protocol.errors import TicketExpiredError

from .sim import BASE_TIME, SimNet, SimNode


def disconnects(node: SimNode) -> list[PeerDisconnected]:
    return [e for e in node.events if isinstance(e, PeerDisconnected)]


def renew(net: SimNet, node: SimNode, *, ttl: float, character_id: int | None = None) -> str:
    """Give ``node`` a fresh ticket now, as NetworkClient's re-select does."""
    ticket = net.ticket(
        node.core.identity,
        node.character_id if character_id is None else character_id,
        ttl=ttl,
        issued_at=net.now,
    )
    auth = node.core.auth
    assert isinstance(auth, LobbyTicketAuth)
    auth.update_ticket(ticket)
    return ticket


@pytest.mark.parametrize("seed", range(3))
def test_connection_closes_when_the_peer_ticket_expires(seed: int) -> None:
    net = SimNet(seed, loss=0.05)
    a, b = net.add(1), net.add(2, ttl=60.0)
    net.establish(a, b)
    net.run_for(50.0 - net.now)
    assert net.connected(a, b)
    net.run_until(lambda: bool(disconnects(a)), limit=20.0)
    assert 60.0 <= net.now < 61.0  # at the expiry, by the timer (no traffic needed)
    (gone,) = disconnects(a)
    assert (gone.identity.character_id, gone.code) == (2, CloseCode.TICKET_EXPIRED)
    net.run_until(lambda: bool(disconnects(b)), limit=30.0)  # b hears why
    assert disconnects(b)[0].code == CloseCode.TICKET_EXPIRED
    assert not net.connected(a, b)
    with pytest.raises(TicketExpiredError):  # and nobody dials b on that ticket again
        net.connect(a, b)


@pytest.mark.parametrize("seed", range(3))
def test_a_renewed_ticket_presented_on_the_connection_keeps_it(seed: int) -> None:
    net = SimNet(seed, loss=0.05)
    a, b = net.add(1), net.add(2, ttl=60.0)
    net.establish(a, b)
    net.run_for(40.0 - net.now)
    renewed_at = net.now
    renew(net, b, ttl=3600.0)
    net.run_for(200.0)  # far past the first ticket's expiry
    assert net.connected(a, b)
    assert disconnects(a) == [] and disconnects(b) == []
    peer = a.core.peers[b.core.identity.peer_id]
    assert peer.expires_at == pytest.approx(BASE_TIME + renewed_at + 3600.0)
    assert a.core.known_peer(2) == peer


def test_a_renewed_ticket_from_the_lobby_keeps_the_connection() -> None:
    net = SimNet(21)
    a, b = net.add(1), net.add(2, ttl=60.0)
    net.establish(a, b)
    net.run_for(30.0)
    # the lobby's PEER_INFO carries b's new ticket (NetworkClient: node.add_peer)
    a.core.add_peer(net.ticket(b.core.identity, 2, ttl=3600.0, issued_at=net.now), None, net.now)
    net.run_for(200.0)
    assert net.connected(a, b) and disconnects(a) == []


def test_a_ticket_for_another_character_does_not_extend_the_connection() -> None:
    net = SimNet(22)
    a, b = net.add(1), net.add(2, ttl=60.0)
    net.establish(a, b)
    # same key, another character: no renewal of this connection
    a.core.add_peer(net.ticket(b.core.identity, 9, ttl=3600.0, issued_at=net.now), None, net.now)
    net.run_until(lambda: bool(disconnects(a)), limit=120.0)
    assert disconnects(a)[0].code == CloseCode.TICKET_EXPIRED


@pytest.mark.parametrize("other", ["character", "key"])
def test_a_renewal_naming_someone_else_closes_the_connection(other: str) -> None:
    net = SimNet(23)
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    if other == "character":
        renew(net, b, ttl=3600.0, character_id=7)
    else:
        stranger = net.ticket(Identity.generate(), 2, ttl=3600.0, issued_at=net.now)
        auth = b.core.auth
        assert isinstance(auth, LobbyTicketAuth)
        auth.update_ticket(stranger)
    net.run_until(lambda: bool(disconnects(a)), limit=30.0)
    assert disconnects(a)[0].code == CloseCode.PEER_MISMATCH
    assert not net.connected(a, b)
