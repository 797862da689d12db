"""The lobby-side game calls of NetworkClient: trade, combat, world (requests ACKed or ERROR)."""

from __future__ import annotations

import pytest

from mesh import MessageType
from protocol.acks import (
    CombatActionAck,
    CombatStartAck,
    TradeAck,
    TradeOfferAck,
    TradeRequestAck,
)
from protocol.errors import ApiError, ErrorCode

from .conftest import ClientFactory, Inbox

__all__: list[str] = []


async def test_trade_gold_between_two_clients(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    requests, a_done, b_done = Inbox(), Inbox(), Inbox()
    a_win, b_win = Inbox(), Inbox()
    bob.register_handler(MessageType.TRADE_REQUEST, requests)
    alice.register_handler(MessageType.TRADE_COMPLETE, a_done)
    bob.register_handler(MessageType.TRADE_COMPLETE, b_done)
    alice.register_handler(MessageType.TRADE_UPDATE, a_win)
    bob.register_handler(MessageType.TRADE_UPDATE, b_win)
    a_id, b_id = int(alice.character["id"]), int(bob.character["id"])  # type: ignore[index]
    requested = await alice.request_trade("Bob")
    assert isinstance(requested, TradeRequestAck) and requested.target_id == b_id
    trade_id = requested["trade_id"]  # reads like the dict it was, too
    (req,) = await requests.wait_for(1)
    assert req.trade_id == trade_id
    assert await bob.accept_trade(trade_id) == TradeAck(trade_id=trade_id)
    first = await alice.update_trade(trade_id, gold=30)
    second = await bob.update_trade(trade_id, gold=10)
    assert isinstance(first, TradeOfferAck) and first.trade_id == trade_id
    assert second.version > first.version  # every changed offer bumps the window

    def offered(items: list[object], golds: dict[int, int], confirmed: set[int]) -> bool:
        if not items:
            return False
        window = items[-1].offers  # type: ignore[attr-defined]
        return {o.character_id: o.gold for o in window} == golds and {
            o.character_id for o in window if o.confirmed
        } == confirmed

    both = {a_id: 30, b_id: 10}
    await a_win.wait_until(lambda xs: offered(xs, both, set()))
    await b_win.wait_until(lambda xs: offered(xs, both, set()))
    confirmed = await alice.confirm_trade(trade_id)
    assert confirmed.trade_id == trade_id and confirmed.version >= second.version
    await b_win.wait_until(lambda xs: offered(xs, both, {a_id}))
    await bob.confirm_trade(trade_id)
    (a_end,) = await a_done.wait_for(1)
    (b_end,) = await b_done.wait_for(1)
    assert a_end.success and b_end.success, (a_end.reason, b_end.reason)
    gold = {c["name"]: c["gold"] for c in await alice.get_characters()}
    gold |= {c["name"]: c["gold"] for c in await bob.get_characters()}
    assert gold == {"Alice": 80, "Bob": 120}
    assert trade_id not in alice.trades and trade_id not in bob.trades


async def test_combat_through_the_lobby(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob", faction="Azure Syndicate")
    bob_id = int(bob.character["id"])  # type: ignore[index]
    with pytest.raises(ApiError) as info:
        await alice.start_combat(bob_id)  # Haven's Rest is a safe location
    assert info.value.code == ErrorCode.FORBIDDEN
    await alice.send_move(2, 1)
    await bob.send_move(2, 1)
    starts, hits = Inbox(), Inbox()
    bob.register_handler(MessageType.COMBAT_START, starts)
    bob.register_handler(MessageType.COMBAT_DAMAGE, hits)
    started = await alice.start_combat(bob_id)
    assert isinstance(started, CombatStartAck)
    combat_id = started.combat_id
    (start,) = await starts.wait_for(1)
    assert start.combat_id == combat_id
    acted = await alice.send_combat_action(combat_id, "attack", target_id=bob_id)
    assert isinstance(acted, CombatActionAck)
    assert acted["combat_id"] == acted.combat_id == combat_id and acted.round == 1
    (hit,) = await hits.wait_for(1)
    assert hit.target_id == bob_id and hit.amount >= 0
    with pytest.raises(ApiError) as info:
        await alice.send_combat_action("no-such-combat", "attack", target_id=bob_id)
    assert info.value.code == ErrorCode.NOT_IN_COMBAT


async def test_world_state_and_bad_move(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    world = await alice.get_world_state()
    assert world["current_reality"] and isinstance(world["shards"], list)
    with pytest.raises(ApiError) as info:
        await alice.send_move(12, 1)  # not a neighbour
    assert info.value.code == ErrorCode.INVALID_MOVE
