"""Movement rates follow interest: the policy alone, then a whole area in virtual time."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest

from mesh.core import MeshConfig
from mesh.datagrams import (
    INTEREST_REUSE_TICKS,
    TICK_EARLY,
    TICK_SLACK,
    MovementInbox,
    pair_salt,
    tick_divisors,
)
from protocol.messages.location import PositionUpdateMessage, Vec3

from .sim import SimNet, SimNode

POLICY = {"full_rate_peers": 2, "rate_band": 10.0, "max_tick_divisor": 4}


def _peers(distances: dict[str, float | None]) -> dict[str, tuple[tuple[float, ...] | None, int]]:
    return {
        pid: (None if d is None else (d, 0.0, 0.0), pair_salt(1, i + 2))
        for i, (pid, d) in enumerate(distances.items())
    }


def test_nearest_peers_full_rate_others_by_distance_band() -> None:
    peers = _peers({"a": 1.0, "b": 3.0, "c": 2.0, "d": 5.0, "e": 15.0, "f": 25.0, "g": 900.0})
    got = tick_divisors((0.0, 0.0, 0.0), peers, **POLICY)  # type: ignore[arg-type]
    # a and c are the two nearest; d in band 0 -> 2; b is in band 0 too; e band 1 -> 3;
    # f band 2 -> 4; g far beyond -> capped at 4
    assert got == {"a": 1, "c": 1, "b": 2, "d": 2, "e": 3, "f": 4, "g": 4}


def test_policy_is_deterministic_and_order_free() -> None:
    distances = {f"p{i}": float(i % 3) for i in range(12)}  # many ties
    peers = _peers(distances)
    first = tick_divisors((0.0, 0.0, 0.0), peers, **POLICY)  # type: ignore[arg-type]
    for perm in itertools.islice(itertools.permutations(peers), 0, 50, 7):
        again = tick_divisors((0.0, 0.0, 0.0), {p: peers[p] for p in perm}, **POLICY)  # type: ignore[arg-type]
        assert again == first
    assert sorted(first.values()).count(1) == 2


def test_unknown_positions_count_as_near_and_small_areas_get_full_rate() -> None:
    peers = _peers({"a": None, "b": 40.0, "c": 40.0})
    got = tick_divisors((0.0, 0.0, 0.0), peers, **POLICY)  # type: ignore[arg-type]
    assert got["a"] == 1 and sorted(got.values()) == [1, 1, 4]
    assert set(tick_divisors(None, peers, **POLICY).values()) == {1}  # type: ignore[arg-type]
    two = {k: v for k, v in peers.items() if k != "a"}
    assert set(tick_divisors((0.0, 0.0, 0.0), two, **POLICY).values()) == {1}  # type: ignore[arg-type]


def test_pair_salt_is_symmetric_and_spread() -> None:
    assert pair_salt(3, 17) == pair_salt(17, 3)
    assert len({pair_salt(1, b) % 4 for b in range(2, 40)}) == 4


def test_inbox_keeps_newest_position_per_sender() -> None:
    inbox = MovementInbox()
    for seq, x in ((1, 1.0), (3, 3.0), (2, 2.0)):
        inbox.accept(
            "p",
            PositionUpdateMessage(character_id=7, location_id=1, position=Vec3(x=x), seq=seq),
            0.0,
        )
    assert inbox.positions["p"] == (3.0, 0.0, 0.0)
    inbox.forget("p")
    assert "p" not in inbox.positions


def _update(node: SimNode, seq: int, x: float) -> PositionUpdateMessage:
    return PositionUpdateMessage(
        character_id=node.character_id, location_id=1, position=Vec3(x=x), seq=seq
    )


def _area(seed: int) -> tuple[SimNet, SimNode, list[SimNode], dict[int, float]]:
    """A mover and 6 watchers at known distances, all in location 1."""
    # path probes (a PING on a link quiet for path_probe_interval) kept out of the timers
    # these tests read: they are about movement ticks
    config = lambda: MeshConfig(  # noqa: E731
        tick_interval=0.05,
        full_rate_peers=2,
        rate_band=10.0,
        max_tick_divisor=4,
        path_probe_interval=60.0,
    )
    net = SimNet(seed, delay=(0.002, 0.004), config=config)
    mover = net.add(1)
    where = {2: 1.0, 3: 2.0, 4: 5.0, 5: 8.0, 6: 15.0, 7: 35.0}
    watchers = [net.add(cid) for cid in where]
    for w in watchers:
        net.establish(w, mover)
        # each watcher tells the mover where it stands
        w.core.queue_position(_update(w, 1, where[w.character_id]), net.now)
        net.flush(w)
    net.run_for(1.0)
    return net, mover, watchers, where


@pytest.mark.parametrize("seed", range(3))
def test_rates_follow_distance_and_the_last_position_reaches_everyone(seed: int) -> None:
    net, mover, watchers, _ = _area(seed)
    ticks = 120
    for i in range(ticks):
        mover.core.queue_position(_update(mover, i + 1, 0.0), net.now)
        net.flush(mover)
        net.run_for(0.05)
    got = {w.character_id: len(w.positions()) for w in watchers}
    # two nearest (2, 3): every tick; 4, 5 in band 0: every 2nd; 6 in band 1: every 3rd;
    # 7 beyond: every 4th (give or take the tick the phase starts on)
    assert got[2] == ticks and got[3] == ticks
    for cid, divisor in ((4, 2), (5, 2), (6, 3), (7, 4)):
        assert ticks // divisor - 1 <= got[cid] <= ticks // divisor + 2, (cid, got)
    # the mover stops: owed watchers still get its very last update, and newest wins
    net.run_for(1.0)
    for w in watchers:
        seqs = [e.update.seq for e in w.positions()]
        assert seqs[-1] == ticks and seqs == sorted(seqs)


def test_datagrams_per_tick_fall_with_interest() -> None:
    def sent(full: int) -> int:
        config = lambda: MeshConfig(  # noqa: E731
            tick_interval=0.05, full_rate_peers=full, rate_band=10.0, max_tick_divisor=4
        )
        net = SimNet(5, delay=(0.002, 0.004), config=config)
        mover = net.add(1)
        watchers = [net.add(cid) for cid in range(2, 10)]
        for w in watchers:
            net.establish(w, mover)
        net.run_for(1.0)
        for i in range(40):
            mover.core.queue_position(_update(mover, i + 1, 0.0), net.now)
            net.flush(mover)
            net.run_for(0.05)
        return sum(len(w.positions()) for w in watchers)

    everyone = sent(full=8)
    interest = sent(full=2)
    assert everyone == 8 * 40
    # 2 peers at every tick, 6 (all at distance 0, band 0) at every 2nd
    assert 2 * 40 + 6 * 20 - 6 <= interest <= 2 * 40 + 6 * 20 + 6


def test_a_catch_up_tick_never_holds_back_the_next_update() -> None:
    net, mover, _, _ = _area(9)
    core = mover.core
    core.queue_position(_update(mover, 1, 0.0), net.now)
    start = net.now
    core.handle_timer(start)  # the tick: some watchers skipped, so a catch-up is planned
    net.flush(mover)
    assert core.movement_info().owed
    assert core.get_timer() == pytest.approx(start + 0.1)  # two ticks later
    net.now = start + 0.05
    core.queue_position(_update(mover, 2, 0.0), net.now)
    assert core.get_timer() == pytest.approx(start + 0.05)  # the update goes on its own tick


@pytest.mark.parametrize("seed", range(2))
def test_a_far_peer_waits_intervals_not_ticks_when_ticks_run_late(seed: int) -> None:
    """Positions queued every 2nd tick interval (as from a loop too busy to tick on time):
    the peer on every 4th tick still gets one at least every 4.5 intervals, rounded up to
    the next tick that runs, instead of every 4th tick run (8 intervals)."""
    net, mover, watchers, _ = _area(seed)
    far = next(w for w in watchers if w.character_id == 7)  # beyond two bands: every 4th
    arrivals: list[float] = []
    for i in range(60):
        mover.core.queue_position(_update(mover, i + 2, 0.0), net.now)
        net.flush(mover)
        for _ in range(2):  # two tick intervals pass before the next position is queued
            net.run_for(0.05)
            arrivals.extend(net.now for _ in far.positions()[len(arrivals) :])
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 60 * 2 // 6 and max(gaps) <= 0.3 + 0.01, gaps
    near = next(w for w in watchers if w.character_id == 2)  # every tick that runs
    assert len(near.positions()) >= 60


@pytest.mark.parametrize("seed", range(2))
def test_acks_to_a_far_peer_ride_on_its_datagrams(seed: int) -> None:
    """A peer on every 4th tick acknowledges with the datagram it gets then, not with an
    ACK-only packet for the updates it keeps receiving in between."""
    net, mover, watchers, _ = _area(seed)
    far = next(w for w in watchers if w.character_id == 7)  # beyond two bands: every 4th
    packets: dict[tuple[str, int], int] = {}
    flush = mover.core.datagrams_to_send

    def counting(now: float) -> list[tuple[bytes, tuple[str, int]]]:
        out = flush(now)
        for _data, dst in out:
            packets[dst] = packets.get(dst, 0) + 1
        return out

    mover.core.datagrams_to_send = counting  # type: ignore[method-assign]
    ticks = 120
    for i in range(ticks):
        mover.core.queue_position(_update(mover, i + 2, 0.0), net.now)
        far.core.queue_position(_update(far, i + 2, 35.0), net.now)
        net.flush(mover)
        net.flush(far)
        net.run_for(0.05)
    received = len(far.positions())
    assert ticks // 4 - 1 <= received <= ticks // 4 + 2
    # one packet per datagram the far peer got (and a keepalive or two): no ACK-only ones
    assert packets[far.addr] <= received + 3, (packets[far.addr], received)


def test_queue_position_says_when_its_tick_is_due() -> None:
    """The driver runs a due tick before its flush from this answer alone (no full timer)."""
    net, mover, _, _ = _area(3)
    core = mover.core
    start = net.now
    assert core.queue_position(_update(mover, 1, 0.0), start) == start  # no tick yet: at once
    core.handle_timer(start)
    net.flush(mover)
    assert core.movement_info().next_tick is not None  # watchers skipped: a catch-up planned
    soon = start + 0.01
    # more than a quarter interval before the next slot: the update waits until then
    early = start + 0.05 * (1 - TICK_SLACK) - TICK_EARLY * 0.05
    assert core.queue_position(_update(mover, 2, 0.0), soon) == pytest.approx(early)
    assert core.get_timer() == pytest.approx(early)


def test_tick_movement_runs_the_due_tick_alone() -> None:
    """What a node runs right after queueing a due position: the tick, and nothing else
    (a keepalive due at the same time waits for the driver's next timer read)."""
    net, mover, watchers, _ = _area(4)
    core = mover.core
    start = net.now
    due = core.queue_position(_update(mover, 1, 0.0), start)
    assert due == start
    core.tick_movement(start - 1e-3)  # not due yet: nothing runs
    assert core.movement_info().ticks == 0 and core.movement_info().queued == 1
    keepalive = start + 3600.0  # far enough that every link's keepalive is due
    core.tick_movement(keepalive)
    info = core.movement_info()
    assert info.ticks == 1 and info.queued == 0 and info.sent >= 2
    timer = core.get_timer()
    assert timer is not None and timer < keepalive  # the links' timers were left alone
    net.flush(mover)
    net.run_for(0.05)
    got = [w for w in watchers if any(p.update.seq == 1 for p in w.positions())]
    assert len(got) == info.sent
    core.tick_movement(keepalive)  # a catch-up tick is planned later, not due yet: no tick
    assert core.movement_info().ticks == 1


def _ticks_of(
    queue_times: list[float], late: dict[int, float] | None = None
) -> tuple[list[float], list[float]]:
    """Queue one position at each time on a lone core (tick_interval 0.05), running its
    timer whenever due in between: (when each queue call said its tick was due, when
    update ticks ran). ``late``: queue index -> how late the loop runs that update's tick
    (a busy moment)."""
    net = SimNet(0, config=lambda: MeshConfig(tick_interval=0.05))
    node = net.add(10)
    core = node.core
    dues: list[float] = []
    ran: list[float] = []

    def run_until(now: float, delay: float = 0.0) -> None:
        while (timer := core.get_timer()) is not None and timer <= now:
            ticks = core.movement_info().ticks
            core.handle_timer(timer + delay)
            if core.movement_info().ticks > ticks:
                ran.append(timer + delay)

    for i, at in enumerate(queue_times):
        run_until(at)
        delay = (late or {}).get(i, 0.0)
        dues.append(core.queue_position(_update(node, i + 1, float(i)), at))
        run_until(at + delay, delay)
    run_until(queue_times[-1] + 1.0)
    return dues, ran


def test_a_game_queueing_at_the_tick_rate_is_never_held_back_by_jitter() -> None:
    """Positions queued once per tick_interval, each a little early or late (a frame clock,
    a loop timer that fires early): every one leaves at once. Before, one that came a hair
    early waited for its slot, and every later one then waited as long (the slots followed
    the waiting ticks)."""
    jitter = [0.001, -0.002, 0.0005, -0.004, 0.003, -0.001] * 20
    times = [1.0 + 0.05 * k + j for k, j in enumerate(jitter)]
    dues, ran = _ticks_of(times)
    assert dues == times
    assert len(ran) == len(times)


def test_update_ticks_never_run_more_often_than_tick_interval_over_time() -> None:
    """A game queueing faster than the tick rate (every 0.8 interval) gets at most one
    update tick per ``1 - TICK_SLACK`` interval over time, though a tick may run a quarter
    interval early."""
    times = [1.0 + 0.04 * k for k in range(250)]  # 10 s
    dues, ran = _ticks_of(times)
    span = ran[-1] - ran[0]
    slot = 0.05 * (1 - TICK_SLACK)
    # the k-th tick after the first runs no earlier than a quarter interval before k slots
    assert len(ran) - 1 <= (span + TICK_EARLY * 0.05) / slot + 1e-9
    assert len(ran) - 1 >= span / 0.05 - 1  # and no slower than the tick rate
    gaps = [b - a for a, b in itertools.pairwise(ran)]
    assert min(gaps) >= slot - TICK_EARLY * 0.05 - 1e-9


def test_a_late_tick_leaves_no_lasting_wait_for_a_game_on_its_own_schedule() -> None:
    """A game queueing once per interval on its own clock, whose loop runs a few ticks late
    early on (a crowd's handshakes): those ticks move the slots later, so the frames after
    them come early and wait; the wait drains within a few ticks and never comes back.
    Before, every later frame waited as long as the latest tick had been late (less the
    quarter interval), for the rest of the game."""
    times = [1.0 + 0.05 * k for k in range(200)]
    dues, ran = _ticks_of(times, late={3: 0.012, 4: 0.02, 5: 0.03})
    waits = [due - at for due, at in zip(dues, times, strict=True)]
    assert max(waits[6:]) > 0.01  # the late ticks did leave the next frames waiting
    assert all(w == 0.0 for w in waits[20:])  # and that wait is gone for good
    assert len(ran) == len(times)  # no frame merged away


def _turns(ticks: int, divisor_at: Callable[[int], int], salt: int) -> list[int]:
    """Which of ticks 1..``ticks`` (run on time, one interval apart) a peer gets, by the
    rule of :mod:`mesh.datagrams`: every tick at divisor 1, else the ticks ``n`` with
    ``(n + salt) % d == 0``, or any once it has waited ``d + 1/2`` intervals (counted from
    its last one, or from the first tick that skipped it)."""
    got: list[int] = []
    since: int | None = None
    for n in range(1, ticks + 1):
        d = divisor_at(n)
        if d == 1 or (n + salt) % d == 0 or (since is not None and n - since >= d + 0.5):
            got.append(n)
            since = n
        elif since is None:
            since = n
    return got


def _run_mover(
    net: SimNet,
    mover: SimNode,
    ticks: int,
    between: Callable[[int], None] | None = None,
    *,
    start: int = 1,
) -> None:
    """The mover queues one position per tick interval (``ticks`` of them, seq = its tick
    number from ``start`` on), then stops; ``between(n)`` runs right after it queued tick
    ``n``'s position."""
    for n in range(start, start + ticks):
        mover.core.queue_position(_update(mover, n, 0.0), net.now)
        net.flush(mover)
        if between is not None:
            between(n)
        net.run_for(0.05)
    net.run_for(1.0)  # the catch-up tick: every watcher gets the last one


@pytest.mark.parametrize("seed", range(2))
def test_each_peer_gets_exactly_the_ticks_of_its_divisor_and_phase(seed: int) -> None:
    """The schedule, tick by tick: the two nearest every tick, the others on the ticks
    their pair salt picks (and the last update by the catch-up tick), nothing else."""
    net, mover, watchers, _ = _area(seed)
    ticks = 60
    _run_mover(net, mover, ticks)
    divisors = {2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 4}
    for w in watchers:
        d = divisors[w.character_id]
        want = _turns(ticks, lambda _n, d=d: d, pair_salt(1, w.character_id))  # type: ignore[misc]
        want = sorted({*want, ticks})
        got = [e.update.seq for e in w.positions()]
        assert got == want, (w.character_id, d)
        # its ACKs wait for our next datagram to it: d - 1 ticks more than the base delay
        quic = mover.core._table.directs[w.core.identity.peer_id].quic
        assert quic._ack_delay == pytest.approx(2.5 * 0.05 + (d - 1) * 0.05)


def test_a_moved_peer_gets_its_new_divisor_on_the_next_ranking_tick() -> None:
    """A watcher that walks from band 0 (every 2nd tick) to band 1 (every 3rd) gets its new
    rate from the first tick that ranks the peers again: the ranking is reused for
    ``INTEREST_REUSE_TICKS`` ticks (ticks 1, 4, 7, ...), neither sooner nor later."""
    net, mover, watchers, _ = _area(0)
    walker = next(w for w in watchers if w.character_id == 4)  # at 5: every 2nd tick
    moved_after = 17  # its new position reaches the mover before tick 18
    ranked = [n for n in range(1, 60) if (n - 1) % INTEREST_REUSE_TICKS == 0]
    switch = next(n for n in ranked if n > moved_after)
    salt = pair_salt(1, walker.character_id)

    def expected(at: int) -> list[int]:
        return _turns(45, lambda n: 2 if n < at else 3, salt)

    # the test tells the reuse apart: a switch one tick sooner or later sends other ticks
    assert expected(switch) != expected(switch - 1)
    assert expected(switch) != expected(switch + 1)

    def walk(n: int) -> None:
        if n == moved_after:
            walker.core.queue_position(_update(walker, 2, 15.0), net.now)
            net.flush(walker)

    _run_mover(net, mover, 45, walk)
    got = [e.update.seq for e in walker.positions()]
    assert got == sorted({*expected(switch), 45})


def test_a_peer_that_joins_mid_game_gets_the_ticks_of_its_divisor() -> None:
    """A watcher connecting while the mover is ticking (the table changes between two
    rankings) is ranked on the next tick and gets its turns from then on."""
    net, mover, _, _ = _area(1)
    first, ticks = 20, 45
    joiner = net.add(8)

    def join(n: int) -> None:
        if n == first:
            net.run_for(0.05)  # tick ``first`` runs before the joiner connects
            net.establish(joiner, mover)
            joiner.core.queue_position(_update(joiner, 1, 25.0), net.now)  # band 2: every 4th
            net.flush(joiner)
            net.run_for(0.01)

    _run_mover(net, mover, first, join)
    _run_mover(net, mover, ticks - first, lambda _n: None, start=first + 1)
    later = _turns(ticks - first, lambda _n: 4, pair_salt(1, 8) + first)
    want = sorted({first + n for n in later} | {ticks})
    got = [e.update.seq for e in joiner.positions() if e.update.seq > first]
    assert got == want


def test_a_peer_whose_connection_is_replaced_keeps_its_ticks() -> None:
    """A duplicate connection replacing a watcher's link between two rankings (the same
    peers, so the ranking stands): the new link gets the watcher's turns from the next
    tick on, as the old one would have."""
    net, mover, watchers, _ = _area(2)
    watcher = next(w for w in watchers if w.character_id == 5)  # at 8: every 2nd tick
    pid = watcher.core.identity.peer_id
    table = mover.core._table
    replaced_after, ticks = 20, 45

    def redial(n: int) -> None:
        if n != replaced_after:
            return
        net.run_for(0.02)  # tick ``replaced_after`` runs on the old link
        old = table.directs[pid]
        # the side whose new link wins the duplicate tie-break dials (mesh.admission)
        mover_lower = mover.core.identity.peer_id < pid
        dialer, other = (mover, watcher) if mover_lower else (watcher, mover)
        net.connect(dialer, other)
        net.run_until(lambda: table.directs[pid] is not old, limit=0.02)

    _run_mover(net, mover, ticks, redial)
    want = _turns(ticks, lambda _n: 2, pair_salt(1, 5))
    got = [e.update.seq for e in watcher.positions()]
    assert got == sorted({*want, ticks})


def test_a_peer_at_no_finite_distance_is_ranked_last_at_the_top_divisor() -> None:
    """A NaN or infinite distance never takes a full-rate place from a peer at a finite
    one, and gets ``max_tick_divisor``, like a peer beyond every band."""
    peers = _peers({"a": 1.0, "b": 2.0, "c": 3.0})
    peers = {
        "n": ((math.nan, 0.0, 0.0), 0),  # the lowest salt: first among equals
        "i": ((math.inf, 0.0, 0.0), 1),
        **peers,
    }
    policy = {**POLICY, "full_rate_peers": 3}
    got = tick_divisors((0.0, 0.0, 0.0), peers, **policy)  # type: ignore[arg-type]
    assert got == {"a": 1, "b": 1, "c": 1, "n": 4, "i": 4}
