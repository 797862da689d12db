"""NAT-lab cases 1-3: the direct path through home routers, punched by real clients.

Every player is a real ``NetworkClient`` process on a lab host (:mod:`tests.netlab`,
:mod:`tests.netlab_player`); the lobby (with its STUN responder on its own port
number) runs in the internet namespace. At select each client learns its
server-reflexive address by STUN over its mesh socket and registers it; the
lobby pairs players at the same location and hands both each other's
candidates at once; both punch (:meth:`mesh.node.PeerNode.punch`).

1. both behind endpoint-independent NAT (plain masquerade), different routers:
   a direct link to the other's public mapping;
2. two players behind the same NAT: a direct link to the other's LAN address;
3. one behind symmetric NAT (``masquerade fully-random``), the other cone: no
   direct link opens, and chat goes by the relay. Measured reason: the symmetric
   router maps the player's one socket to a new random port for each
   destination, so the mapping the lobby's STUN saw (and handed to the cone
   player) is not the one the punch towards the cone player uses; the cone
   router filters by address and port, so it drops what arrives from that new
   port, and the symmetric router drops what the cone player sends to the
   STUN-seen one (that mapping only accepts the lobby). The bench's success
   matrix (``bench/natlab_punch.py``) counts it over 20 trials.

Each case checks whisper, party chat and movement both ways, with the path.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import LabWithLobby
from tests.natlab_game import (
    meet,
    movement_both_ways,
    movement_unavailable,
    party_chat_both_ways,
    unique_name,
    whisper_both_ways,
)
from tests.netlab import LabPlayer, NatType

__all__: list[str] = []

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

PUNCH_WINDOW = 8.0
"""How long case 3 watches for a direct link: several punch rounds (a dial lasts the
lab's 1 s dial timeout; the srflx update brings a second one)."""


async def _linked(a: LabPlayer, b: LabPlayer) -> tuple[list[object], list[object]]:
    """Both sides report the other connected; the addresses each connected to."""
    seen_a = await a.event(event="peer", kind="connected", character_id=b.character_id)
    seen_b = await b.event(event="peer", kind="connected", character_id=a.character_id)
    return seen_a["address"], seen_b["address"]


async def _quit(*players: LabPlayer) -> None:
    for player in players:
        log = await player.close()
        assert "Traceback" not in log, log
        assert player.agent.process.returncode == 0, log


async def test_case1_cone_nats_on_different_routers_punch_a_direct_path(
    natlab: LabWithLobby,
) -> None:
    lab, lobby = natlab
    ann_host, ben_host = lab.homes(NatType.CONE, NatType.CONE)
    ann = await lab.player(ann_host, lobby, unique_name("Ann"))
    ben = await lab.player(ben_host, lobby, unique_name("Ben"))
    await meet(ann, ben)
    to_ben, to_ann = await _linked(ann, ben)
    # each reached the other at its router's public address: a punched mapping
    assert to_ben[0] == ben_host.router.wan_address, to_ben
    assert to_ann[0] == ann_host.router.wan_address, to_ann
    # the lobby handed each the other's host and server-reflexive candidates
    candidates = await ann.call("candidates")
    kinds = {c["kind"]: c["address"] for c in candidates[str(ben.character_id)]}
    assert kinds == {"host": ben_host.address, "srflx": ben_host.router.wan_address}

    assert await whisper_both_ways(ann, ben, "case 1") == ("direct", "direct")
    assert await party_chat_both_ways(ann, ben, "case 1") == ("direct", "direct")
    await movement_both_ways(ann, ben)
    for player, other in ((ann, ben), (ben, ann)):
        quality = await player.call("quality", target=other.character_id)
        assert quality["path"] == "direct", quality
    await _quit(ann, ben)
    assert "Traceback" not in lobby.log, lobby.log


async def test_case2_players_behind_one_nat_connect_on_their_lan(natlab: LabWithLobby) -> None:
    lab, lobby = natlab
    ann_host, ben_host = lab.shared_home(2, NatType.CONE)
    ann = await lab.player(ann_host, lobby, unique_name("Ann"))
    ben = await lab.player(ben_host, lobby, unique_name("Ben"))
    await meet(ann, ben)
    to_ben, to_ann = await _linked(ann, ben)
    # their public address is the same router: the host candidate (the LAN) is the path
    assert to_ben[0] == ben_host.address, to_ben
    assert to_ann[0] == ann_host.address, to_ann

    assert await whisper_both_ways(ann, ben, "case 2") == ("direct", "direct")
    assert await party_chat_both_ways(ann, ben, "case 2") == ("direct", "direct")
    await movement_both_ways(ann, ben)
    await _quit(ann, ben)


async def test_case3_symmetric_against_cone_opens_no_direct_path(natlab: LabWithLobby) -> None:
    lab, lobby = natlab
    sym_host, cone_host = lab.homes(NatType.SYMMETRIC, NatType.CONE)
    sam = await lab.player(sym_host, lobby, unique_name("Sam"))
    cora = await lab.player(cone_host, lobby, unique_name("Cora"))
    await meet(sam, cora)
    # both got the other's public candidate and punched it...
    await _until_srflx(sam, cora, cone_host.router.wan_address)
    await _until_srflx(cora, sam, sym_host.router.wan_address)
    # ... and no direct link opens in the whole punch window
    with pytest.raises(AssertionError, match="no events"):
        await sam.event(
            within=PUNCH_WINDOW, event="peer", kind="connected", character_id=cora.character_id
        )
    assert cora.events(event="peer", kind="connected") == []
    assert await sam.call("peers") == [] and await cora.call("peers") == []

    # without TURN in this lab, chat takes the lobby relay both ways; movement says so
    assert await whisper_both_ways(sam, cora, "case 3") == ("relay", "relay")
    assert await party_chat_both_ways(sam, cora, "case 3") == ("relay", "relay")
    await movement_unavailable(sam, cora)
    await _quit(sam, cora)


async def _until_srflx(player: LabPlayer, other: LabPlayer, address: str) -> None:
    """Poll until ``player`` holds ``other``'s server-reflexive candidate at ``address``
    (the lobby forwards it after ``other``'s STUN answer; at most 10 s)."""
    for _ in range(200):
        candidates = (await player.call("candidates")).get(str(other.character_id), [])
        if any(c["kind"] == "srflx" and c["address"] == address for c in candidates):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{player.name} never got {other.name}'s srflx candidate")
