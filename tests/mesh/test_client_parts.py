"""The pure parts of NetworkClient alone: ClientState, HandlerTable, the request builders.

No lobby, no socket: messages are fed in and the view is read back through
public methods. The lobby-facing parts (LobbySession, PeerSide) are tested
alone against a real lobby in ``tests/e2e/test_client_parts.py``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from mesh.client import BackgroundTasks, ClientState, HandlerTable, Moved
from mesh.client.requests import (
    combat_start,
    party_invite,
    trade_confirmation,
    trade_items,
    trade_request,
)
from protocol.errors import ErrorCode, NotConnectedError
from protocol.messages.base import MessageType
from protocol.messages.characters import CharacterUpdateMessage
from protocol.messages.chat import ChatMessage
from protocol.messages.location import LocationUpdateMessage, PlayerJoinedAreaMessage
from protocol.messages.party import PartyDisbandMessage, PartyMember, PartyUpdateMessage
from protocol.messages.trade import (
    TradeCompleteMessage,
    TradeItem,
    TradeOffer,
    TradeUpdateMessage,
)
from protocol.messages.world import WorldStateMessage
from protocol.rest import CharacterOut

__all__: list[str] = []


def character(cid: int = 1, location_id: int = 1, name: str = "Aria") -> CharacterOut:
    return CharacterOut(
        id=cid,
        name=name,
        faction="Crimson Covenant",
        character_class="Mage",
        level=1,
        experience=0,
        health=100,
        max_health=100,
        mana=50,
        max_mana=50,
        location_id=location_id,
        gold=10,
        created_at=0.0,
    )


def joined(cid: int, name: str, location_id: int = 1) -> PlayerJoinedAreaMessage:
    return PlayerJoinedAreaMessage(character_id=cid, character_name=name, location_id=location_id)


def party(*members: tuple[int, str], party_id: str = "p1") -> PartyUpdateMessage:
    return PartyUpdateMessage(
        party_id=party_id,
        members=[PartyMember(character_id=c, character_name=n) for c, n in members],
    )


# -- ClientState --------------------------------------------------------------------------------


def test_no_character_error_says_what_to_call() -> None:
    state = ClientState()
    with pytest.raises(NotConnectedError) as unlisted:
        state.require_character()
    assert unlisted.value.code == ErrorCode.NO_CHARACTER
    assert "select_character(id)" in str(unlisted.value)
    state.characters_listed([])  # a fresh account
    with pytest.raises(NotConnectedError) as fresh:
        state.require_character()
    assert "create_character(name, faction, character_class)" in str(fresh.value)
    state.character_created()
    with pytest.raises(NotConnectedError) as created:
        state.require_character()
    assert "create_character" not in str(created.value)
    state.select(character())
    assert state.require_character().name == "Aria"


def test_party_world_and_trades_follow_messages() -> None:
    state = ClientState()
    state.select(character())
    state.observe(party((1, "Aria"), (2, "Borin")), now=1.0)
    assert state.party is not None and state.party_member_ids() == {1, 2}
    state.observe(party((2, "Borin"), (3, "Cato")), now=2.0)  # a party without us
    assert state.party is None and state.party_member_ids() == set()
    state.observe(party((1, "Aria")), now=3.0)
    state.observe(PartyDisbandMessage(party_id="other"), now=4.0)
    assert state.party is not None
    state.observe(PartyDisbandMessage(party_id="p1"), now=5.0)
    assert state.party is None

    state.observe(WorldStateMessage(current_reality="Umbral"), now=6.0)
    assert state.world_state is not None and state.world_state.current_reality == "Umbral"

    state.observe(TradeUpdateMessage(trade_id="t1"), now=7.0)
    assert list(state.trades) == ["t1"]
    with pytest.raises(TypeError):
        state.trades["t2"] = TradeUpdateMessage(trade_id="t2")  # type: ignore[index]
    state.observe(TradeCompleteMessage(trade_id="t1"), now=8.0)
    assert dict(state.trades) == {}


def test_own_updates_change_the_character_and_moves_forget_all_but_the_party() -> None:
    state = ClientState()
    state.select(character(location_id=1))
    state.observe(party((1, "Aria"), (2, "Borin")), now=1.0)
    state.observe(joined(2, "Borin"), now=1.0)
    state.observe(joined(3, "Cato"), now=1.0)
    assert [p.character_name for p in state.nearby.players()] == ["Borin", "Cato"]

    update = CharacterUpdateMessage(
        character_id=1, character_name="Aria", health=70, max_health=120, level=2, gold=15
    )
    assert state.observe(update, now=2.0) is None  # no location in it: no move
    own = state.character
    assert own is not None
    assert (own.health, own.max_health, own.level, own.gold, own.name) == (70, 120, 2, 15, "Aria")

    moved = state.observe(LocationUpdateMessage(character_id=1, location_id=2), now=3.0)
    assert moved == Moved(location_id=2, forgotten=(3,))  # Borin is in our party
    assert state.character is not None and state.character.location_id == 2
    assert state.nearby.players() == []
    assert state.moved_to(2) is None  # already there
    other = state.observe(LocationUpdateMessage(character_id=3, location_id=2), now=4.0)
    assert other is None and [p.character_id for p in state.nearby.players()] == [3]


def test_switching_characters_and_reset_forget_the_old_view() -> None:
    state = ClientState()
    state.select(character(cid=1))
    state.observe(party((1, "Aria")), now=1.0)
    state.observe(joined(5, "Eve"), now=1.0)
    state.select(character(cid=1))  # the same character again keeps its view
    assert state.party is not None and len(state.nearby.players()) == 1
    state.select(character(cid=2, name="Borin"))
    assert state.party is None and state.nearby.players() == []
    state.observe(TradeUpdateMessage(trade_id="t1"), now=2.0)
    state.reset()
    assert state.character is None and dict(state.trades) == {}
    assert state.nearby.own_character_id is None


# -- HandlerTable -------------------------------------------------------------------------------


async def test_handlers_sync_and_async_in_order_failures_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks()
    table = HandlerTable(tasks)
    calls: list[str] = []
    done = asyncio.Event()

    def sync(msg: ChatMessage) -> None:
        calls.append(f"sync:{msg.content}")

    def broken(msg: ChatMessage) -> None:
        raise RuntimeError("handler bug")

    async def later(msg: ChatMessage) -> None:
        await asyncio.sleep(0)
        calls.append(f"async:{msg.content}")
        done.set()

    table.add(MessageType.CHAT, sync)
    table.add("chat", broken)
    table.add(MessageType.CHAT, later)
    assert table.handlers("chat") == (sync, broken, later)
    with caplog.at_level(logging.ERROR, logger="mesh.client"):
        table.dispatch(ChatMessage(content="hi"))
        await asyncio.wait_for(done.wait(), 5)
    assert calls == ["sync:hi", "async:hi"]
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)

    table.remove(MessageType.CHAT, sync)
    table.remove(MessageType.CHAT, sync)  # twice: no error
    assert table.handlers(MessageType.CHAT) == (broken, later)
    assert table.handlers(MessageType.WHISPER) == ()


async def test_background_tasks_are_cancelled_together() -> None:
    tasks = BackgroundTasks()
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def forever() -> None:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    tasks.spawn(forever())
    tasks.spawn(forever())
    await asyncio.wait_for(started.wait(), 5)
    assert len(tasks) == 2
    await tasks.cancel_all()
    assert cancelled == [True, True] and len(tasks) == 0
    await tasks.cancel_all()  # idempotent


# -- requests -----------------------------------------------------------------------------------


def test_request_builders() -> None:
    assert trade_items([4, 5]) == [TradeItem(item_id=4), TradeItem(item_id=5)]
    assert trade_items({4: 2}) == [TradeItem(item_id=4, quantity=2)]
    assert trade_items([TradeItem(item_id=9, quantity=3)]) == [TradeItem(item_id=9, quantity=3)]
    assert (party_invite(7, None).target_id, party_invite("Bo", "p1").target_name) == (7, "Bo")
    assert party_invite("Bo", "p1").party_id == "p1"
    assert trade_request("Bo").target_name == "Bo" and trade_request(3).target_id == 3
    assert [c.id for c in combat_start([3, 4]).participants] == [3, 4]

    window = TradeUpdateMessage(
        trade_id="t1",
        offers=[
            TradeOffer(character_id=1, items=[TradeItem(item_id=4)], gold=5),
            TradeOffer(character_id=2, gold=9),
        ],
    )
    kept = trade_confirmation("t1", 1, window)  # our offer as the window shows it
    assert (kept.items, kept.gold, kept.confirmed) == ([TradeItem(item_id=4)], 5, True)
    assert kept.offers == window.offers
    changed = trade_confirmation("t1", 1, window, items={4: 2}, gold=0)
    assert (changed.items, changed.gold) == ([TradeItem(item_id=4, quantity=2)], 0)
    blind = trade_confirmation("t1", 1, None)
    assert (blind.items, blind.gold, blind.offers) == ([], 0, [])
