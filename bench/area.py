"""One area: ``PEERS`` PeerNodes all connected to each other, each sending its position at 30 Hz.

The nodes live in ``PROCESSES`` child processes (each loop hosts several nodes, as a test
harness would; a real game has one node per machine). Every node logs when it sent each update
(``seq`` -> ``perf_counter_ns``) and when it received each update of every other node; the
orchestrator joins the logs and samples, every ``SAMPLE`` seconds over the window, the *age* of
each node's view of each other node: now - send time of the newest update it has of that node.
Targets (issue 16): p99 age < 100 ms for 16 peers using at most 1.2 cores for all of them, CPU per
delivered update <= 150 us; p99 < 150 ms for 32 peers standing apart, where interest management
lowers the rate to the farther ones.

Where updates go: each node reports how many (update, peer) records its movement scheduler handed
to aioquic (``MovementInfo.sent``), so "updates delivered of sent" splits into *not sent by
design* (interest: beyond ``full_rate_peers`` a peer gets every 2nd or 3rd tick; the newest wins,
so the view stays current) and *sent and lost* (the network, or a loop too busy to read in time).
A virtual-time row (``bench._vmesh``: the same cores, no sockets, one process) gives the CPU per
delivered update independent of the machine's load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench._common import LOOPS, make_result, percentile, row, skip_result
from bench._proc import Child, Profiler
from bench._vmesh import frozen_heap, home, pair_ages, run_virtual_area

__all__ = ["run", "run_area"]

TITLE = "one area: 16 peers at 30 Hz, age of each view"
RATE = 30.0
PROCESSES = 4
SAMPLE = 0.005
#: Grid spacing (m) of the peers of a spread-out area (the 32-peer row): with the default
#: ``rate_band`` of 50 m, the farther peers get every 2nd or 3rd tick.
SPREAD = 30.0


async def area_child(ctl: Any, lobby_key: bytes, ids: list[int], config: dict[str, Any]) -> None:
    """Child body: PeerNodes for ``ids``; "connect", "wait_mesh", "run", "stop"."""
    from bench._mesh import make_node
    from protocol.messages.base import MessageType

    nodes: dict[int, Any] = {}
    received: list[tuple[int, int, int, int]] = []  # viewer, source, seq, recv_ns
    for cid in ids:
        node = await make_node(lobby_key, cid, f"Hero{cid}", config=config)
        nodes[cid] = node

        def on_position(update: Any, viewer: int = cid) -> None:
            received.append((viewer, update.character_id, update.seq, time.perf_counter_ns()))

        node.register_handler(MessageType.POSITION_UPDATE, on_position)
    ctl.send(("ready", [(cid, n.address, n.bench_ticket) for cid, n in nodes.items()]))

    async def connect(arg: list[tuple[int, tuple[str, int], str]]) -> int:
        sem = asyncio.Semaphore(4)

        async def dial(local: int, addr: tuple[str, int], ticket: str) -> None:
            async with sem:
                await asyncio.wait_for(nodes[local].connect(ticket, tuple(addr)), 30.0)

        await asyncio.gather(*(dial(*item) for item in arg))
        return len(arg)

    unfreeze = contextlib.ExitStack()
    heap = {"frozen": 0}

    async def wait_mesh(want: int) -> list[int]:
        deadline = time.monotonic() + 60.0
        while any(len(n.peers) < want for n in nodes.values()):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        if not heap["frozen"]:
            # the mesh is up: no full collection of its state in the window (this one runs
            # now, before the parent sets when the window starts)
            heap["frozen"] = unfreeze.enter_context(frozen_heap())
        return [len(n.peers) for n in nodes.values()]

    async def exchange(arg: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        t0_ns, dur, warm, total = arg["t0_ns"], arg["duration"], arg["warm"], arg["total"]
        spread = arg.get("spread", 0.0)
        period_ns = int(1e9 / RATE)
        start_ns = t0_ns - int(warm * 1e9)
        end_ns = t0_ns + int(dur * 1e9)
        sent: list[tuple[int, int, int]] = []  # source, seq, send_ns
        received.clear()
        cpu: list[float] = []
        done = loop.create_future()

        def at_ns(ns: int) -> float:
            return loop.time() + (ns - time.perf_counter_ns()) / 1e9

        def tick(cid: int, k: int, offset: int) -> None:
            now = time.perf_counter_ns()
            if now >= end_ns:
                return
            hx, hz = home(cid, spread)
            x = hx + (0.01 * k if spread > 0 else float(k))
            update = nodes[cid].send_position_update((x, 0.0, hz), (1.0, 0.0, 0.0), location_id=1)
            sent.append((cid, update.seq, now))
            loop.call_at(at_ns(start_ns + offset + (k + 1) * period_ns), tick, cid, k + 1, offset)

        for cid in nodes:
            offset = int(period_ns * (cid % total) / total)  # spread the senders over a period
            loop.call_at(at_ns(start_ns + offset), tick, cid, 0, offset)
        profiler = Profiler()

        records: list[int] = []

        def begin() -> None:
            cpu.append(time.process_time())
            records.append(sum(n.core.movement_info().sent for n in nodes.values()))
            profiler.start()

        def finish() -> None:
            cpu.append(time.process_time())
            records.append(sum(n.core.movement_info().sent for n in nodes.values()))
            profiler.stop("area")
            done.set_result(None)

        loop.call_at(at_ns(t0_ns), begin)

        loop.call_at(at_ns(end_ns), finish)
        await done
        await asyncio.sleep(0.3)
        return {
            "sent": sent,
            "received": list(received),
            "cpu": cpu[1] - cpu[0],
            "records": records[1] - records[0],
            "frozen": heap["frozen"],
        }

    try:
        await ctl.serve({"connect": connect, "wait_mesh": wait_mesh, "exchange": exchange})
    finally:
        unfreeze.close()
        for node in nodes.values():
            await node.close()


def view_ages(
    sent: list[tuple[int, int, int]],
    received: list[tuple[int, int, int, int]],
    t0_ns: int,
    end_ns: int,
    step_ns: int,
) -> tuple[list[int], int]:
    """Age samples (ns) of every viewer's view of every source, and the pairs seen."""
    send_at = {(src, seq): ns for src, seq, ns in sent}
    per_pair: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for viewer, src, seq, recv_ns in received:
        sent_ns = send_at.get((src, seq))
        if sent_ns is not None:
            per_pair.setdefault((viewer, src), []).append((recv_ns, sent_ns))
    return pair_ages(per_pair.values(), t0_ns, end_ns, step_ns), len(per_pair)


