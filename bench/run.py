"""Run the benchmarks: ``python -m bench.run [--quick] [--only NAME ...] [--json P] [--markdown P]``

Each benchmark module has ``run(quick: bool) -> dict`` (the shape is in ``bench._common``) and
measures its own baselines in the same run, so every figure comes with a ratio that survives
this machine's drift. ``--quick`` runs everything small (CI runs it on every submission; it
must stay under two minutes on two cores). Full mode writes ``bench/results/<stamp>.json`` and
``bench/results/latest.md`` unless paths are given. Missed targets are reported, never turned
into a failing exit code: the exit code is non-zero only when a benchmark crashed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench._common import LOOPS, Skip, skip_result

__all__ = ["BENCHMARKS", "main", "main_one", "normalize", "to_markdown"]

#: name -> (module, title), in the order they run.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "codec": ("bench.codec", "codec: JSON and binary movement vs orjson"),
    "movement": ("bench.movement", "movement: two PeerNodes, CPU per update and latency"),
    "movement_turn": (
        "bench.movement_turn",
        "movement over TURN: CPU per update and latency vs direct (coturn on loopback)",
    ),
    "whisper": ("bench.whisper", "whisper: direct mesh vs lobby relay, 20 ms per link"),
    "fanout": ("bench.fanout", "lobby fan-out: server CPU per chat recipient"),
    "fanout_cluster": ("bench.fanout_cluster", "lobby fan-out over 3 processes (Redis) vs 1"),
    "connections": ("bench.connections", "connections: authenticated WebSockets, RSS each"),
    "rest": ("bench.rest", "REST: GET /api/world/state requests per second"),
    "login_storm": ("bench.login_storm", "login storm: /api/status p99 during logins"),
    "stun": ("bench.stun", "STUN/TURN: codec vs aioice, Binding round trip, NAT lab"),
    "natlab_punch": (
        "bench.natlab_punch",
        "hole punching and TURN in the NAT lab: pairing to direct, direct/TURN/connected per case",
    ),
    "area": ("bench.area", "one area: 16 peers at 30 Hz, age of each view"),
    "handshake_flood": (
        "bench.handshake_flood",
        "handshake flood: honest connect time, idle vs 1,000 garbage Initials/s",
    ),
    "reconnect_storm": (
        "bench.reconnect_storm",
        "reconnect storm: N clients back and chatting after a lobby restart",
    ),
    "reconnect_cluster": (
        "bench.reconnect_cluster",
        "reconnect storm through HAProxy: N clients of a killed lobby process back on the others",
    ),
}

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: CI's ceiling for the whole quick run is two minutes; past this, later benchmarks are skipped
#: (loudly) rather than letting a slow machine fail the build.
QUICK_BUDGET_S = 110.0


def _run_one(name: str, quick: bool) -> tuple[dict[str, Any], bool]:
    """Run one benchmark; returns its result and whether it crashed."""
    module_name, title = BENCHMARKS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return skip_result(name, title, f"{module_name} is not written yet"), False
        return skip_result(name, title, f"cannot import {exc.name}"), False
    except ImportError as exc:
        return skip_result(name, title, f"import failed: {exc}"), False
    try:
        raw = module.run(quick)
    except Skip as exc:
        return skip_result(name, title, str(exc)), False
    except Exception:
        result = skip_result(name, title, "crashed")
        result["error"] = traceback.format_exc()
        return result, True
    return normalize(name, title, raw), False


def normalize(name: str, title: str, raw: Any) -> dict[str, Any]:
    """Accept the common shape, or any dict of figures (flattened into rows)."""
    if not isinstance(raw, dict):
        return {**skip_result(name, title, "returned no dict"), "raw": repr(raw)[:500]}
    if "rows" in raw:
        out = dict(raw)
        out.setdefault("name", name)
        out.setdefault("title", title)
        out.setdefault("figures", {})
        out.setdefault("notes", [])
        out.setdefault("skipped", None)
        return out
    rows: list[dict[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, bool) or value is None:
            rows.append({"metric": prefix, "value": value, "met": value})
        elif isinstance(value, int | float | str):
            rows.append({"metric": prefix, "value": value})

    walk("", raw)
    return {
        "name": name,
        "title": title,
        "rows": rows,
        "figures": {},
        "notes": [],
        "skipped": raw.get("skipped") if isinstance(raw.get("skipped"), str) else None,
        "raw": raw,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value == 0:
            return "0"
        mag = abs(value)
        if mag >= 1000:
            return f"{value:,.0f}"
        if mag >= 10:
            return f"{value:.1f}"
        if mag >= 0.01:
            return f"{value:.3g}"
        return f"{value:.2e}"
    return str(value)


def _row_cells(r: dict[str, Any]) -> list[str]:
    value = _fmt(r.get("value"))
    if r.get("unit"):
        value = f"{value} {r['unit']}"
    baseline = "-"
    if r.get("baseline") is not None:
        baseline = _fmt(r["baseline"])
        if r.get("baseline_name"):
            baseline = f"{baseline} ({r['baseline_name']})"
    ratio = _fmt(r.get("ratio"))
    if r.get("ratio") is not None:
        ratio += "x"
    met = r.get("met")
    return [
        str(r.get("loop", "-")),
        str(r.get("metric", "")),
        value,
        baseline,
        ratio,
        str(r.get("target") or "-"),
        "-" if met is None else ("met" if met else "MISSED"),
    ]


HEADER = ["loop", "figure", "value", "baseline (same run)", "ratio", "target", ""]


def to_text(results: list[dict[str, Any]]) -> str:
    """A plain-text table of every result."""
    lines: list[str] = []
    for res in results:
        load = res.get("loadavg_1min") or [math.nan, math.nan]
        others = (res.get("machine_cpu") or {}).get("others_cores", math.nan)
        lines.append(
            f"== {res['name']}: {res['title']}  ({res.get('seconds', 0):.1f} s, "
            f"load avg {load[0]:.1f} -> {load[1]:.1f}, other processes {others:.2f} cores)"
        )
        if res.get("skipped"):
            lines.append(f"   skipped: {res['skipped']}")
        if res.get("error"):
            lines.append("   CRASHED:\n" + res["error"])
        cells = [_row_cells(r) for r in res.get("rows", [])]
        if cells:
            widths = [max(len(c[i]) for c in [HEADER, *cells]) for i in range(len(HEADER))]
            for c in [HEADER, *cells]:
                lines.append("   " + "  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))
        for note in res.get("notes", []):
            lines.append(f"   note: {note}")
    return "\n".join(lines)


def to_markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The markdown table pasted into README.md's performance section."""
    out = [
        f"Measured {meta['date']} on {meta['machine']} (commit {meta['commit']}, "
        f"{'quick' if meta['quick'] else 'full'} mode, loops: {', '.join(meta['loops'])}).",
        "",
        "| benchmark | " + " | ".join(HEADER[:-1]) + " | met |",
        "|---" * (len(HEADER) + 1) + "|",
    ]
    notes: list[str] = []
    for res in results:
        if res.get("skipped") and not res.get("rows"):
            out.append(f"| {res['name']} | - | skipped: {res['skipped']} |  |  |  |  |  |")
            continue
        for r in res.get("rows", []):
            out.append("| " + " | ".join([res["name"], *_row_cells(r)]) + " |")
        if res.get("skipped"):
            out.append(
                f"| {res['name']} | - | product part skipped: {res['skipped']} |" + "  |" * 5
            )
        notes += [f"- {res['name']}: {n}" for n in res.get("notes", [])]
    loads = [
        f"{res['name']} {res['loadavg_1min'][0]:.1f}->{res['loadavg_1min'][1]:.1f}"
        for res in results
        if res.get("loadavg_1min")
    ]
    if loads:
        notes.append(f"- machine load average (1 min) around each benchmark: {', '.join(loads)}")
    others = [
        f"{res['name']} {res['machine_cpu']['others_cores']:.2f}"
        for res in results
        if res.get("machine_cpu")
    ]
    if others:
        notes.append(
            "- cores used by processes outside the benchmark (of "
            f"{os.cpu_count()}), on average over each benchmark: {', '.join(others)}"
        )
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall, machine busy CPU seconds, CPU seconds of this process and its reaped children)."""
    import resource

    busy = math.nan
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    ours = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        ours += ru.ru_utime + ru.ru_stime
    return time.perf_counter(), busy, ours


def _machine_share(before: tuple[float, float, float]) -> dict[str, float]:
    """Cores busy on the machine during a benchmark: ours and everything else's."""
    after = _cpu_snapshot()
    wall = after[0] - before[0]
    if wall <= 0:
        return {}
    busy = (after[1] - before[1]) / wall
    ours = (after[2] - before[2]) / wall
    return {"busy_cores": busy, "ours_cores": ours, "others_cores": max(0.0, busy - ours)}


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def _meta(quick: bool) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "commit": commit or "?",
        "quick": quick,
        "loops": list(LOOPS),
    }


