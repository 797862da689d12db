"""The hub's resume from a cursor: the audience filter and the seam between replay and live.

Unit tests of :class:`lobby.hub.Hub` with a sequenced broker that is a list in memory
(the cluster's Redis stream in miniature: entries get increasing cursors, are delivered
when the test pumps them, and are replayed from the list), and connections that record
what they are sent. The same hub code runs against the real Redis stream in
``tests/lobby/cluster/test_cluster_resume.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from lobby.broker import Audience, Push, Replayed
from lobby.connection import Connection
from lobby.hub import Hub
from lobby.presence import CharacterInfo
from lobby.sessions import Session
from protocol.messages import ChatMessage
from protocol.resume import CursorKey, unstamp
from tests.lobby.support import FakeClock, fast_settings


class Stream:
    """A sequenced broker's stream: ``forward`` appends, :meth:`pump` delivers to hubs."""

    def __init__(self) -> None:
        self.entries: list[tuple[CursorKey, Audience, str]] = []
        self.delivered = 0
        self.hubs: list[Hub] = []
        self.trimmed_before: CursorKey = (0, 0)

    def append(self, audience: Audience, text: str) -> None:
        self.entries.append(((7, len(self.entries) + 1), audience, text))

    def pump(self) -> None:
        """Every hub reads what it has not read yet (as each process's reader does)."""
        for key, audience, text in self.entries[self.delivered :]:
            for hub in self.hubs:
                hub.deliver_push(audience, Push(text, f"{key[0]}-{key[1]}", key))
        self.delivered = len(self.entries)


@dataclass
class StreamBroker:
    """One process's view of the :class:`Stream` (only what the hub's resume uses)."""

    stream: Stream
    gate: asyncio.Event | None = None
    """When set, :meth:`replay` reads the stream only once the gate opens."""
    reading: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a replay starts."""
    distributed = True
    sequenced = True
    players_elsewhere = 0

    def forward(self, audience: Audience, text: str, *, here: bool = False) -> int:
        self.stream.append(audience, text)
        return 0

    async def replay(self, after: CursorKey) -> Replayed:
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()
        kept = [(k, a, t) for k, a, t in self.stream.entries if k >= self.stream.trimmed_before]
        complete = after == (0, 0) or any(k == after for k, _, _ in kept)
        return Replayed(
            [(a, Push(t, f"{k[0]}-{k[1]}", k)) for k, a, t in kept if k > after], complete
        )

    def online_elsewhere(self, character_id: int) -> bool:
        return False

    def moved(self, presence: Any) -> None:
        del presence


@dataclass
class Client:
    """What a connection was sent, as the client reads it (cursor split off)."""

    session: Session
    presence: Any = None
    deliberate_leave: bool = False
    texts: list[str] = field(default_factory=list)

    def send_text(self, text: str) -> bool:
        self.texts.append(text)
        return True

    def close(self, code: int, reason: str) -> None:
        del code, reason

    def describe(self) -> str:
        return self.session.describe()

    def received(self) -> list[tuple[str | None, dict[str, Any]]]:
        """(cursor, message) of everything sent, in order."""
        out = []
        for text in self.texts:
            split = unstamp(text)
            out.append((split.cursor, {**json.loads(split.text), "replay": split.replay}))
        return out

    def chats(self) -> list[str]:
        return [m["content"] for _, m in self.received() if m["type"] == "chat"]

    def notice(self) -> str | None:
        replays = [m["replay"] for _, m in self.received() if m["type"] == "heartbeat"]
        assert len(replays) == 1, replays
        return replays[0]


def session(sid: int, account: int) -> Session:
    return Session(sid, account, f"user{sid}", False, 0.0, 0.0, 1e12, None, None, f"hash{sid}")


ME = CharacterInfo(id=10, name="Ann", faction="Verdant Pact", location_id=3)


@pytest.fixture
async def hubs(tmp_path: Path) -> AsyncIterator[tuple[Stream, Hub, Hub]]:
    """Two processes' hubs on one stream."""
    stream = Stream()
    settings = fast_settings(tmp_path, reconnect_grace=30.0)
    clock = FakeClock(1_800_000_000.0)
    first, second = (Hub(settings, clock, broker=cast(Any, StreamBroker(stream))) for _ in range(2))
    first.announce_presence = second.announce_presence = False
    stream.hubs = [first, second]
    yield stream, first, second


def chat(content: str) -> ChatMessage:
    return ChatMessage(sender_id=99, sender_name="Bob", content=content)


