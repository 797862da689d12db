"""The benchmark harness's pure pieces: percentiles, targets, result shapes, view ages."""

from __future__ import annotations

import gc
import math
import os
import subprocess
import sys
from typing import Any

import pytest

from bench._common import BenchError, make_result, percentile, percentiles_ms, row, skip_result
from bench._pairs import PayloadStamp, Placement, pin_cpus
from bench.area import view_ages
from bench.movement import _median_round, _rounds
from bench.movement_turn import check_path, schedule
from bench.run import normalize, to_markdown, to_text


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert math.isnan(percentile([], 50))
    assert percentiles_ms([1_000_000, 3_000_000])["max_ms"] == 3.0


def test_row_ratio_and_targets() -> None:
    r = row(
        loop="asyncio", metric="x", value=3.0, unit="us", baseline=2.0, target=("ratio", "<=", 1.2)
    )
    assert r["ratio"] == 1.5 and r["met"] is False and r["target"] == "ratio <= 1.2"
    r = row(loop="asyncio", metric="x", value=50.0, unit="ms", target=("value", "<", 100.0))
    assert r["ratio"] is None and r["met"] is True
    r = row(loop="asyncio", metric="x", value=math.nan, unit="ms", target=("value", "<", 1.0))
    assert r["met"] is False  # a figure that could not be measured is a miss, not a pass


def test_normalize_accepts_common_and_foreign_shapes() -> None:
    common = make_result("a", "A", [row(loop="l", metric="m", value=1.0, unit="")])
    assert normalize("a", "A", common)["rows"][0]["metric"] == "m"
    foreign = normalize("b", "B", {"ops": {"json": 10.0}, "met": True})
    metrics = {r["metric"]: r for r in foreign["rows"]}
    assert metrics["ops.json"]["value"] == 10.0 and metrics["met"]["met"] is True
    assert normalize("c", "C", None)["skipped"] == "returned no dict"


def test_tables_render_rows_skips_and_misses() -> None:
    results = [
        make_result(
            "a",
            "A",
            [
                row(
                    loop="asyncio",
                    metric="m",
                    value=2.0,
                    unit="us",
                    baseline=1.0,
                    baseline_name="base",
                    target=("ratio", "<=", 1.5),
                )
            ],
        ),
        skip_result("b", "B", "not landed"),
        {
            **make_result("c", "C", [row(loop="uvloop", metric="n", value=1.0, unit="")]),
            "skipped": "half landed",
        },
    ]
    text = to_text(results)
    assert "MISSED" in text and "skipped: not landed" in text
    meta = {"date": "d", "machine": "m", "commit": "c", "quick": True, "loops": ["asyncio"]}
    md = to_markdown(results, meta)
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in lines}) == 1  # every row has every column
    assert "| 2x |" in md and "skipped: not landed" in md and "half landed" in md


def test_payload_stamp_round_trip() -> None:
    stamp = PayloadStamp(43)
    data = stamp.pack(7, 123456789)
    assert len(data) == 43 and PayloadStamp.unpack(data) == (7, 123456789)


def test_view_ages_follow_newest_update() -> None:
    ms = 1_000_000
    sent = [(2, 1, 0), (2, 2, 10 * ms)]
    received = [(1, 2, 1, 5 * ms), (1, 2, 2, 15 * ms)]
    ages, pairs = view_ages(sent, received, 5 * ms, 20 * ms, 5 * ms)
    assert pairs == 1
    # at 5 ms: newest is seq 1 sent at 0 (age 5 ms); at 10 ms still seq 1 (10 ms);
    # at 15 ms seq 2 sent at 10 ms (5 ms)
    assert ages == [5 * ms, 10 * ms, 5 * ms]


def test_virtual_area_splits_interest_from_loss() -> None:
    """The virtual-time area: with no loss every record sent arrives, and interest sends the
    peers beyond ``full_rate_peers`` (4) every other tick: (4 + 3/2) / 7 of all for 8 peers.
    Every tick on time, no view is older than two intervals and the link's latency, and
    the peers on every 2nd tick make the p99 older than one interval. The heap the setup
    left is out of the collector's way over the window only."""
    from bench._vmesh import run_virtual_area

    config = {"tick_interval": 1 / 30, "max_connections": 8}
    fig = run_virtual_area(8, rate=30.0, duration=0.5, config=config)
    assert fig["links_up"] == 8 * 7
    assert fig["delivered_of_records"] == 1.0
    assert abs(fig["sent_of_all"] - 5.5 / 7) < 0.03
    assert 1000 / 30 < fig["age_p99_ms"] <= fig["age_max_ms"] <= (2 / 30 + 0.0005) * 1000 + 1e-6
    # the cores' heap was frozen over the window, and is collectable again after it
    assert fig["heap_frozen"] > 0 and gc.get_freeze_count() == 0
    small = run_virtual_area(4, rate=30.0, duration=0.5, config=config)
    assert small["sent_of_all"] == 1.0 and small["delivered_of_records"] == 1.0


