"""Game scenarios for the NAT lab: what every case checks between two lab players.

Each helper drives :class:`tests.netlab.LabPlayer` processes (real
``NetworkClient``\\ s in the lab's namespaces) and asserts what both sides saw:

- :func:`meet`: players play (register, log in, select) at the lobby's start
  location and form a party (the leader invites, each accepts; all see it);
- :func:`whisper_both_ways` / :func:`party_chat_both_ways`: one message each way,
  each received exactly once with the path it came by; returns the paths the
  senders' results named;
- :func:`movement_both_ways`: each sends position updates until the other has
  seen one (bounded count);
- :func:`movement_unavailable`: both clients say movement cannot reach the other;
- :func:`connected_both_ways`: both report the other connected (by whichever path);
- :func:`quit_cleanly`: every player quits with exit code 0, no traceback anywhere.

Names: :func:`unique_name` makes character names that do not collide in a
lobby a whole module shares.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from tests.netlab import WAIT, LabLobby, LabPlayer

__all__ = [
    "connected_both_ways",
    "meet",
    "movement_both_ways",
    "movement_unavailable",
    "party_chat_both_ways",
    "quit_cleanly",
    "unique_name",
    "whisper_both_ways",
]

_names = itertools.count(1)
_run = secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + secrets.token_hex(2)


def unique_name(role: str) -> str:
    """``role`` plus a suffix unique to this run and call (letters and digits)."""
    return f"{role}{_run}{next(_names)}"


async def connected_both_ways(a: LabPlayer, b: LabPlayer) -> tuple[Any, Any]:
    """Once both report the other connected: the addresses ``a`` and ``b`` connected to."""
    seen_a = await a.event(event="peer", kind="connected", character_id=b.character_id)
    seen_b = await b.event(event="peer", kind="connected", character_id=a.character_id)
    return seen_a["address"], seen_b["address"]


async def quit_cleanly(lobby: LabLobby, *players: LabPlayer) -> None:
    """Every player quits with exit code 0; no traceback in any player's or the lobby's log."""
    for player in players:
        log = await player.close()
        assert "Traceback" not in log, log
        assert player.agent.process.returncode == 0, log
    assert "Traceback" not in lobby.log, lobby.log


async def meet(leader: LabPlayer, *members: LabPlayer) -> str:
    """Everyone plays, then ``leader`` forms a party with ``members``; returns its id once
    every one of them has seen it whole."""
    for player in (leader, *members):
        if not player.character_id:
            await player.play()
    party_id = str((await leader.call("create_party"))["party_id"])
    for member in members:
        await leader.call("invite", target=member.character_id)
        await member.event(event="party_invite", party_id=party_id)
        await member.call("accept", party_id=party_id)
    everyone = sorted(p.character_id for p in (leader, *members))
    for player in (leader, *members):
        await player.event(event="party", party_id=party_id, members=everyone)
    return party_id


async def whisper_both_ways(a: LabPlayer, b: LabPlayer, tag: str) -> tuple[str, str]:
    """A whisper each way; each arrives once, by the path its sender was told."""
    paths = []
    for sender, receiver in ((a, b), (b, a)):
        content = f"{tag}: whisper {next(_names)} {sender.name} to {receiver.name}"
        sent = await sender.call("whisper", target=receiver.character_id, content=content)
        got = await receiver.event(event="message", type="whisper", content=content)
        assert got["sender_id"] == sender.character_id, got
        assert got["path"] == sent["path"], (got, sent)
        paths.append(str(sent["path"]))
    for player in (a, b):
        assert len(player.events(event="message", type="whisper")) == len(
            {e["content"] for e in player.events(event="message", type="whisper")}
        ), "a whisper arrived twice"
    return paths[0], paths[1]


async def party_chat_both_ways(a: LabPlayer, b: LabPlayer, tag: str) -> tuple[str, str]:
    """Party chat each way (the two are in one party); each arrives once."""
    paths = []
    for sender, receiver in ((a, b), (b, a)):
        content = f"{tag}: party chat {next(_names)} from {sender.name}"
        sent = await sender.call("party_chat", content=content)
        assert sent["failed"] == {}, sent
        path = sent["paths"][str(receiver.character_id)]
        got = await receiver.event(event="message", type="party_chat", content=content)
        assert got["sender_id"] == sender.character_id and got["path"] == path, (got, sent)
        assert len(receiver.events(event="message", content=content)) == 1
        paths.append(str(path))
    return paths[0], paths[1]


async def movement_both_ways(a: LabPlayer, b: LabPlayer, *, updates: int = 100) -> None:
    """Each sends position updates (at most ``updates``) until the other saw one of them."""
    for sender, receiver in ((a, b), (b, a)):
        assert await sender.call("movement_available", target=receiver.character_id)
        for step in range(updates):
            await sender.call("position", position=[float(step), 2.0, 0.0])
            if receiver.events(event="position", character_id=sender.character_id):
                break
            try:
                await receiver.event(within=0.1, event="position", character_id=sender.character_id)
                break
            except AssertionError:
                continue
        seen = await receiver.event(within=WAIT, event="position", character_id=sender.character_id)
        assert seen["position"][1] == 2.0


async def movement_unavailable(a: LabPlayer, b: LabPlayer) -> None:
    """Both clients say their movement cannot reach the other; sending it fails nothing."""
    for sender, receiver in ((a, b), (b, a)):
        assert await sender.call("movement_available", target=receiver.character_id) is False
        assert await sender.call("movement_available", target=receiver.name) is False
        await sender.call("position", position=[1.0, 2.0, 3.0])
