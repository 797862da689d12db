"""Tests of the trade state machine and the one-trade-per-character book."""

from __future__ import annotations

import json

import pytest

from lobby.game.trade import (
    MAX_ITEMS_PER_OFFER,
    Offer,
    Trade,
    TradeBook,
    TradeStatus,
    Transfer,
    unique_item_ids,
)
from lobby.game.world import RulesDef
from protocol.errors import ErrorCode, GameRuleError
from tests.lobby.game.refusals import refused

A, B, C = 1, 2, 3
TTL = 30.0


@pytest.fixture
def rules() -> RulesDef:
    return RulesDef(trade_request_ttl_seconds=TTL)


def _open(rules: RulesDef) -> Trade:
    trade = Trade.request("t1", initiator_id=A, partner_id=B, now=0.0, rules=rules)
    trade.accept(B, now=1.0)
    return trade


def _status(trade: Trade) -> TradeStatus:
    return trade.status


def _code(exc: pytest.ExceptionInfo[GameRuleError]) -> ErrorCode:
    return exc.value.code


def test_happy_path(rules: RulesDef) -> None:
    trade = Trade.request("t1", initiator_id=A, partner_id=B, now=0.0, rules=rules)
    assert trade.snapshot()["status"] == "requested"
    assert trade.snapshot()["expires_at"] == TTL
    trade.accept(B, now=TTL - 1)
    assert _status(trade) is TradeStatus.OPEN
    assert trade.update_offer(A, items=[10, 11], gold=5)
    assert trade.update_offer(B, items=[20], gold=0)
    assert trade.confirm(A) is None
    exchange = trade.confirm(B, version=trade.version)
    assert exchange is not None
    assert _status(trade) is TradeStatus.COMMITTING
    assert exchange.trade_id == "t1" and exchange.version == 2
    assert exchange.transfers == (
        Transfer(A, B, ((10, 1), (11, 1)), 5),
        Transfer(B, A, ((20, 1),), 0),
    )
    assert exchange.transfers[0].item_ids == (10, 11)
    assert exchange.to_dict()["transfers"][0] == {
        "from_id": A,
        "to_id": B,
        "items": [{"item_id": 10, "quantity": 1}, {"item_id": 11, "quantity": 1}],
        "gold": 5,
    }
    trade.committed()
    assert _status(trade) is TradeStatus.COMPLETED and trade.finished
    snap = trade.snapshot()
    assert snap["status"] == "completed" and snap["offers"][str(A)] == {
        "items": [{"item_id": 10, "quantity": 1}, {"item_id": 11, "quantity": 1}],
        "gold": 5,
    }


def test_any_change_clears_both_confirmations(rules: RulesDef) -> None:
    trade = _open(rules)
    trade.update_offer(A, items=[10], gold=0)
    trade.update_offer(B, items=[], gold=50)
    trade.confirm(A)
    assert trade.confirmed == {A}
    assert trade.update_offer(B, items=[], gold=49)
    assert trade.confirmed == set()
    trade.confirm(A)
    assert trade.update_offer(A, items=[10, 12], gold=0)  # the confirmer's own change too
    assert trade.confirmed == set()
    assert _status(trade) is TradeStatus.OPEN
    assert trade.snapshot()["confirmed"] == []


def test_unchanged_offer_keeps_confirmations(rules: RulesDef) -> None:
    trade = _open(rules)
    trade.update_offer(A, items=[10, 11], gold=1)
    trade.confirm(B)
    version = trade.version
    assert not trade.update_offer(A, items=[11, 10], gold=1)
    assert trade.confirmed == {B} and trade.version == version


def test_stale_confirmation_refused(rules: RulesDef) -> None:
    trade = _open(rules)
    trade.update_offer(A, items=[10], gold=0)
    seen = trade.version
    trade.update_offer(B, items=[20], gold=0)
    with refused(ErrorCode.TRADE_INVALID):
        trade.confirm(A, version=seen)
    assert trade.confirmed == set()