def test_movement_turn_spreads_pinned_and_unpinned_pairs_through_the_run() -> None:
    assert schedule(7, 3) == [
        "pinned", "unpinned", "pinned", "pinned", "pinned",
        "unpinned", "pinned", "pinned", "unpinned", "pinned",
    ]  # fmt: skip
    assert schedule(1, 1) == ["pinned", "unpinned"]
    assert schedule(0, 3) == ["unpinned"] * 3


def _window(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    base = {"path": "turn", "through_own_allocation": False, "address": None,
            "link_bytes": 0, "turn_bytes": None, "relayed": None}  # fmt: skip
    a0 = {**base, "through_own_allocation": True, "turn_bytes": 0, "relayed": ("10.0.0.1", 5)}
    return {
        "paths": {
            "a": {"before": a0, "after": {**a0, **a}},
            "b": {"before": base, "after": {**base, **b}},
        }
    }


def test_movement_turn_checks_each_window_took_the_turn_path() -> None:
    relayed = {"link_bytes": 1000, "turn_bytes": 1000}
    assert check_path("turn", _window(relayed, {"address": ("10.0.0.1", 5)})) == 1.0
    with pytest.raises(BenchError, match="not A's relayed"):  # B reached A another way
        check_path("turn", _window(relayed, {"address": ("10.0.0.1", 6)}))
    with pytest.raises(BenchError, match="not A's relayed"):  # B has an allocation too
        check_path("turn", _window(relayed, {"address": ("10.0.0.1", 5), "turn_bytes": 9}))
    with pytest.raises(BenchError, match="no bytes"):
        check_path("turn", _window({"link_bytes": 1000}, {"address": ("10.0.0.1", 5)}))
    with pytest.raises(BenchError, match="not 'direct'"):
        check_path("direct", _window(relayed, {}))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_movement_turn_pins_on_two_cpus_and_not_on_one() -> None:
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert pin_cpus() == ({min(allowed)}, None)
    finally:
        os.sched_setaffinity(0, allowed)
    if len(allowed) < 2:
        pytest.skip("one CPU: nothing to pin")
    children = [
        subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
        for _ in range(2)
    ]  # fmt: skip

    class Two:
        pids = (children[0].pid, children[1].pid)

    try:
        placement = Placement([Two()])
        assert placement.cpus == tuple(sorted(allowed)[:2])
        placement.pin()
        assert [os.sched_getaffinity(c.pid) for c in children] == [
            {placement.cpus[0]},
            {placement.cpus[1]},
        ]
        placement.unpin()
        assert all(os.sched_getaffinity(c.pid) == allowed for c in children)
    finally:
        for child in children:
            child.communicate(b"")


class _FakePair:
    """A pair whose windows record the order they ran in and cost what it is told."""

    def __init__(self, name: str, log: list[str], costs: list[float]) -> None:
        self.name, self.log, self.costs = name, log, costs

    def exchange(self, *, rate: float, duration: float, warm: float) -> dict[str, Any]:
        self.log.append(self.name)
        return {"cpu_per_update_us": self.costs[len([n for n in self.log if n == self.name]) - 1]}


def test_movement_rounds_rotate_the_first_pair_and_rows_take_the_median_round() -> None:
    log: list[str] = []
    pairs: dict[str, Any] = {
        "udp": _FakePair("udp", log, [50.0] * 5),
        "aioquic": _FakePair("aioquic", log, [300.0] * 5),
        "peernode": _FakePair("peernode", log, [150.0, 270.0, 210.0, 240.0, 180.0]),
    }
    done = _rounds(pairs, rounds=5, duration=1.0, warm=0.0)
    assert [log[i * 3] for i in range(5)] == ["udp", "aioquic", "peernode", "udp", "aioquic"]
    chosen, ratios = _median_round(done, "peernode", "aioquic")
    assert ratios == [0.5, 0.9, 0.7, 0.8, 0.6]
    assert chosen is done[2]  # 0.7: the middle of the five, not the mean nor the last


def test_area_children_freeze_the_mesh_heap_over_the_window() -> None:
    """Real PeerNodes in child processes (4 peers, one a child): each child's heap, what
    connecting the mesh left, is frozen before its window."""
    from bench._mesh import product_skip_reason
    from bench.area import run_area

    if (reason := product_skip_reason()) is not None:
        pytest.skip(reason)
    fig = run_area("asyncio", 4, 0.2, 0.1, {"tick_interval": 1 / 30, "max_connections": 4})
    assert fig["connections_per_node_min"] == 3
    assert fig["heap_frozen_min"] > 0
