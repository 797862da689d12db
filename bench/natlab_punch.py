"""Hole punching in the NAT lab: pairing-to-direct time, and direct-path success per NAT case.

``python -m bench.natlab_punch`` (full mode only; root, ``ip`` and ``nft``) builds
the NAT lab (:mod:`tests.netlab`: an internet namespace with ``python -m lobby``,
home routers with nftables masquerade) and runs real ``NetworkClient`` players
(:mod:`tests.natlab_punch_player`) behind them. One trial: two fresh players
log in and select (each learns its server-reflexive address by STUN over its
mesh socket and registers it), the first moves to a neighbouring location (so
nothing pairs them yet), then asks the lobby to pair them for a whisper
(``POST /api/peers/{id}/pair``: both get each other's candidates at once) and
both punch. A trial succeeds when both report the other's direct connection
authenticated within :data:`WINDOW` seconds.

- pairing -> direct: from just before the pair request to the moment the later
  of the two sides has the authenticated link (its first authenticated byte
  can flow), p50/p99 over 20 cone/cone pairings run one after another, no link
  delay added. Goal: p99 < 1 s.
- success matrix: the fraction of 20 trials that opened a direct path, for
  cone/cone (different routers), two players behind one cone NAT, symmetric/cone
  and symmetric/symmetric. The cone/cone trials are the timed ones; the others
  run five pairs at a time.

Skipped (with the reason) without root or ``nft``, and in ``--quick`` mode.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from bench._common import make_result, percentile, row, skip_result
from bench.run import main_one

__all__ = ["CASES", "WINDOW", "run"]

TITLE = "hole punching in the NAT lab: pairing to direct, success per NAT case"
WINDOW = 6.0
"""Seconds a trial waits for the direct link (the players dial for 1 s a round)."""
TRIALS = 20
BATCH = 5
CASES = ("cone/cone", "same NAT", "symmetric/cone", "symmetric/symmetric")


async def _player(lab: Any, host: Any, lobby: Any, name: str) -> Any:
    from tests.netlab import LabPlayer

    config = {"p2p_host": "0.0.0.0", "p2p_port": 0, "mesh": {}}  # noqa: S104 - lab host
    agent = await lab.spawn(
        host.namespace,
        ["-m", "tests.natlab_punch_player", lobby.url, json.dumps(config)],
        label=f"{name}@{host.namespace}",
    )
    assert await agent.read(60) == {"event": "ready"}
    return LabPlayer(agent, host, name)


async def _trial(lab: Any, lobby: Any, hosts: tuple[Any, Any], tag: str) -> float | None:
    """One pairing; seconds from the pair request to both sides linked, None if never."""
    from tests.natlab_game import unique_name

    a = await _player(lab, hosts[0], lobby, unique_name(f"A{tag}"))
    b = await _player(lab, hosts[1], lobby, unique_name(f"B{tag}"))
    try:
        await a.play()
        await a.call("away")
        await b.play()
        await asyncio.gather(a.call("learned"), b.call("learned"))
        started = (await a.call("pair", target=b.character_id))["at"]
        try:
            links = await asyncio.gather(
                a.event(within=WINDOW, event="linked", character_id=b.character_id),
                b.event(within=WINDOW, event="linked", character_id=a.character_id),
            )
        except AssertionError:
            return None
        return float(max(link["at"] for link in links) - started)
    finally:
        await asyncio.gather(a.close(), b.close())


async def _case_hosts(lab: Any, case: str) -> tuple[Any, Any]:
    from tests.netlab import NatType

    if case == "same NAT":
        first, second = lab.shared_home(2, NatType.CONE)
        return first, second
    nat_a, nat_b = (NatType(kind) for kind in case.split("/"))
    first, second = lab.homes(nat_a, nat_b)
    return first, second


async def _lab(trials: int) -> dict[str, Any]:
    from tests.netlab import NatLab

    results: dict[str, list[float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with NatLab() as lab:
            lobby = await lab.lobby(Path(tmp) / "lobby")
            for case in CASES:
                hosts = await _case_hosts(lab, case)
                outcomes: list[float | None] = []
                if case == "cone/cone":  # the timed pairings: one at a time
                    for index in range(trials):
                        outcomes.append(await _trial(lab, lobby, hosts, f"c{index}"))
                else:
                    for start in range(0, trials, BATCH):
                        tags = [f"{case[:2]}{i}" for i in range(start, min(trials, start + BATCH))]
                        outcomes += await asyncio.gather(
                            *(_trial(lab, lobby, hosts, tag.replace("/", "")) for tag in tags)
                        )
                results[case] = outcomes
    return {"results": results}


def run(quick: bool) -> dict[str, Any]:
    from tests.netlab import natlab_unavailable_reason

    if quick:
        return skip_result("natlab_punch", TITLE, "full mode only (spawns 160 player processes)")
    reason = natlab_unavailable_reason()
    if reason is not None:
        return skip_result("natlab_punch", TITLE, f"NAT lab unavailable: {reason}")
    measured = asyncio.run(_lab(TRIALS))["results"]
    timed = [t * 1000 for t in measured["cone/cone"] if t is not None]
    rows = [
        row(
            loop="asyncio",
            metric=f"pairing -> authenticated direct link p{q} (cone/cone, {len(timed)} pairings)",
            value=percentile(timed, q),
            unit="ms",
            target=("value", "<", 1000.0) if q == 99 else None,
        )
        for q in (50, 99)
    ]
    figures: dict[str, Any] = {}
    for case in CASES:
        outcomes = measured[case]
        fraction = sum(1 for t in outcomes if t is not None) / len(outcomes)
        figures[case] = {"direct": fraction, "trials": len(outcomes)}
        rows.append(
            row(
                loop="asyncio",
                metric=f"direct-path success, {case} ({len(outcomes)} trials)",
                value=fraction,
                unit="fraction",
                target=("value", ">=", 1.0) if case in ("cone/cone", "same NAT") else None,
            )
        )
    notes = [
        "each trial: two fresh NetworkClient processes, STUN-learned srflx registered, then a "
        "whisper pairing; success = both sides authenticated a direct link within "
        f"{WINDOW:g} s.",
        "symmetric (masquerade fully-random) maps the one mesh socket to a new random port per "
        "destination: the mapping STUN saw is not the one the punch uses, and the other router "
        "filters by address and port, so no direct path opens; those pairs need TURN.",
    ]
    return make_result("natlab_punch", TITLE, rows, figures=figures, notes=notes)


if __name__ == "__main__":
    main_one("natlab_punch")
