"""Shared pieces of the benchmarks: result rows, targets, percentiles, loops, skips.

Every benchmark module exposes ``run(quick: bool) -> dict`` returning a *result*:

``{"name", "title", "rows": [row, ...], "figures": {...}, "notes": [...], "skipped": None | str}``

A *row* is one measured figure set against a baseline measured in the same run:
``{"loop", "metric", "value", "unit", "baseline", "baseline_name", "ratio", "target", "met"}``.
``ratio`` is ``value / baseline``; ``target`` is a text such as ``"ratio <= 1.2"`` and ``met``
is True/False (None when the figure has no target). A miss is reported, never raised.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "LOOPS",
    "BenchError",
    "Skip",
    "latency_rows",
    "make_result",
    "percentile",
    "percentiles_ms",
    "row",
    "rss_bytes",
    "run_async",
    "skip_result",
    "versus",
]


class Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a benchmark when the product part it measures has not landed yet."""


class BenchError(Exception):
    """A benchmark could not run (a child died, a server never answered)."""


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


#: Event loops every benchmark runs under: stock asyncio, and uvloop when installed.
LOOPS: tuple[str, ...] = ("asyncio", "uvloop") if _uvloop_available() else ("asyncio",)


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of a fresh event loop of ``kind`` ("asyncio" or "uvloop")."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if kind == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"unknown loop kind {kind!r}")


def run_async(coro: Coroutine[Any, Any, Any], kind: str) -> Any:
    """Run ``coro`` to completion on a new loop of ``kind``."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(coro)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def percentiles_ms(samples_ns: Iterable[int]) -> dict[str, float]:
    """p50/p99/max in milliseconds of a set of nanosecond samples, plus their count."""
    values = sorted(samples_ns)
    return {
        "n": float(len(values)),
        "p50_ms": percentile(values, 50) / 1e6,
        "p99_ms": percentile(values, 99) / 1e6,
        "max_ms": (values[-1] / 1e6) if values else math.nan,
    }


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to peak RSS)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            fields = fh.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _check(value: float, op: str, threshold: float) -> bool:
    if math.isnan(value):
        return False
    if op == "<=":
        return value <= threshold
    if op == "<":
        return value < threshold
    if op == ">=":
        return value >= threshold
    if op == ">":
        return value > threshold
    raise ValueError(f"unknown comparison {op!r}")


def row(
    *,
    loop: str,
    metric: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    baseline_name: str | None = None,
    target: tuple[str, str, float] | None = None,
) -> dict[str, Any]:
    """One figure. ``target`` is ``(on, op, threshold)`` with ``on`` "ratio" or "value"."""
    ratio = math.nan
    if baseline is not None and baseline != 0 and not math.isnan(baseline):
        ratio = value / baseline
    met: bool | None = None
    target_text: str | None = None
    if target is not None:
        on, op, threshold = target
        met = _check(ratio if on == "ratio" else value, op, threshold)
        target_text = f"{on} {op} {threshold:g}"
    return {
        "loop": loop,
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": None if math.isnan(ratio) else ratio,
        "target": target_text,
        "met": met,
    }


def versus(
    loop: str,
    metric: str,
    ours: Mapping[str, float],
    base: Mapping[str, float],
    base_name: str,
    *,
    key: str,
    unit: str,
    target: tuple[str, str, float] | None = None,
) -> dict[str, Any]:
    """A row for figure ``key`` of run ``ours`` against the same figure of run ``base``."""
    return row(
        loop=loop,
        metric=metric,
        value=ours[key],
        unit=unit,
        baseline=base[key],
        baseline_name=base_name,
        target=target,
    )


def latency_rows(
    loop: str,
    metric: str,
    ours: Mapping[str, float],
    base: Mapping[str, float],
    base_name: str,
    *,
    targets: Mapping[str, tuple[str, str, float]] | None = None,
) -> list[dict[str, Any]]:
    """The p50 and p99 rows of run ``ours`` against run ``base`` (``percentiles_ms`` dicts).

    ``metric`` names the row with ``{q}`` standing for ``p50`` / ``p99``; ``targets`` are
    keyed the same way.
    """
    targets = targets or {}
    return [
        versus(
            loop,
            metric.format(q=q),
            ours,
            base,
            base_name,
            key=f"{q}_ms",
            unit="ms",
            target=targets.get(q),
        )
        for q in ("p50", "p99")
    ]


def make_result(
    name: str,
    title: str,
    rows: list[dict[str, Any]],
    *,
    figures: dict[str, Any] | None = None,
    notes: list[str] | None = None,
    skipped: str | None = None,
) -> dict[str, Any]:
    """A benchmark's result in the shape ``bench.run`` prints and stores.

    ``skipped`` says why the product part of it was not measured (rows may still hold the
    baselines).
    """
    return {
        "name": name,
        "title": title,
        "rows": rows,
        "figures": figures or {},
        "notes": notes or [],
        "skipped": skipped,
        "time": time.time(),
    }


def skip_result(name: str, title: str, reason: str) -> dict[str, Any]:
    """The result of a benchmark whose product part is not there yet."""
    return make_result(name, title, [], skipped=reason)
