"""Hole punching and TURN in the NAT lab: pairing to direct, direct / TURN / connected per case.

``python -m bench.natlab_punch`` (full mode only; root, ``ip``, ``nft`` and coturn's
``turnserver``) builds the NAT lab (:mod:`tests.netlab`: an internet namespace
with ``python -m lobby`` and coturn beside it, the lobby issuing its time-limited
credentials; home routers with nftables masquerade) and runs real
``NetworkClient`` players (:mod:`tests.natlab_punch_player`) behind them. One
trial: two fresh players log in and select (each learns its server-reflexive
address by STUN over its mesh socket and registers it), the first moves to a
neighbouring location (so nothing pairs them yet), then asks the lobby to pair
them for a whisper (``POST /api/peers/{id}/pair``: both get each other's
candidates at once) and both punch. A player that has no link :data:`WINDOW`
seconds after the pairing (its ``turn_after``) allocates on coturn and the two
dial each other's relayed address. The trial ends when both sides hold the
authenticated link (or at :data:`CONNECT_WINDOW`) and records the path each
side then uses.

- pairing -> direct: from just before the pair request to the moment the later
  of the two sides has the authenticated link (its first authenticated byte
  can flow), p50/p99 over 20 cone/cone pairings run one after another, no link
  delay added. Goal: p99 < 1 s.
- per case, over 20 trials: the fraction that opened a direct path within
  :data:`WINDOW` (both sides ``"direct"``), the fraction connected over TURN
  (both sides ``"turn"``), and the fraction connected at all (both sides linked,
  by any path, within :data:`CONNECT_WINDOW`; goal 100 % in every case), for
  cone/cone (different routers), two players behind one cone NAT,
  symmetric/cone and symmetric/symmetric. The cone/cone trials are the timed
  ones; the others run five pairs at a time.

Skipped (with the reason) without root, ``nft`` or ``turnserver``, and in ``--quick`` mode.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import make_result, percentile, row, skip_result
from bench.run import main_one

__all__ = ["CASES", "CONNECT_WINDOW", "WINDOW", "Trial", "run"]

TITLE = "hole punching and TURN in the NAT lab: pairing to direct, direct/TURN/connected per case"
WINDOW = 6.0
"""Seconds a trial waits for the direct link (the players dial for 1 s a round); also the
players' ``turn_after``: TURN is tried only once the direct path had this long."""
CONNECT_WINDOW = WINDOW + 10.0
"""Seconds from the pairing a trial waits for both sides to be linked by any path."""
TRIALS = 20
BATCH = 5
LOG_TAIL = 2000
CASES = ("cone/cone", "same NAT", "symmetric/cone", "symmetric/symmetric")


@dataclass(frozen=True, slots=True)
class Trial:
    """What one pairing got: ``seconds`` from the pair request until both sides held the
    authenticated link, and the ``paths`` each side then used; None for a side never
    linked within :data:`CONNECT_WINDOW`."""

    seconds: float | None
    paths: tuple[str | None, str | None]
    logs: str = ""
    """For a pair not connected: the last lines both players logged (why)."""

    @property
    def connected(self) -> bool:
        return self.seconds is not None and None not in self.paths

    def by(self, path: str) -> bool:
        """Connected with both sides on ``path`` (a direct path: within :data:`WINDOW`)."""
        if not self.connected or self.paths != (path, path):
            return False
        return path != "direct" or (self.seconds is not None and self.seconds <= WINDOW)


async def _player(lab: Any, host: Any, lobby: Any, name: str) -> Any:
    from tests.netlab import LabPlayer

    config = {
        "p2p_host": "0.0.0.0",  # noqa: S104 - lab host
        "p2p_port": 0,
        "mesh": {"turn_after": WINDOW},
    }
    agent = await lab.spawn(
        host.namespace,
        ["-m", "tests.natlab_punch_player", lobby.url, json.dumps(config)],
        label=f"{name}@{host.namespace}",
    )
    assert await agent.read(60) == {"event": "ready"}
    return LabPlayer(agent, host, name)