def run_area(
    kind: str,
    peers: int,
    duration: float,
    warm: float,
    config: dict[str, Any],
    *,
    spread: float = 0.0,
) -> dict[str, Any]:
    """Start ``peers`` nodes in ``PROCESSES`` children, connect all pairs, run, measure."""
    from bench._mesh import lobby_key_bytes

    key = lobby_key_bytes()
    groups = [list(range(p + 1, peers + 1, PROCESSES)) for p in range(PROCESSES)]
    groups = [g for g in groups if g]
    children = [
        Child(area_child, key, ids, config, kind=kind, name=f"area-{i}")
        for i, ids in enumerate(groups)
    ]
    try:
        info: dict[int, tuple[tuple[str, int], str, int]] = {}
        for i, child in enumerate(children):
            _, nodes = child.recv(60)
            for cid, addr, ticket in nodes:
                info[cid] = (tuple(addr), ticket, i)
        t_connect = time.perf_counter()
        plans: list[list[Any]] = [[] for _ in children]
        for a in info:
            for b in info:
                if a < b:
                    plans[info[a][2]].append((a, info[b][0], info[b][1]))
        for child, plan in zip(children, plans, strict=True):
            child.send("connect", plan)
        for child in children:
            child.reply(120)
        mesh = [n for child in children for n in child.call("wait_mesh", peers - 1, 90)]
        connect_s = time.perf_counter() - t_connect
        t0_ns = time.perf_counter_ns() + int((warm + 0.3) * 1e9)
        arg = {
            "t0_ns": t0_ns,
            "duration": duration,
            "warm": warm,
            "total": peers,
            "spread": spread,
        }
        for child in children:
            child.send("exchange", arg)
        parts = [child.reply(duration + warm + 60) for child in children]
    finally:
        for child in children:
            child.close()
    sent = [s for p in parts for s in p["sent"]]
    received = [r for p in parts for r in p["received"]]
    end_ns = t0_ns + int(duration * 1e9)
    ages, pairs = view_ages(sent, received, t0_ns, end_ns, int(SAMPLE * 1e9))
    in_window = sum(1 for r in received if t0_ns <= r[3] < end_ns)
    expected = peers * (peers - 1) * RATE * duration
    cpu = sum(p["cpu"] for p in parts)
    records = sum(p["records"] for p in parts)
    produced = sum(1 for s in sent if t0_ns <= s[2] < end_ns)
    return {
        "peers": peers,
        "connections_per_node_min": min(mesh) if mesh else 0,
        "connect_s": connect_s,
        "pairs_seen": pairs,
        "pairs_expected": peers * (peers - 1),
        "age_p50_ms": percentile(ages, 50) / 1e6,
        "age_p99_ms": percentile(ages, 99) / 1e6,
        "age_max_ms": (max(ages) / 1e6) if ages else float("nan"),
        "delivery_ratio": in_window / expected if expected else float("nan"),
        "cpu_cores": cpu / duration,
        "cpu_per_update_us": cpu / in_window * 1e6 if in_window else float("nan"),
        "sent_by_interest": records / (produced * (peers - 1)) if produced else float("nan"),
        "delivered_of_records": in_window / records if records else float("nan"),
        "heap_frozen_min": min(p["frozen"] for p in parts),
    }