def test_confirmation_against_a_window_that_changed_is_refused(rules: RulesDef) -> None:
    trade = _open(rules)
    trade.update_offer(A, items=[10], gold=5)
    shown = [(A, Offer.of([(10, 1)], 5)), (B, Offer())]
    trade.update_offer(B, items=[20], gold=0)
    for seen in (shown, [(A, Offer.of([(10, 1)], 5)), (C, Offer())], [(A, Offer())]):
        with refused(ErrorCode.TRADE_INVALID) as exc:
            trade.confirm(A, seen=seen)
        assert exc.value.details == {"version": trade.version}
    assert trade.confirmed == set()
    current = [(B, Offer.of([(20, 1)], 0)), (A, Offer.of([(10, 1)], 5))]
    assert trade.confirm(A, seen=current) is None and trade.confirmed == {A}
    assert trade.confirm(B, seen=current[:1]) is not None  # one side seen is checked alone


def test_unique_items_are_offered_once_with_quantity_one() -> None:
    assert unique_item_ids([(12, 1), (10, 1)]) == [12, 10]
    assert unique_item_ids([]) == []
    with pytest.raises(GameRuleError, match="quantity 1") as exc:
        unique_item_ids([(10, 1), (11, 2)])
    assert _code(exc) == ErrorCode.TRADE_INVALID and exc.value.details == {"item_id": 11}
    with pytest.raises(GameRuleError, match="twice") as exc:
        unique_item_ids([(10, 1), (10, 1)])
    assert _code(exc) == ErrorCode.TRADE_INVALID


def test_changes_offer_tells_whether_a_lookup_is_needed(rules: RulesDef) -> None:
    trade = _open(rules)
    assert not trade.changes_offer(A, items=[], gold=0)
    trade.update_offer(A, items=[11, 10], gold=3)
    assert not trade.changes_offer(A, items=[10, 11], gold=3)
    assert trade.changes_offer(A, items=[10], gold=3)
    assert trade.changes_offer(A, items=[10, 11], gold=4)
    assert trade.changes_offer(B, items=[10, 11], gold=3)
    with refused(ErrorCode.FORBIDDEN):
        trade.changes_offer(C, items=[], gold=0)


def test_nothing_offered_cannot_confirm(rules: RulesDef) -> None:
    trade = _open(rules)
    with refused(ErrorCode.TRADE_INVALID):
        trade.confirm(A)


def test_gift_is_allowed(rules: RulesDef) -> None:
    trade = _open(rules)
    trade.update_offer(A, items=[], gold=10)
    trade.confirm(A)
    exchange = trade.confirm(B)
    assert exchange is not None
    assert exchange.transfers[1] == Transfer(B, A, (), 0)


def test_request_refusals(rules: RulesDef) -> None:
    with refused(ErrorCode.TRADE_INVALID):
        Trade.request("t", initiator_id=A, partner_id=A, now=0.0, rules=rules)
    trade = Trade.request("t", initiator_id=A, partner_id=B, now=0.0, rules=rules)
    with refused(ErrorCode.TRADE_INVALID):
        trade.accept(A, now=1.0)  # only the partner answers
    with refused(ErrorCode.FORBIDDEN):
        trade.accept(C, now=1.0)
    with refused(ErrorCode.TRADE_INVALID):
        trade.update_offer(A, items=[1], gold=0)  # not open yet


def test_expired_request(rules: RulesDef) -> None:
    trade = Trade.request("t", initiator_id=A, partner_id=B, now=0.0, rules=rules)
    with pytest.raises(GameRuleError, match="expired") as exc:
        trade.accept(B, now=TTL)
    assert _code(exc) == ErrorCode.TRADE_INVALID
    assert _status(trade) is TradeStatus.CANCELLED and trade.cancel_reason == "expired"
    other = Trade.request("u", initiator_id=A, partner_id=B, now=0.0, rules=rules)
    assert not other.expire(TTL - 1)
    assert other.expire(TTL)
    assert not _open(rules).expire(1e9)  # an open trade does not expire