async def _linked(player: Any, other: Any) -> dict[str, Any] | None:
    """``player``'s first link to ``other`` (any path), None if none within the window."""
    try:
        found: dict[str, Any] = await player.event(
            within=CONNECT_WINDOW, event="linked", character_id=other.character_id
        )
    except AssertionError:
        return None
    return found


async def _trial(lab: Any, lobby: Any, hosts: tuple[Any, Any], tag: str) -> Trial:
    """One pairing (see the module docstring)."""
    from tests.natlab_game import unique_name

    a = await _player(lab, hosts[0], lobby, unique_name(f"A{tag}"))
    b = await _player(lab, hosts[1], lobby, unique_name(f"B{tag}"))
    try:
        await a.play()
        await a.call("away")
        await b.play()
        await asyncio.gather(a.call("learned"), b.call("learned"))
        started = (await a.call("pair", target=b.character_id))["at"]
        links = await asyncio.gather(_linked(a, b), _linked(b, a))
        paths = (
            None if links[0] is None else links[0]["path"],
            None if links[1] is None else links[1]["path"],
        )
        if links[0] is not None and links[1] is not None:
            return Trial(float(max(links[0]["at"], links[1]["at"]) - started), paths)
        logs = await asyncio.gather(a.close(), b.close())
        return Trial(None, paths, "\n".join(log[-LOG_TAIL:] for log in logs))
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

    results: dict[str, list[Trial]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with NatLab() as lab:
            lobby = await lab.lobby(Path(tmp) / "lobby", turn=True)
            for case in CASES:
                hosts = await _case_hosts(lab, case)
                outcomes: list[Trial] = []
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
    reason = natlab_unavailable_reason(turn=True)
    if reason is not None:
        return skip_result("natlab_punch", TITLE, f"NAT lab unavailable: {reason}")
    measured: dict[str, list[Trial]] = asyncio.run(_lab(TRIALS))["results"]
    timed = [t.seconds * 1000 for t in measured["cone/cone"] if t.by("direct") and t.seconds]
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
        count = len(outcomes)
        shares = {
            "direct": sum(t.by("direct") for t in outcomes) / count,
            "turn": sum(t.by("turn") for t in outcomes) / count,
            "connected": sum(t.connected for t in outcomes) / count,
        }
        over_turn = [t.seconds * 1000 for t in outcomes if t.by("turn") and t.seconds]
        figures[case] = {
            **shares,
            "trials": count,
            "paths": [list(t.paths) for t in outcomes],
            "pairing_to_turn_p50_ms": percentile(over_turn, 50),
            "not_connected_logs": [t.logs for t in outcomes if not t.connected],
        }
        cone_side = case in ("cone/cone", "same NAT")
        for share, what, target in (
            ("direct", f"direct within {WINDOW:g} s", 1.0 if cone_side else None),
            ("turn", "over TURN", None),
            ("connected", f"connected (any path) within {CONNECT_WINDOW:g} s", 1.0),
        ):
            rows.append(
                row(
                    loop="asyncio",
                    metric=f"{case}: {what} ({count} trials)",
                    value=shares[share],
                    unit="fraction",
                    target=("value", ">=", target) if target is not None else None,
                )
            )
    notes = [
        "each trial: two fresh NetworkClient processes, STUN-learned srflx registered, then a "
        f"whisper pairing; direct = both sides on an authenticated direct link within "
        f"{WINDOW:g} s; with none by then each allocates on coturn (turn_after {WINDOW:g} s) "
        f"and they dial each other's relayed address; connected = both sides linked by any "
        f"path within {CONNECT_WINDOW:g} s.",
        "symmetric (masquerade fully-random) maps the one mesh socket to a new random port per "
        "destination: the mapping STUN saw is not the one the punch uses, and the other router "
        "filters by address and port, so no direct path opens; those pairs go by TURN.",
    ]
    return make_result("natlab_punch", TITLE, rows, figures=figures, notes=notes)


if __name__ == "__main__":
    main_one("natlab_punch")
