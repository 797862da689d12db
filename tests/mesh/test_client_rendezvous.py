"""The client's rendezvous records: paired peers' candidates, our own, the ICE cache."""

from __future__ import annotations

import pytest

from mesh.client.rendezvous import CandidateBook, IceCache, LocalCandidates
from protocol.candidates import Candidate, CandidateKind, candidate_priority
from protocol.errors import ConfigError
from protocol.messages.peer import PeerInfoMessage
from protocol.rest import IceServersOut


def info(**fields: object) -> PeerInfoMessage:
    base: dict[str, object] = {"character_id": 5, "character_name": "Ayla", "ticket": "st1.a.b.c"}
    return PeerInfoMessage.model_validate({**base, **fields})


def relay(port: int) -> Candidate:
    kind = CandidateKind.RELAY
    return Candidate(kind=kind, address="192.0.2.50", port=port, priority=candidate_priority(kind))


def test_the_book_keeps_paired_entries_and_drops_the_rest() -> None:
    book = CandidateBook()
    assert book.update(info(endpoints=["192.0.2.1:4000"]), now=1.0) is None  # not paired
    kept = book.update(
        info(candidates=[relay(5000)], pairing="party", pairing_id="pairing-1"), now=2.0
    )
    assert kept is not None and kept.of_kind(CandidateKind.RELAY) == (relay(5000),)
    assert book.get(5) is kept and dict(book.peers) == {5: kept}
    # a lobby of protocol 1.0 sends endpoints only: read as host candidates, in order
    old = book.update(info(endpoints=["192.0.2.1:1", "peer.example:2"], pairing="location"), now=3)
    assert old is not None and [c.endpoint for c in old.candidates] == ["192.0.2.1:1"]
    # unpaired now (identity only), or offline: forgotten
    book.update(info(), now=4.0)
    assert book.get(5) is None
    book.update(info(candidates=[relay(5000)], pairing="whisper"), now=5.0)
    book.update(info(online=False), now=6.0)
    assert book.get(5) is None


def test_local_candidates_host_from_endpoints_and_learned_ones() -> None:
    local = LocalCandidates()
    assert local.set_host(["192.0.2.9:7000", "[2001:db8::9]:7000"]) == [
        "192.0.2.9:7000",
        "[2001:db8::9]:7000",
    ]
    local.learn([relay(9000)])
    assert [c.kind.value for c in local.all] == ["host", "host", "relay"]
    assert local.all[0].priority > local.all[1].priority  # listed order is preference
    with pytest.raises(ConfigError, match="peer.example"):
        local.set_host(["peer.example:7000"])
    with pytest.raises(ConfigError, match="at most"):
        local.learn([relay(9000 + i) for i in range(16)])


async def test_the_ice_cache_asks_again_near_expiry() -> None:
    now = [1000.0]
    answers: list[IceServersOut] = []

    async def fetch() -> IceServersOut:
        answer = IceServersOut(stun_urls=["stun:x:1"], expires_at=int(now[0]) + 100, ttl=100)
        answers.append(answer)
        return answer

    cache = IceCache(fetch, lambda: now[0])
    first = await cache.get()
    now[0] += 79
    assert await cache.get() is first
    now[0] += 1  # 80 % of the lifetime
    assert await cache.get() is not first and len(answers) == 2
