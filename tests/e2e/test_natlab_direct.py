"""NAT-lab cases 1 and 2: the direct path through home routers, punched by real clients.

Every player is a real ``NetworkClient`` process on a lab host (:mod:`tests.netlab`,
:mod:`tests.netlab_player`); the lobby (with its STUN responder on its own port
number) runs in the internet namespace. At select each client learns its
server-reflexive address by STUN over its mesh socket and registers it; the
lobby pairs players at the same location and hands both each other's
candidates at once; both punch (:meth:`mesh.node.PeerNode.punch`).

1. both behind endpoint-independent NAT (plain masquerade), different routers:
   a direct link to the other's public mapping;
2. two players behind the same NAT: a direct link to the other's LAN address;
Case 3 (symmetric against cone: no direct path, TURN carries the game) runs on
the lab with coturn, in ``test_natlab_turn.py``.

Each case checks whisper, party chat and movement both ways, with the path.
"""

from __future__ import annotations

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
from tests.netlab import NatType

__all__: list[str] = []

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]


async def test_case1_cone_nats_on_different_routers_punch_a_direct_path(
    natlab: LabWithLobby,
) -> None:
    lab, lobby = natlab
    ann_host, ben_host = lab.homes(NatType.CONE, NatType.CONE)
    ann = await lab.player(ann_host, lobby, unique_name("Ann"))
    ben = await lab.player(ben_host, lobby, unique_name("Ben"))
    await meet(ann, ben)
    to_ben, to_ann = await connected_both_ways(ann, ben)
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
    await quit_cleanly(lobby, ann, ben)


async def test_case2_players_behind_one_nat_connect_on_their_lan(natlab: LabWithLobby) -> None:
    lab, lobby = natlab
    ann_host, ben_host = lab.shared_home(2, NatType.CONE)
    ann = await lab.player(ann_host, lobby, unique_name("Ann"))
    ben = await lab.player(ben_host, lobby, unique_name("Ben"))
    await meet(ann, ben)
    to_ben, to_ann = await connected_both_ways(ann, ben)
    # their public address is the same router: the host candidate (the LAN) is the path
    assert to_ben[0] == ben_host.address, to_ben
    assert to_ann[0] == ann_host.address, to_ann

    assert await whisper_both_ways(ann, ben, "case 2") == ("direct", "direct")
    assert await party_chat_both_ways(ann, ben, "case 2") == ("direct", "direct")
    await movement_both_ways(ann, ben)
    await quit_cleanly(lobby, ann, ben)