def test_decline(rules: RulesDef) -> None:
    trade = Trade.request("t", initiator_id=A, partner_id=B, now=0.0, rules=rules)
    trade.decline(B, now=1.0)
    assert _status(trade) is TradeStatus.DECLINED and trade.finished
    with refused(ErrorCode.TRADE_INVALID):
        trade.accept(B, now=1.0)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"items": [1, 1], "gold": 0}, ErrorCode.TRADE_INVALID),
        ({"items": [], "gold": -1}, ErrorCode.TRADE_INVALID),
        ({"items": [], "gold": True}, ErrorCode.TRADE_INVALID),
        ({"items": [], "gold": 1.5}, ErrorCode.TRADE_INVALID),
        ({"items": list(range(MAX_ITEMS_PER_OFFER + 1)), "gold": 0}, ErrorCode.TRADE_INVALID),
        ({"items": [20], "gold": 0}, ErrorCode.TRADE_INVALID),  # already in B's offer
        ({"items": [10, 99], "gold": 0, "owned_items": [10, 11]}, ErrorCode.ITEM_NOT_OWNED),
        ({"items": {10: 3}, "gold": 0, "owned_items": {10: 2}}, ErrorCode.ITEM_NOT_OWNED),
        ({"items": {10: 0}, "gold": 0}, ErrorCode.TRADE_INVALID),
        ({"items": {10: True}, "gold": 0}, ErrorCode.TRADE_INVALID),
        ({"items": {10: 2_000_000}, "gold": 0}, ErrorCode.TRADE_INVALID),
        ({"items": [], "gold": 101, "gold_available": 100}, ErrorCode.INSUFFICIENT_GOLD),
    ],
)
def test_offer_refusals(rules: RulesDef, kwargs: dict[str, object], code: ErrorCode) -> None:
    trade = _open(rules)
    trade.update_offer(B, items=[20], gold=0)
    trade.confirm(B)
    with pytest.raises(GameRuleError) as exc:
        trade.update_offer(A, **kwargs)  # type: ignore[arg-type]
    assert _code(exc) == code
    assert trade.offers[A] == Offer() and trade.confirmed == {B}


def test_trading_an_item_one_does_not_own(rules: RulesDef) -> None:
    trade = _open(rules)
    with refused(ErrorCode.ITEM_NOT_OWNED) as exc:
        trade.update_offer(A, items=[77], gold=0, owned_items={10}, gold_available=0)
    assert exc.value.details["item_ids"] == [77]
    assert trade.update_offer(A, items=[10], gold=0, owned_items={10}, gold_available=0)


def test_outsider_cannot_touch(rules: RulesDef) -> None:
    trade = _open(rules)
    for call in (
        lambda: trade.update_offer(C, items=[], gold=1),
        lambda: trade.confirm(C),
        lambda: trade.cancel(C),
        lambda: trade.other(C),
    ):
        with refused(ErrorCode.FORBIDDEN):
            call()


def test_cancel(rules: RulesDef) -> None:
    trade = _open(rules)
    trade.update_offer(A, items=[1], gold=0)
    trade.confirm(A)
    trade.cancel(B, reason="changed my mind")
    assert _status(trade) is TradeStatus.CANCELLED and trade.confirmed == set()
    assert trade.snapshot()["cancel_reason"] == "changed my mind"
    with pytest.raises(GameRuleError):
        trade.cancel(A)
    with pytest.raises(GameRuleError):
        trade.confirm(A)