def _rows(kind: str, fig: dict[str, Any], p99_target: float, tag: str) -> list[dict[str, Any]]:
    return [
        row(
            loop=kind,
            metric=f"p99 view age, {tag}",
            value=fig["age_p99_ms"],
            unit="ms",
            target=("value", "<", p99_target),
        ),
        row(loop=kind, metric=f"p50 view age, {tag}", value=fig["age_p50_ms"], unit="ms"),
        row(
            loop=kind,
            metric=f"CPU used, {tag}",
            value=fig["cpu_cores"],
            unit="cores",
            target=("value", "<=", 1.2) if fig["peers"] <= 16 else None,
        ),
        row(
            loop=kind,
            metric=f"CPU per delivered update, {tag}",
            value=fig["cpu_per_update_us"],
            unit="us",
            target=("value", "<=", 150.0),
        ),
        row(
            loop=kind,
            metric=f"updates delivered, {tag}",
            value=fig["delivery_ratio"],
            unit="of sent",
        ),
        row(
            loop=kind,
            metric=f"sent (interest), {tag}",
            value=fig["sent_by_interest"],
            unit="of all",
        ),
        row(
            loop=kind,
            metric=f"delivered of records sent, {tag}",
            value=fig["delivered_of_records"],
            unit="of sent",
        ),
    ]


