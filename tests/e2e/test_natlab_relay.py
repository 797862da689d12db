"""NAT-lab case 5: a player whose UDP to the internet is blocked plays through the lobby relay.

Carol's home router is a strict firewall: of what her host sends out, only TCP
to the lobby passes (no UDP at all, so no STUN, no punching, no TURN). Ann and
Ben share one home network behind a cone NAT, so they reach each other
directly. All three are real ``NetworkClient`` processes in the lab
(:mod:`tests.netlab`), in one party at the lobby's start location.

What it shows: whispers and party chat between Carol and the others travel the
lobby WebSocket relay both ways (``SendResult.path == "relay"``, and the
receiver got it by the relay, once), while Ann and Ben stay direct; the public
API says movement cannot reach Carol, nor Carol's reach them
(``movement_available``), while movement flows between Ann and Ben; Carol's
position updates fail nothing; nobody logs a traceback and every client quits
cleanly.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import LabWithLobby
from tests.natlab_game import (
    meet,
    movement_both_ways,
    movement_unavailable,
    party_chat_both_ways,
    quit_cleanly,
    unique_name,
    whisper_both_ways,
)
from tests.netlab import NatType

__all__: list[str] = []

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]


async def test_udp_blocked_player_chats_through_the_relay_and_has_no_movement(
    natlab: LabWithLobby,
) -> None:
    lab, lobby = natlab
    ann_host, ben_host = lab.shared_home(2, NatType.CONE)
    (carol_host,) = lab.homes(NatType.CONE)
    lab.block_udp(carol_host.router)
    ann = await lab.player(ann_host, lobby, unique_name("Ann"))
    ben = await lab.player(ben_host, lobby, unique_name("Ben"))
    carol = await lab.player(carol_host, lobby, unique_name("Carol"))
    await meet(ann, ben, carol)

    for other in (ann, ben):
        assert await whisper_both_ways(carol, other, "case 5") == ("relay", "relay")
        assert await party_chat_both_ways(carol, other, "case 5") == ("relay", "relay")
    # the unblocked pair is direct, and sees each other move
    assert await whisper_both_ways(ann, ben, "case 5") == ("direct", "direct")
    await movement_both_ways(ann, ben)

    # movement: unavailable between Carol and each of the others, and said so on both sides
    await movement_unavailable(carol, ann)
    await movement_unavailable(carol, ben)
    for player, other in ((carol, ann), (ann, carol), (carol, ben)):
        quality = await player.call("quality", target=other.character_id)
        assert quality["path"] == "relay" and quality["address"] is None, quality
        assert quality["relay_bytes_sent"] > 0 and quality["relay_bytes_received"] > 0
    assert await carol.call("peers") == []
    assert carol.events(event="peer", kind="connected") == []
    assert carol.events(event="position") == []
    assert not ann.events(event="position", character_id=carol.character_id)

    # still relayed after the movement attempts; everyone quits cleanly, no traceback
    assert await whisper_both_ways(ann, carol, "case 5 again") == ("relay", "relay")
    await quit_cleanly(lobby, ann, ben, carol)
