"""The Discovery base: view, repeat suppression, listeners, bounded event iterators."""

from __future__ import annotations

import asyncio

import pytest

from mesh.discovery import DiscoveryEvent, ManualDiscovery, PeerFound, PeerLost
from protocol.errors import DiscoveryError


def peer(peer_id: str, name: str = "hero", port: int = 9000) -> PeerFound:
    return PeerFound(peer_id, name, (("127.0.0.1", port),), "1.0", source="manual")


async def test_view_and_events_without_repeats() -> None:
    seen: list[DiscoveryEvent] = []
    async with ManualDiscovery() as source:
        remove = source.add_listener(seen.append)
        source.announce(peer("a"))
        source.announce(peer("a"))  # nothing changed: no event
        source.announce(peer("a", port=9001))  # changed: found again
        source.withdraw("a")
        source.withdraw("a")  # unknown by now: no event
        remove()
        source.announce(peer("b"))
        assert set(source.peers) == {"b"}
    assert seen == [peer("a"), peer("a", port=9001), PeerLost("a", "manual")]


async def test_iterator_replays_then_follows_then_ends() -> None:
    source = ManualDiscovery()
    await source.start()
    source.announce(peer("a"))
    events = source.events()
    source.announce(peer("b"))
    source.withdraw("a")
    await source.close()
    got = await asyncio.wait_for(_collect(events), 5)
    assert got == [peer("a"), peer("b"), PeerLost("a", "manual")]
    assert await asyncio.wait_for(_collect(source.events()), 5) == []
    with pytest.raises(DiscoveryError):
        await source.start()


async def test_a_failing_listener_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[DiscoveryEvent] = []

    def broken(event: DiscoveryEvent) -> None:
        raise RuntimeError("listener bug")

    async with ManualDiscovery() as source:
        source.add_listener(broken)
        source.add_listener(seen.append)
        source.announce(peer("a"))
    assert seen == [peer("a")]
    assert "listener bug" in caplog.text


async def test_a_slow_consumer_loses_the_oldest_events_not_memory() -> None:
    async with ManualDiscovery() as source:
        events = source.events()
        for i in range(1500):
            source.announce(peer(f"p{i}"))
        first = await asyncio.wait_for(anext(events), 5)
        assert isinstance(first, PeerFound) and first.peer_id == "p476"


async def _collect(events):  # type: ignore[no-untyped-def]
    return [e async for e in events]