def _note_machine(
    result: dict[str, Any], t0: float, load0: float, cpu0: tuple[float, float, float]
) -> None:
    """Stamp ``result`` with its duration and how busy the machine was while it ran."""
    result["seconds"] = time.perf_counter() - t0
    # Other work on the machine skews latency figures most: keep the load next to them.
    result["loadavg_1min"] = [load0, _loadavg()]
    result["machine_cpu"] = _machine_share(cpu0)


def main_one(name: str, argv: list[str] | None = None) -> None:
    """``python -m bench.<name> [--quick]``: one benchmark alone, its table printed.

    Nothing is written to ``bench/results``; that is ``main``'s job.
    """
    module_name, title = BENCHMARKS[name]
    parser = argparse.ArgumentParser(prog=f"python -m {module_name}", description=title)
    parser.add_argument("--quick", action="store_true", help="small run (CI)")
    args = parser.parse_args(argv)
    t0, load0, cpu0 = time.perf_counter(), _loadavg(), _cpu_snapshot()
    result, crashed = _run_one(name, args.quick)
    _note_machine(result, t0, load0, cpu0)
    print(to_text([result]))
    if crashed:
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="everything small (CI)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)

    names = args.only or list(BENCHMARKS)
    meta = _meta(args.quick)
    print(f"bench: {', '.join(names)} ({'quick' if args.quick else 'full'}; {meta['machine']})")
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    crashed = False
    for name in names:
        t0 = time.perf_counter()
        load0 = _loadavg()
        cpu0 = _cpu_snapshot()
        if args.quick and t0 - started > QUICK_BUDGET_S:
            module_name, title = BENCHMARKS[name]
            reason = f"quick time budget ({QUICK_BUDGET_S:g} s) already spent"
            result, broke = skip_result(name, title, reason), False
            print(f"bench: WARNING {name} {reason}", file=sys.stderr)
        else:
            result, broke = _run_one(name, args.quick)
        _note_machine(result, t0, load0, cpu0)
        crashed |= broke
        results.append(result)
        print(to_text([result]), flush=True)
    total = time.perf_counter() - started
    meta["seconds"] = total
    missed = [
        f"{res['name']}/{r.get('loop', '-')}/{r.get('metric')}"
        for res in results
        for r in res.get("rows", [])
        if r.get("met") is False
    ]
    print(f"\nbench: {len(results)} benchmarks in {total:.1f} s; targets missed: {len(missed)}")
    for item in missed:
        print(f"  missed: {item}")

    json_path, md_path = args.json, args.markdown
    if not args.quick:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        json_path = json_path or RESULTS_DIR / f"{stamp}.json"
        md_path = md_path or RESULTS_DIR / "latest.md"
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
        print(f"bench: wrote {json_path}")
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(to_markdown(results, meta))
        print(f"bench: wrote {md_path}")
    if crashed:
        print("bench: a benchmark crashed (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