def test_commit_failure_cancels(rules: RulesDef) -> None:
    trade = _open(rules)
    trade.update_offer(A, items=[1], gold=0)
    trade.confirm(A)
    trade.confirm(B)
    with pytest.raises(GameRuleError):
        trade.cancel(A)  # too late: the storage layer decides
    with pytest.raises(GameRuleError):
        trade.update_offer(A, items=[], gold=0)
    trade.failed("item 1 no longer owned")
    assert _status(trade) is TradeStatus.CANCELLED
    assert trade.cancel_reason == "item 1 no longer owned"
    with pytest.raises(GameRuleError):
        trade.committed()


# -- TradeBook ------------------------------------------------------------------------------


def test_book_one_trade_per_character(rules: RulesDef) -> None:
    book = TradeBook(rules)
    t1 = book.request(A, B, now=0.0)
    assert book.active_for(A) is t1 and book.active_for(B) is t1
    with refused(ErrorCode.TRADE_INVALID):
        book.request(C, B, now=0.0)
    with refused(ErrorCode.TRADE_INVALID):
        book.request(C, A, now=0.0, trade_id=t1.trade_id)
    t1.decline(B, now=1.0)
    t2 = book.request(C, B, now=2.0, trade_id="x")
    assert t2.trade_id == "x" and book.require("x", C) is t2
    with refused(ErrorCode.TRADE_INVALID):
        book.request(A, C, now=2.0, trade_id="y")
    with refused(ErrorCode.NOT_FOUND):
        book.require("x", A)
    with refused(ErrorCode.CONFLICT):
        book.request(A, 9, now=2.0, trade_id="x")


def test_book_disconnect_expire_prune(rules: RulesDef) -> None:
    book = TradeBook(rules)
    t1 = book.request(A, B, now=0.0)
    t1.accept(B, now=0.0)
    t2 = book.request(C, 4, now=0.0)
    assert book.cancel_for(B) is t1
    assert _status(t1) is TradeStatus.CANCELLED and t1.cancel_reason == "disconnected"
    assert book.cancel_for(B) is None
    assert book.expire(TTL) == [t2]
    assert book.get(t1.trade_id) is t1
    assert {t.trade_id for t in book.prune()} == {t1.trade_id, t2.trade_id}
    assert book.get(t1.trade_id) is None and book.active_for(A) is None


def test_book_leaves_committing_trade_alone(rules: RulesDef) -> None:
    book = TradeBook(rules)
    trade = book.request(A, B, now=0.0)
    trade.accept(B, now=0.0)
    trade.update_offer(A, items=[5], gold=0)
    trade.confirm(A)
    trade.confirm(B)
    assert book.cancel_for(A) is None
    assert _status(trade) is TradeStatus.COMMITTING
    trade.committed()
    assert book.active_for(A) is None


def test_stack_quantities(rules: RulesDef) -> None:
    trade = _open(rules)
    assert trade.update_offer(A, items={7: 5, 3: 1}, gold=0, owned_items={7: 5, 3: 9})
    assert trade.offers[A] == Offer(((3, 1), (7, 5)), 0)
    assert trade.offers[A].quantities() == {3: 1, 7: 5}
    assert not trade.update_offer(A, items={3: 1, 7: 5}, gold=0)  # same offer, other order
    trade.confirm(B)
    assert trade.update_offer(A, items={3: 1, 7: 4}, gold=0)  # a quantity change is a change
    assert trade.confirmed == set()
    assert trade.offered_items() == {3, 7}
    assert trade.snapshot()["offers"][str(A)]["items"][1] == {"item_id": 7, "quantity": 4}
    trade.confirm(A)
    exchange = trade.confirm(B)
    assert exchange is not None and exchange.transfers[0].items == ((3, 1), (7, 4))


def test_save_and_resume(rules: RulesDef) -> None:
    trade = _open(rules)
    trade.update_offer(A, items={7: 2}, gold=3)
    trade.confirm(A)
    again = Trade.from_dict(json.loads(json.dumps(trade.to_dict())))
    assert again == trade
    exchange = again.confirm(B)
    assert exchange is not None and exchange.transfers[0].items == ((7, 2),)
