"""REST: ``GET /api/world/state`` requests per second, lobby vs a bare aiohttp JSON handler.

The load comes from ``bench._httpgen`` in its own process: raw keep-alive sockets, requests
pipelined, one regex per response. It reports its own CPU share; below ~0.9 of a core it was
not the bottleneck. The bare baseline serves the very document the lobby answered, with
``web.json_response``. Target: lobby >= 0.6x bare aiohttp.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from bench._bare import json_server_child
from bench._common import LOOPS, Skip, make_result, row
from bench._httpgen import build_request, http_child
from bench._lobby import BENCH_LIMITS, FAST_HASH, lobby_skip_reason, make_accounts, start_lobby
from bench._proc import Child

__all__ = ["run"]

TITLE = "REST: GET /api/world/state requests per second"
PATH = "/api/world/state"
CONNECTIONS = int(os.environ.get("BENCH_REST_CONNECTIONS", "8"))
DEPTH = int(os.environ.get("BENCH_REST_DEPTH", "4"))

#: Stand-in document while the lobby has not landed (shaped like a world state).
STAND_IN: dict[str, Any] = {
    "current_reality": "prime",
    "shards": [
        {"shard_id": i, "shard_name": f"Shard {i}", "faction": None, "location_id": i}
        for i in range(12)
    ],
    "factions": ["Crimson Covenant", "Azure Order", "Verdant Circle"],
    "aetherfall": None,
}


def _measure(
    port: int, headers: dict[str, str], duration: float, server: Child | None = None
) -> dict[str, Any]:
    opts = {
        "host": "127.0.0.1",
        "port": port,
        "requests": [build_request("GET", PATH, "127.0.0.1", port, headers)],
        "connections": CONNECTIONS,
        "depth": DEPTH,
    }
    with Child(http_child, opts, kind="uvloop" if "uvloop" in LOOPS else "asyncio") as gen:
        gen.recv(30)
        gen.call("run", min(0.5, duration / 3), timeout=60)  # warm-up
        if server is not None:
            server.profile()
            u0 = server.call("usage")
        result: dict[str, Any] = gen.call("run", duration, timeout=duration + 60)
        if server is not None:
            u1 = server.call("usage")
            server.profile(f"rest-{server.name}")
            result["server_cpu_share"] = (u1["cpu"] - u0["cpu"]) / (u1["wall"] - u0["wall"])
    return result


def _get(port: int, token: str) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - 127.0.0.1 only
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise Skip(f"the lobby has no GET {PATH} yet") from exc
        raise


def run(quick: bool) -> dict[str, Any]:
    duration = 1.5 if quick else 10.0
    skip = lobby_skip_reason()
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    notes = [
        f"generator: {CONNECTIONS} keep-alive connections x {DEPTH} pipelined requests, "
        "its own process; lobby per-address/per-account REST limits raised (all load is "
        "from 127.0.0.1)."
    ]
    for kind in LOOPS:
        document: Any = STAND_IN
        lobby_fig: dict[str, Any] | None = None
        if skip is None:
            lobby, port = start_lobby({**BENCH_LIMITS, **FAST_HASH}, kind)
            try:
                token = make_accounts(port, 1, prefix="rest")[0]
                document = _get(port, token)
                lobby_fig = _measure(port, {"Authorization": f"Bearer {token}"}, duration, lobby)
            finally:
                lobby.close()
        with Child(json_server_child, PATH, document, kind=kind, name="bare-json") as bare:
            _, bare_port = bare.recv(30)
            bare_fig = _measure(bare_port, {}, duration, bare)
        figures[kind] = {"bare": bare_fig, "lobby": lobby_fig}
        if lobby_fig is None:
            rows.append(
                row(loop=kind, metric="bare aiohttp JSON", value=bare_fig["rate"], unit="req/s")
            )
            continue
        rows.append(
            row(
                loop=kind,
                metric="lobby GET /api/world/state",
                value=lobby_fig["rate"],
                unit="req/s",
                baseline=bare_fig["rate"],
                baseline_name="bare aiohttp",
                target=("ratio", ">=", 0.6),
            )
        )
        bad = {k: v for k, v in lobby_fig["statuses"].items() if int(k) != 200}
        if bad or lobby_fig["errors"]:
            notes.append(f"{kind}: non-200 answers {bad}, errors {lobby_fig['errors']}")
        for name, fig in (("lobby", lobby_fig), ("bare", bare_fig)):
            if fig["gen_cpu_share"] > 0.9:
                notes.append(
                    f"{kind}/{name}: generator used {fig['gen_cpu_share']:.2f} of a core: "
                    "it may have been the bottleneck"
                )
    return make_result("rest", TITLE, rows, figures=figures, notes=notes, skipped=skip)