def run(quick: bool) -> dict[str, Any]:
    from bench._mesh import product_skip_reason

    skip = product_skip_reason()
    if skip is not None:
        return skip_result("area", TITLE, skip)
    peers = 8 if quick else 16
    duration = 1.5 if quick else 10.0
    warm = 0.5 if quick else 1.0
    config = {"tick_interval": 1.0 / RATE, "max_connections": peers}
    big = 32
    big_config = {"tick_interval": 1.0 / RATE, "max_connections": big}
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"{peers} PeerNodes in {PROCESSES} processes, all pairs connected (max_connections "
        f"{peers}), all standing together, each sends at {RATE:g} Hz (tick_interval "
        f"1/{RATE:g} s) for {duration:g} s; age sampled every {SAMPLE * 1000:g} ms per "
        "(viewer, source) pair."
        + (
            ""
            if quick
            else f" The {big}-peer row: max_connections {big}, peers on a grid {SPREAD:g} m "
            "apart, so interest sends the farther ones every 2nd or 3rd tick."
        ),
        "'updates delivered' counts against every update going to every other peer; "
        "'sent (interest)' is the share of those the senders' movement schedulers handed to "
        "aioquic (the rest were superseded by design: beyond full_rate_peers (4) a peer gets "
        "every 2nd or 3rd tick, newest wins); 'delivered of records sent' is the share of "
        "those that arrived (the rest were lost: kernel buffers of a loop too busy to read, "
        "or queue trims). In virtual time (no loss) the first is 0.63 for 16 peers together "
        "((4 + 11/2) / 15) and the second 1.00. The issue's '0.65 of sent' (then 6 full-rate "
        "peers) was 0.70 by design ((6 + 9/2) / 15) times about 0.93 lost. A real run's "
        "'sent (interest)' below the virtual one means the senders' loops ran late and "
        "merged ticks (newest wins): the machine, not interest.",
        "'CPU to keep up (no sockets)' (virtual time) is what the cores' own work takes per "
        "second of play, before any socket or event loop: a row whose figure nears the "
        "machine's cores cannot keep its views fresh there, whatever the scheduling.",
        "Each child freezes its heap once the mesh is up (gc.freeze: what the setup left "
        "is not scanned again): a child hosts 8 nodes, so a full collection of their "
        "connections' state would stall all 8 for 55-120 ms every 9 s or so, many times "
        "what one node in a game process holds; the virtual area does the same.",
        "'p99 view age (no sockets)' (virtual time, 0.5 ms links, every tick on time) is the "
        "age interest itself gives: for peers standing apart, about three tick intervals "
        "(100 ms at 30 Hz: most peers get every 3rd tick). What a real row adds to it is "
        "delivery latency and late ticks: the loops' and the machine's load.",
    ]
    for kind in LOOPS:
        fig = run_area(kind, peers, duration, warm, config)
        figures[kind] = fig
        rows.extend(_rows(kind, fig, 100.0, f"{peers} peers"))
        if not quick:
            fig_big = run_area(kind, big, duration, warm, big_config, spread=SPREAD)
            figures[f"{kind}-{big}"] = fig_big
            rows.extend(_rows(kind, fig_big, 150.0, f"{big} peers apart"))
        for f in (figures[kind], figures.get(f"{kind}-{big}")):
            if f is not None and f["pairs_seen"] < f["pairs_expected"]:
                notes.append(
                    f"{kind}, {f['peers']} peers: only {f['pairs_seen']} of "
                    f"{f['pairs_expected']} viewer/source pairs received anything"
                )
    for n, spread, cfg in ((peers, 0.0, config), (big, SPREAD, big_config)):
        if quick and n == big:
            continue
        virtual = run_virtual_area(
            n, rate=RATE, duration=1.0 if quick else 3.0, config=cfg, spread=spread
        )
        figures[f"virtual-{n}"] = virtual
        tag = f"{n} peers" + (" apart" if spread else "")
        specs: list[tuple[str, str, str, tuple[str, str, float] | None]] = [
            ("CPU per delivered update", "cpu_per_update_us", "us", ("value", "<=", 150.0)),
            ("CPU to keep up (no sockets)", "cores", "cores", None),
            ("p99 view age (no sockets)", "age_p99_ms", "ms", None),
            ("sent (interest)", "sent_of_all", "of all", None),
            ("delivered of records sent", "delivered_of_records", "of sent", None),
        ]
        for metric, key, unit, target in specs:
            rows.append(
                row(
                    loop="virtual time",
                    metric=f"{metric}, {tag}",
                    value=virtual[key],
                    unit=unit,
                    target=target,
                )
            )
    return make_result("area", TITLE, rows, figures=figures, notes=notes)
