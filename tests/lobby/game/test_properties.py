"""Property tests: random sequences of operations keep every rule's invariants."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lobby.game.combat import Combat, make_combatant
from lobby.game.party import PartyBook
from lobby.game.shards import ShardBoard
from lobby.game.trade import Offer, Trade, TradeStatus
from lobby.game.world import RulesDef, WorldDefinition, load_world
from protocol.errors import GameRuleError

WORLD: WorldDefinition = load_world()
PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHARS = st.integers(min_value=1, max_value=6)


def owner(character_id: int) -> int:
    """The account owning test character ``character_id`` (one account per character)."""
    return 1000 + character_id


party_ops = st.lists(
    st.tuples(
        st.sampled_from(["create", "invite", "accept", "decline", "leave", "kick", "disband"]),
        CHARS,
        CHARS,
        st.floats(min_value=0, max_value=30, allow_nan=False),
    ),
    max_size=60,
)


@PROFILE
@given(party_ops)
def test_party_invariants(ops: list[tuple[str, int, int, float]]) -> None:
    rules = RulesDef(party_size_limit=3, invite_ttl_seconds=20.0)
    book = PartyBook(rules)
    now = 0.0
    for op, a, b, dt in ops:
        now += dt
        try:
            if op == "create":
                book.create(a, f"c{a}", now=now)
            elif op == "invite":
                book.invite(a, b, account_id=owner(b), now=now)
            elif op in ("accept", "decline"):
                invites = book.invites_for(a, now)
                pid = invites[0].party_id if invites else "none"
                if op == "accept":
                    book.accept(a, f"c{a}", pid, account_id=owner(a), now=now)
                else:
                    book.decline(a, pid, now=now)
            elif op == "leave":
                book.leave(a, now=now)
            elif op == "kick":
                book.kick(a, b, now=now)
            else:
                book.disband(a, now=now)
        except GameRuleError:
            pass
        seen: set[int] = set()
        for party in book.parties():
            ids = party.member_ids()
            assert not party.disbanded and ids
            assert party.leader_id in ids
            assert len(ids) <= rules.party_size_limit
            assert not seen & set(ids)
            seen |= set(ids)
            for cid in ids:
                assert book.party_of(cid) is party
        for cid in range(1, 7):
            if cid not in seen:
                assert book.party_of(cid) is None


trade_ops = st.lists(
    st.tuples(
        st.sampled_from(["offer", "confirm", "cancel"]),
        st.sampled_from([1, 2]),
        st.frozensets(st.integers(min_value=1, max_value=6), max_size=3),
        st.integers(min_value=0, max_value=3),
    ),
    max_size=40,
)


@PROFILE
@given(trade_ops)
def test_trade_invariants(ops: list[tuple[str, int, frozenset[int], int]]) -> None:
    trade = Trade.request("t", initiator_id=1, partner_id=2, now=0.0, rules=RulesDef())
    trade.accept(2, now=0.0)
    confirmed_offers: dict[int, tuple[Offer, Offer]] = {}
    for op, actor, items, gold in ops:
        before = (trade.offers[1], trade.offers[2])
        try:
            if op == "offer":
                changed = trade.update_offer(actor, items=sorted(items), gold=gold)
                assert changed == ((trade.offers[1], trade.offers[2]) != before)
                if changed:
                    assert trade.confirmed == set()
                    confirmed_offers.clear()
            elif op == "confirm":
                exchange = trade.confirm(actor)
                confirmed_offers[actor] = (trade.offers[1], trade.offers[2])
                if exchange is not None:
                    # both confirmed exactly the offers being exchanged
                    assert set(confirmed_offers) == {1, 2}
                    assert confirmed_offers[1] == confirmed_offers[2] == before
                    assert exchange.transfers[0].item_ids == tuple(sorted(before[0].item_ids))
                    assert exchange.transfers[1].gold == before[1].gold
                    trade.committed()
            else:
                trade.cancel(actor)
        except GameRuleError:
            assert (trade.offers[1], trade.offers[2]) == before
        assert not (trade.offers[1].item_ids & trade.offers[2].item_ids)
        if trade.status is TradeStatus.OPEN:
            assert trade.confirmed <= {1, 2}
        if trade.finished:
            break


combat_ops = st.lists(
    st.tuples(
        st.sampled_from([10, 11, 12, 13]),
        st.sampled_from(["attack", "spell", "item", "flee", "defend"]),
        st.one_of(st.none(), st.sampled_from([10, 11, 12, 13])),
        st.sampled_from([None, "Fireball", "Mend", "Cleave", "Backstab", "Radiant Smite"]),
        st.sampled_from([None, 100, 101]),
        st.floats(min_value=0, max_value=5, allow_nan=False),
    ),
    max_size=80,
)


def _combat(seed: int) -> Combat:
    fighters = [
        make_combatant(
            WORLD,
            character_id=10,
            name="w",
            class_name="Warrior",
            level=2,
            side="a",
            items={100: 1, 101: 4},
        ),
        make_combatant(WORLD, character_id=11, name="c", class_name="Cleric", level=1, side="a"),
        make_combatant(
            WORLD,
            character_id=12,
            name="m",
            class_name="Mage",
            level=3,
            side="b",
            items={100: 2, 101: 4},
        ),
        make_combatant(WORLD, character_id=13, name="r", class_name="Rogue", level=1, side="b"),
    ]
    return Combat.start(WORLD, combat_id="p", seed=seed, participants=fighters, now=0.0)


@PROFILE
@given(st.integers(min_value=0, max_value=2**32), combat_ops)
def test_combat_invariants_and_replay(
    seed: int, ops: list[tuple[int, str, int | None, str | None, int | None, float]]
) -> None:
    runs = []
    for _ in range(2):
        combat = _combat(seed)
        log: list[object] = []
        now = 0.0
        for actor, action, target, ability, item, dt in ops:
            now += dt
            before = combat.snapshot()
            try:
                result = combat.act(
                    actor, action, now=now, target_id=target, ability_name=ability, item_id=item
                )
            except GameRuleError as exc:
                assert combat.snapshot() == before
                log.append(exc.code)
                continue
            log.append(result.events)
            for f in combat.participants():
                assert 0 <= f.health <= f.max_health
                assert 0 <= f.mana <= f.max_mana
            if result.ended:
                assert result.end is not None
                active_sides = {f.side for f in combat.participants() if f.active}
                assert len(active_sides) <= 1
                break
        runs.append((log, combat.snapshot()))
    assert runs[0] == runs[1]


@PROFILE
@given(
    st.lists(
        st.tuples(
            st.sampled_from([s.id for s in WORLD.shards]),
            st.sampled_from(sorted(WORLD.faction_names())),
            st.floats(min_value=0, max_value=400, allow_nan=False),
        ),
        max_size=40,
    )
)
def test_reality_shifts_only_on_crossing(ops: list[tuple[int, str, float]]) -> None:
    board = ShardBoard(WORLD)
    threshold = WORLD.rules.reality_shift_threshold
    now = 0.0
    for shard_id, faction, dt in ops:
        now += dt
        shard = WORLD.shard(shard_id)
        assert shard is not None
        before = board.counts()[faction]
        reality = board.reality
        try:
            out = board.capture(
                shard_id, character_id=1, faction=faction, location_id=shard.location_id, now=now
            )
        except GameRuleError:
            assert board.reality == reality
            continue
        assert (out.reality_shift is not None) == (before == threshold - 1)
        assert sum(board.counts().values()) <= len(WORLD.shards)
