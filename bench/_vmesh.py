"""One area in virtual time: ``peers`` sans-I/O ``MeshCore``s, all connected, no sockets.

The load-independent complement of ``bench.area``: the same cores a ``PeerNode`` drives, driven
in one process by an event heap (a datagram reaches its peer ``latency`` seconds later; each
node's single timer is re-read after every flush, as ``PeerNode`` does), each node queueing its
position at ``rate`` Hz. What it measures is process CPU time per delivered update over the
window, so a busy machine stretches the wall clock but not the figure; and the age of each
node's view of each other node over the window, sampled as ``bench.area`` samples real ones:
with every tick on time and no loss, the age interest itself gives. Datagrams arriving at the
same instant for the same node are handed over as one burst and flushed once, like
``PeerNode``'s batched reads. With ``BENCH_PROFILE`` set, the measured window is profiled
(``virtual-area-<peers>-<pid>.prof``): the cores' own cost, free of the machine's load.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from bench._common import percentile
from bench._proc import Profiler

__all__ = ["frozen_heap", "home", "pair_ages", "run_virtual_area"]

_BASE_TIME = 1_700_000_000.0
#: Float slack when matching a send time to the drive's grid (seconds).
_GRID_EPSILON = 1e-9
#: How often each view's age is sampled (virtual ns), as ``bench.area`` samples real ones.
AGE_STEP_NS = 5_000_000


def home(cid: int, spread: float) -> tuple[float, float]:
    """Where character ``cid`` stands (x, z): all at the origin (``spread`` 0), else on a
    square grid of six columns ``spread`` metres apart."""
    if spread <= 0:
        return (0.0, 0.0)
    side = 6
    return (spread * ((cid - 1) % side), spread * ((cid - 1) // side))


@contextmanager
def frozen_heap() -> Iterator[int]:
    """Collect, then move every object left to the collector's permanent generation
    (``gc.freeze``) until the block ends; yields how many there are. Enter it once the mesh
    is up, around a measured window.

    A benchmark process hosts many nodes (8 PeerNodes per child, all 32 cores in the virtual
    area), so the long-lived state of all their connections is many times what one node in a
    game process holds, and so is a full collection's pause: 55-120 ms in a child of the
    32-peer area, 150 ms in the virtual one, every 9 s or so of play, during which none of
    its nodes ticks or reads. Frozen, what the setup left is no longer scanned; what the
    window allocates still is. On exit it is collectable again (the process goes on).
    """
    gc.collect()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()


def pair_ages(
    pairs: Iterable[list[tuple[int, int]]], t0_ns: int, end_ns: int, step_ns: int
) -> list[int]:
    """Age samples (ns) of views, every ``step_ns`` from ``t0_ns`` to ``end_ns``.

    ``pairs``: per (viewer, source) pair, its deliveries as (received, sent) in ns, in
    any order. A view's age at ``t`` is ``t`` - the newest send time delivered by ``t``;
    before its first delivery it counts as a second older than the window.
    """
    grid = range(t0_ns, end_ns, step_ns)
    ages: list[int] = []
    for events in pairs:
        events.sort()
        times = [e[0] for e in events]
        newest: list[int] = []
        best = -1
        for _, sent_ns in events:
            best = max(best, sent_ns)
            newest.append(best)
        for t in grid:
            i = bisect.bisect_right(times, t) - 1
            ages.append(t - newest[i] if i >= 0 else t - t0_ns + 10**9)
    return ages


def run_virtual_area(
    peers: int,
    *,
    rate: float,
    duration: float,
    config: dict[str, Any],
    spread: float = 0.0,
    latency: float = 0.0005,
) -> dict[str, Any]:
    """Connect ``peers`` cores pairwise, warm up one second, then measure ``duration`` seconds.

    Returns CPU per delivered update (us), the cores the cores' own work takes to keep up in
    real time (``cores``: CPU seconds per virtual second), updates delivered, records sent
    (update x peer, as interest chose) and updates produced, so the caller can split "not sent
    by design" from "sent and lost" (``delivered_of_records``: over the whole run, after one
    more second with nothing new sent, so nothing is still in flight), and the p50, p99 and
    maximum age of the views in the window (``age_p50_ms``, ``age_p99_ms``, ``age_max_ms``);
    ``heap_frozen``: the objects :func:`frozen_heap` kept out of collections in the window.
    """
    from mesh.auth import LobbyTicketAuth
    from mesh.core import MeshConfig, MeshCore
    from mesh.events import PeerConnected, PositionReceived
    from protocol.crypto import Identity, issue_ticket
    from protocol.crypto.keys import generate_identity_key, public_key_raw
    from protocol.messages.location import PositionUpdateMessage, Vec3

    lobby = generate_identity_key()
    cores: list[Any] = []
    tickets: list[str] = []
    addrs: list[tuple[str, int]] = []
    for i in range(peers):
        identity = Identity.generate()
        ticket = issue_ticket(
            lobby,
            character_id=i + 1,
            character_name=f"v{i + 1}",
            faction=None,
            public_key=identity.public_key,
            box_key=identity.box_public_key,
            now=_BASE_TIME,
            ttl=86400.0,
        )
        core = MeshCore(
            identity, LobbyTicketAuth(public_key_raw(lobby), ticket), config=MeshConfig(**config)
        )
        core.wall_offset = _BASE_TIME
        cores.append(core)
        tickets.append(ticket)
        addrs.append((f"10.0.{i // 250}.{i % 250 + 1}", 9000))
    index = {addr: i for i, addr in enumerate(addrs)}
    heap: list[tuple[float, int, int, Any]] = []
    order = itertools.count()
    timer_at: list[float | None] = [None] * peers
    counts = {"delivered": 0, "connected": 0}
    deliveries: list[tuple[int, int, float, float]] = []  # viewer, source, sent_at, now
    now = 0.0

    def flush(i: int) -> None:
        core = cores[i]
        for data, dst in core.datagrams_to_send(now):
            j = index.get((str(dst[0]), int(dst[1])))
            if j is not None:
                heapq.heappush(heap, (now + latency, next(order), j, (data, addrs[i])))
        while (event := core.next_event()) is not None:
            if isinstance(event, PositionReceived):
                counts["delivered"] += 1
                update = event.update
                deliveries.append((i, update.character_id, update.sent_at, now))
            elif isinstance(event, PeerConnected):
                counts["connected"] += 1
        at = core.get_timer()
        if at != timer_at[i]:
            timer_at[i] = at
            if at is not None:
                heapq.heappush(heap, (at, next(order), i, None))

    def run_until(end: float, before: Callable[[float], None] | None = None) -> None:
        nonlocal now
        while heap and heap[0][0] <= end:
            when, _, i, item = heapq.heappop(heap)
            now = max(now, when)
            if before is not None:
                before(now)
            if item is None:
                if timer_at[i] != when:
                    continue  # superseded
                timer_at[i] = None
                now = max(now, when + 1e-6)  # aioquic's float rounding, as PeerNode does
                cores[i].handle_timer(now)
            else:
                cores[i].receive_datagram(item[0], item[1], now)
                while heap and heap[0][0] <= now and heap[0][2] == i and heap[0][3] is not None:
                    data, src = heapq.heappop(heap)[3]
                    cores[i].receive_datagram(data, src, now)
            flush(i)
        now = max(now, end)

    for core in cores:
        core.set_location(1, now)
    for i in range(peers):
        for j in range(i + 1, peers):
            cores[i].connect(tickets[j], addrs[j], now)
        flush(i)
    run_until(5.0)
    period = 1.0 / rate
    seqs = [0] * peers
    produced = 0
    # peer i queues its k-th position at 5 + (k + i / peers) periods: on the drive's grid
    # of period / peers steps, each computed afresh (a sum of steps would drift a hair past
    # a send time and hold that send for a whole step)
    sends = [0] * peers

    def send_time(i: int) -> float:
        return 5.0 + period * (sends[i] + i / peers)

    next_send = [send_time(i) for i in range(peers)]

    def send_due(t: float) -> None:
        nonlocal produced
        for i in range(peers):
            while next_send[i] <= t + _GRID_EPSILON:
                seqs[i] = (seqs[i] + 1) & 0xFFFF
                hx, hz = home(i + 1, spread)
                x = hx + (0.01 * seqs[i] if spread > 0 else float(seqs[i]))
                update = PositionUpdateMessage(
                    character_id=i + 1,
                    location_id=1,
                    position=Vec3(x=x, y=0.0, z=hz),
                    velocity=Vec3(x=1.0, y=0.0, z=0.0),
                    sent_at=next_send[i],
                    seq=seqs[i],
                )
                cores[i].queue_position(update, next_send[i])
                flush(i)
                produced += 1
                sends[i] += 1
                next_send[i] = send_time(i)

    def drive(start: float, end: float) -> None:
        step = period / peers
        j = 0
        while (t := start + j * step) < end - _GRID_EPSILON:
            send_due(t)
            run_until(min(t + step, end), None)
            j += 1

    with frozen_heap() as frozen:  # the mesh is up: no full collection of it in the window
        drive(5.0, 6.0)  # warm
        sent0 = sum(c.movement_info().sent for c in cores)
        delivered0, produced0 = counts["delivered"], produced
        profiler = Profiler()
        profiler.start()
        cpu0 = time.process_time()
        drive(6.0, 6.0 + duration)
        cpu = time.process_time() - cpu0
    profiler.stop(f"virtual-area-{peers}")
    delivered = counts["delivered"] - delivered0
    per_pair: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for viewer, source, sent_at, at in deliveries:
        per_pair.setdefault((viewer, source), []).append((round(at * 1e9), round(sent_at * 1e9)))
    ages = pair_ages(per_pair.values(), 6_000_000_000, round((6.0 + duration) * 1e9), AGE_STEP_NS)
    sent = sum(c.movement_info().sent for c in cores) - sent0
    made = produced - produced0
    # Loss is counted over the whole run once nothing is in flight: records sent just before
    # the window and delivered in it, or the reverse at its end, would skew a window's count.
    run_until(now + 1.0)
    delivered_all = counts["delivered"]
    sent_all = sum(c.movement_info().sent for c in cores)
    for core in cores:
        core.close(now)
    return {
        "peers": peers,
        "links_up": counts["connected"],
        "cpu_s": cpu,
        "cpu_per_update_us": cpu / delivered * 1e6 if delivered else float("nan"),
        "cores": cpu / duration,
        "produced": made,
        "records_sent": sent,
        "delivered": delivered,
        "sent_of_all": sent / (made * (peers - 1)) if made else float("nan"),
        "delivered_of_records": delivered_all / sent_all if sent_all else float("nan"),
        "age_p50_ms": percentile(ages, 50) / 1e6,
        "age_p99_ms": percentile(ages, 99) / 1e6,
        "age_max_ms": (max(ages) / 1e6) if ages else float("nan"),
        "heap_frozen": frozen,
    }
