"""NAT-lab cases 3, 4 and 6: QUIC over the operator's TURN server, and a path cut mid-game.

Real ``NetworkClient`` processes (:mod:`tests.netlab_player`) behind home routers
in network namespaces; the lobby and coturn run in the lab's internet namespace,
and the lobby issues time-limited TURN credentials (``--turn-url``,
``--turn-secret``).

* Case 3, one player behind a symmetric NAT (``masquerade fully-random``), the
  other behind a cone NAT: both get the other's server-reflexive candidate and
  punch it, yet no direct path opens; TURN carries whispers, party chat and
  movement both ways, and both ends report the path ``"turn"``. Measured reason
  it stays at TURN: the symmetric router maps the player's one socket to a new
  random port for each destination, so the mapping the lobby's STUN saw (and
  handed to the cone player) is not the one the punch towards the cone player
  uses; the cone router filters by address and port, so it drops what arrives
  from that new port, and the symmetric router drops what the cone player sends
  to the STUN-seen one (that mapping only accepts the lobby). Port guessing
  (probes against a window of the hard side's ports) would need the symmetric
  side to open many mappings, i.e. many sockets; with one it is one port in
  ~64,000 (``docs/mesh-core.md``). The bench's matrix (``bench/natlab_punch.py``) counts
  direct, TURN and overall connectivity per case over 20 trials.
* Case 4, both players behind symmetric NATs (``masquerade fully-random``): no
  direct path can open (each NAT maps a new port per destination, so the
  addresses the lobby's STUN saw are not the ones the other side would need).
  ``turn_after`` seconds after the pairing, each client allocates on coturn,
  registers its relayed address, and dials the other's: whispers, party chat and
  movement flow both ways, and both ends report the path ``"turn"``.
* Case 6, two players behind cone NATs on a direct path mid-game: a router rule
  cuts it (:meth:`tests.netlab.NatLab.cut`). Within 5 s (the scenario's wait,
  not a speed threshold) traffic moves off it (to TURN, or the lobby relay for
  the whispers sent before TURN is up), every whisper is delivered once and
  acknowledged; once the rule is removed, traffic is back on ``"direct"``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import LabWithLobby
from tests.natlab_game import (
    connected_both_ways,
    meet,
    movement_both_ways,
    party_chat_both_ways,
    quit_cleanly,
    unique_name,
    whisper_both_ways,
)
from tests.netlab import Host, LabPlayer, NatLab, NatType
from tests.polling import eventually

__all__: list[str] = []

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

TURN_MESH: dict[str, Any] = {"turn_after": 2.0, "path_probe_interval": 0.5, "path_silence": 1.5}
MOVE_OFF_WITHIN = 5.0


async def _two_homes(
    natlab_turn: LabWithLobby, nat: NatType
) -> tuple[NatLab, list[Host], LabPlayer, LabPlayer]:
    """Ann and Ben, each behind a home router of kind ``nat``, in one party, connected."""
    lab, lobby = natlab_turn
    homes = lab.homes(nat, nat)
    ann = await lab.player(homes[0], lobby, unique_name("Ann"), mesh=TURN_MESH)
    ben = await lab.player(homes[1], lobby, unique_name("Ben"), mesh=TURN_MESH)
    await meet(ann, ben)
    # the link comes up by itself (over TURN: some seconds after the pairing)
    await connected_both_ways(ann, ben)
    return lab, homes, ann, ben


async def _assert_on_turn(a: LabPlayer, b: LabPlayer) -> None:
    """Both ends report the path ``"turn"`` to the other, with bytes both ways on it."""
    for player, other in ((a, b), (b, a)):
        quality = await player.call("quality", target=other.character_id)
        assert quality["path"] == "turn", quality
        assert quality["bytes_sent"] > 0 and quality["bytes_received"] > 0, quality


async def _path_of(player: LabPlayer, other: LabPlayer) -> str | None:
    quality = await player.call("quality", target=other.character_id)
    return None if quality is None else str(quality["path"])


async def test_case3_symmetric_against_cone_goes_by_turn(natlab_turn: LabWithLobby) -> None:
    lab, lobby = natlab_turn
    sym_host, cone_host = lab.homes(NatType.SYMMETRIC, NatType.CONE)
    sam = await lab.player(sym_host, lobby, unique_name("Sam"), mesh=TURN_MESH)
    cora = await lab.player(cone_host, lobby, unique_name("Cora"), mesh=TURN_MESH)
    await meet(sam, cora)
    # both got the other's public candidate and punched it...
    await eventually(lambda: _holds_srflx(sam, cora, cone_host.router.wan_address))
    await eventually(lambda: _holds_srflx(cora, sam, sym_host.router.wan_address))
    # ... yet what comes up is a TURN link: neither end reached the other's router
    routers = {sym_host.router.wan_address, cone_host.router.wan_address}
    for player, other in ((sam, cora), (cora, sam)):
        link = await player.event(event="peer", kind="connected", character_id=other.character_id)
        address = link["address"]
        assert isinstance(address, str) or address[0] not in routers, link
        assert await _path_of(player, other) == "turn"

    assert await whisper_both_ways(sam, cora, "case 3") == ("turn", "turn")
    assert await party_chat_both_ways(sam, cora, "case 3") == ("turn", "turn")
    await movement_both_ways(sam, cora)
    await _assert_on_turn(sam, cora)
    for player in (sam, cora):
        # no direct path ever opened beside it, the whole game long
        assert player.events(event="path", path="direct") == [], player.events(event="path")
        assert len(player.events(event="peer", kind="connected")) == 1
    await quit_cleanly(lobby, sam, cora)


async def test_case4_both_symmetric_reach_each_other_over_turn(
    natlab_turn: LabWithLobby,
) -> None:
    _, _, ann, ben = await _two_homes(natlab_turn, NatType.SYMMETRIC)
    assert await whisper_both_ways(ann, ben, "case 4") == ("turn", "turn")
    assert await party_chat_both_ways(ann, ben, "case 4") == ("turn", "turn")
    await movement_both_ways(ann, ben)
    await _assert_on_turn(ann, ben)
    await quit_cleanly(natlab_turn[1], ann, ben)


async def test_case6_a_cut_direct_path_moves_off_and_comes_back(
    natlab_turn: LabWithLobby,
) -> None:
    lab, (ann_host, ben_host), ann, ben = await _two_homes(natlab_turn, NatType.CONE)
    assert await whisper_both_ways(ann, ben, "case 6 before") == ("direct", "direct")
    await movement_both_ways(ann, ben)

    # mid-game, Ann's router drops everything to and from Ben's public address
    lab.cut(ann_host.router, ben_host.router.wan_address)
    # whispers sent at the cut, first on the dead link, are acknowledged by whichever path
    # carries them (TURN or relay), never failed, each delivered once
    during = asyncio.create_task(whisper_both_ways(ann, ben, "case 6 cut"))
    await ann.event(
        within=MOVE_OFF_WITHIN, event="path", character_id=ben.character_id, silent=True
    )
    await ben.event(
        within=MOVE_OFF_WITHIN, event="path", character_id=ann.character_id, silent=True
    )
    assert set(await during) <= {"turn", "relay"}, during.result()
    # once TURN is up, movement flows again and the quality says so
    await ann.event(event="path", character_id=ben.character_id, path="turn", silent=False)
    await ben.event(event="path", character_id=ann.character_id, path="turn", silent=False)
    assert await whisper_both_ways(ann, ben, "case 6 turn") == ("turn", "turn")
    await movement_both_ways(ann, ben)
    assert await _path_of(ann, ben) == "turn"

    # the rule goes: back to direct
    lab.restore(ann_host.router, ben_host.router.wan_address)
    await ann.event(event="path", character_id=ben.character_id, path="direct", silent=False)
    await ben.event(event="path", character_id=ann.character_id, path="direct", silent=False)
    assert await whisper_both_ways(ann, ben, "case 6 after") == ("direct", "direct")
    assert await _path_of(ann, ben) == "direct"
    # one connection each way the whole time: the peers never left
    assert len(ann.events(event="peer", kind="disconnected")) == 0
    assert len(ben.events(event="peer", kind="disconnected")) == 0
    await quit_cleanly(natlab_turn[1], ann, ben)


async def _holds_srflx(player: LabPlayer, other: LabPlayer, address: str) -> bool:
    """``player`` holds ``other``'s server-reflexive candidate at ``address`` (the lobby
    forwards it after ``other``'s STUN answer)."""
    candidates = (await player.call("candidates")).get(str(other.character_id), [])
    return any(c["kind"] == "srflx" and c["address"] == address for c in candidates)