async def connect(hub: Hub, *, after: CursorKey | None = None) -> Client:
    client = Client(session(1, 5))
    await hub.attach(cast(Connection, client), ME, stamps=True, after=after)
    return client


async def test_a_resume_gets_exactly_the_pushes_of_its_audiences_after_its_cursor(
    hubs: tuple[Stream, Hub, Hub],
) -> None:
    stream, first, second = hubs
    before = await connect(first)
    first.broadcast(chat("seen before"))
    stream.pump()
    cursor, _ = before.received()[-1]
    assert cursor is not None
    # it drops; meanwhile pushes for every kind of audience, some of them its own
    first.presence(1).conn = None  # type: ignore[union-attr]
    audiences = {
        "everyone": Audience.everyone(),
        "my faction": Audience.faction("Verdant Pact"),
        "my location": Audience.location(3),
        "me": Audience.character(10),
        "my session": Audience.session(1),
        "my account": Audience.account(5),
        "other faction": Audience.faction("Azure Syndicate"),
        "other location": Audience.location(4),
        "other character": Audience.character(11),
        "other session": Audience.session(2),
        "other account": Audience.account(6),
        "everyone but me": Audience.everyone(exclude_session=1),
        "here but me": Audience.location(3, exclude_character=10),
    }
    for name, audience in audiences.items():
        first.broadcast(chat(name), where=audience)
    stream.pump()

    # it resumes on the other process with the cursor of the last push it saw
    back = await connect(second, after=tuple(int(x) for x in cursor.split("-")))  # type: ignore[arg-type]
    assert back.chats() == [
        "everyone",
        "my faction",
        "my location",
        "me",
        "my session",
        "my account",
    ]
    assert back.notice() == "complete"
    cursors = [c for c, m in back.received() if m["type"] == "chat"]
    assert all(c is not None for c in cursors) and cursors == sorted(cursors, key=_key)


async def test_pushes_that_come_during_the_replay_follow_it_without_gap_or_duplicate(
    hubs: tuple[Stream, Hub, Hub],
) -> None:
    stream, first, second = hubs
    gate = asyncio.Event()
    broker = cast(StreamBroker, second.broker)
    broker.gate = gate
    for n in range(3):
        first.broadcast(chat(f"missed {n}"))
    stream.pump()
    resuming = asyncio.create_task(connect(second, after=(0, 0)))
    await asyncio.wait_for(broker.reading.wait(), 10)
    # live pushes reach the new presence while its replay is still reading the stream
    second.broadcast(chat("during 0"))
    stream.pump()
    second.broadcast(chat("during 1"))
    gate.set()  # the replay reads the stream now: it has "during 1" too, not yet pumped
    back = await asyncio.wait_for(resuming, 10)
    stream.pump()  # ... which then arrives live as well
    second.broadcast(chat("after"))
    stream.pump()
    assert back.chats() == ["missed 0", "missed 1", "missed 2", "during 0", "during 1", "after"]
    assert back.notice() == "complete"


async def test_a_cursor_older_than_the_stream_is_told_a_gap(
    hubs: tuple[Stream, Hub, Hub],
) -> None:
    stream, first, second = hubs
    for n in range(4):
        first.broadcast(chat(f"old {n}"))
    stream.pump()
    stream.trimmed_before = (7, 3)  # entries 1 and 2 are gone
    back = await connect(second, after=(7, 1))
    assert back.chats() == ["old 2", "old 3"]  # what is kept still comes
    assert back.notice() == "gap"


async def test_a_hand_over_adds_only_what_the_new_process_did_not_deliver(
    hubs: tuple[Stream, Hub, Hub],
) -> None:
    stream, first, second = hubs
    client = await connect(first)
    first.presence(1).conn = None  # type: ignore[union-attr]
    first.presence(1).disconnected_at = 0.0  # type: ignore[union-attr]
    first.broadcast(chat("queued on the first"))
    stream.pump()
    # a client without a cursor lands on the second process, which delivers live from then
    plain = Client(session(1, 5))
    await second.attach(cast(Connection, plain), ME)
    second.broadcast(chat("live on the second"))
    stream.pump()
    for push in first.hand_over(1):  # both were queued on the first
        second.handed_over(1, push)
    assert [json.loads(t)["content"] for t in plain.texts] == [
        "live on the second",
        "queued on the first",
    ]
    assert client.chats() == []


def _key(cursor: str | None) -> tuple[int, int]:
    assert cursor is not None
    major, _, minor = cursor.partition("-")
    return int(major), int(minor)
