"""The benchmark harness's pure pieces: percentiles, targets, result shapes, view ages."""

from __future__ import annotations

import math

from bench._common import make_result, percentile, percentiles_ms, row, skip_result
from bench._pairs import PayloadStamp
from bench.area import view_ages
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
    peers beyond ``full_rate_peers`` (4) every other tick: (4 + 3/2) / 7 of all for 8 peers."""
    from bench._vmesh import run_virtual_area

    config = {"tick_interval": 1 / 30, "max_connections": 8}
    fig = run_virtual_area(8, rate=30.0, duration=0.5, config=config)
    assert fig["links_up"] == 8 * 7
    assert fig["delivered_of_records"] == 1.0
    assert abs(fig["sent_of_all"] - 5.5 / 7) < 0.03
    small = run_virtual_area(4, rate=30.0, duration=0.5, config=config)
    assert small["sent_of_all"] == 1.0 and small["delivered_of_records"] == 1.0
