"""Party chat and whispers among 2 and 5 clients, peer to peer (the relay counts none)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from mesh import MessageType, NetworkClient
from protocol.acks import PartyAck, PartyTargetAck

from .conftest import ClientFactory, Deployment, Inbox, relayed

__all__: list[str] = []


async def form_party(clients: list[NetworkClient]) -> str:
    """The first client creates a party and invites the others, who accept."""
    leader, *others = clients
    updates = {id(c): Inbox() for c in clients}
    invites = {id(c): Inbox() for c in others}
    for c in clients:
        c.register_handler(MessageType.PARTY_UPDATE, updates[id(c)])
    for c in others:
        c.register_handler(MessageType.PARTY_INVITE, invites[id(c)])
    created = await leader.create_party("Fellowship")
    assert isinstance(created, PartyAck)
    party_id = created.party_id
    for c in others:
        assert c.character is not None
        invited = await leader.invite_to_party(c.character.name)
        assert invited == PartyTargetAck(party_id=party_id, target_id=c.character.id)
        (invite,) = await invites[id(c)].wait_for(1)
        assert invite.party_id == party_id
        assert await c.accept_party_invite(party_id) == PartyAck(party_id=party_id)
    size = len(clients)
    for c in clients:
        await updates[id(c)].wait_until(
            lambda _, c=c: c.party is not None and len(c.party.members) == size  # type: ignore[misc]
        )
    return party_id


@pytest.mark.parametrize("count", [2, 5])
async def test_whisper_and_party_chat_direct(
    deployment: Deployment, make_client: ClientFactory, count: int
) -> None:
    names = ["Alice", "Bob", "Cara", "Dain", "Esme"][:count]
    clients = [await make_client(n) for n in names]
    party_id = await form_party(clients)
    assert (await clients[-1].get_party())["party_id"] == party_id
    whispers = {n: Inbox() for n in names}
    party = {n: Inbox() for n in names}
    for name, c in zip(names, clients, strict=True):
        c.register_handler(MessageType.WHISPER, whispers[name])
        c.register_handler(MessageType.PARTY_CHAT, party[name])

    pairs = list(itertools.permutations(range(count), 2))
    results = await asyncio.gather(
        *(clients[a].send_whisper(names[b], f"{names[a]}->{names[b]}") for a, b in pairs)
    )
    assert {r.path for r in results} == {"direct"}
    for i, c in enumerate(clients):
        sent = await c.send_party_chat(f"party hello from {names[i]}")
        assert sent.failed == {}
        assert set(sent.paths.values()) == {"direct"} and len(sent.paths) == count - 1

    for i, name in enumerate(names):
        got = await whispers[name].wait_for(count - 1)
        assert sorted(m.content for m in got) == sorted(
            f"{names[a]}->{name}" for a, b in pairs if b == i
        )
        assert all(m.content.startswith(m.sender_name + "->") for m in got)
        chat = await party[name].wait_for(count - 1)
        assert sorted(m.sender_name for m in chat) == sorted(n for n in names if n != name)
        assert all(m.content == f"party hello from {m.sender_name}" for m in chat)
        assert all(m.party_id == party_id for m in chat)
    # movement: every client sends a bounded burst; everyone ends with everyone's newest
    moves = {n: Inbox() for n in names}
    for name, c in zip(names, clients, strict=True):
        c.register_handler(MessageType.POSITION_UPDATE, moves[name])
    steps = 8
    for k in range(1, steps + 1):
        for i, c in enumerate(clients):
            await c.send_position_update((float(100 * i + k), 0.0, 0.0))
        await asyncio.sleep(0.06)  # one movement tick per step (bounded generator)
    for i, (name, c) in enumerate(zip(names, clients, strict=True)):
        others = [j for j in range(count) if j != i]
        finals = {float(100 * j + steps) for j in others}
        await moves[name].wait_until(
            lambda xs, finals=finals: finals <= {u.position.x for u in xs}  # type: ignore[misc]
        )
        by_sender: dict[int, list[int]] = {}
        for u in moves[name].items:
            by_sender.setdefault(u.character_id, []).append(u.seq)
        assert all(seqs == sorted(set(seqs)) for seqs in by_sender.values())  # newest wins
        view = {p.character_name: p for p in c.get_nearby_players()}
        assert {n for n in names if n != name} <= set(view)
        for j in others:
            position = view[names[j]].position
            assert position is not None and position.x == float(100 * j + steps)
    assert await relayed(deployment) == 0


async def test_party_chat_outside_a_party_is_refused(make_client: ClientFactory) -> None:
    from protocol.errors import ErrorCode, MeshError

    alice = await make_client("Alice")
    with pytest.raises(MeshError) as info:
        await alice.send_party_chat("anyone?")
    assert info.value.code == ErrorCode.NOT_IN_PARTY


async def test_party_request_errors_are_api_errors(make_client: ClientFactory) -> None:
    from protocol.errors import ApiError

    alice = await make_client("Alice")
    errors = Inbox()
    alice.register_handler(MessageType.ERROR, errors)
    with pytest.raises(ApiError) as info:
        await alice.accept_party_invite("no-such-party")
    assert info.value.status == 0
    (err,) = await errors.wait_for(1)  # the ERROR also reaches handlers
    assert err.error_code == info.value.code


async def test_kick_leave_and_disband_return_the_party_acks(make_client: ClientFactory) -> None:
    clients = [await make_client(n) for n in ("Alice", "Bob", "Cara")]
    alice, bob, cara = clients
    party_id = await form_party(clients)
    assert bob.character is not None
    kicked = await alice.kick_from_party(bob.character.id, reason="afk")
    assert kicked == PartyTargetAck(party_id=party_id, target_id=bob.character.id)
    assert await cara.leave_party() == PartyAck(party_id=party_id)
    assert await alice.disband_party() == PartyAck(party_id=party_id)
