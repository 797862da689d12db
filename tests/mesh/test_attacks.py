"""Attacks by a hostile peer on raw aioquic: none accepted, none misattributed.

Each failed handshake closes the QUIC connection with its documented
:class:`mesh.handshake.CloseCode`, logs one line, delivers nothing, and leaves
the node's other connections working.
"""

from __future__ import annotations

import logging
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.auth import LobbyTicketAuth
from mesh.handshake import CloseCode
from mesh.node import PeerNode
from mesh.streams import KIND_CONTROL, encode_frame
from protocol.crypto import Identity, handshake_context, new_nonce, sign_challenge
from protocol.errors import HandshakeError
from protocol.messages.base import MessageType
from protocol.messages.chat import WhisperMessage
from protocol.messages.location import PositionUpdateMessage, Vec3
from protocol.movement import encode_movement_batch
from tests.inbox import Inbox

from .conftest import FakeLobby, NodeFactory, ticket_of
from .hostile import HostileProtocol, b64, hostile_client, token_digest


async def victim_with_witness(make_node: NodeFactory) -> tuple[PeerNode, PeerNode, Inbox]:
    """The attacked node, plus an honest peer already connected to it."""
    victim = await make_node(1, "Victim")
    witness = await make_node(2, "Witness")
    inbox = Inbox()
    for kind in (MessageType.WHISPER, MessageType.PARTY_CHAT, MessageType.POSITION_UPDATE):
        victim.register_handler(kind, inbox)
    await witness.connect(ticket_of(victim), victim.endpoint)
    return victim, witness, inbox


async def still_serves(victim: PeerNode, witness: PeerNode, inbox: Inbox) -> None:
    """The honest connection is unaffected and nothing else was delivered."""
    assert inbox.items == []
    await witness.send_whisper(1, "still here")
    (msg,) = await inbox.wait_for(1)
    assert msg.content == "still here" and msg.sender_id == 2
    assert list(victim.peers) == [witness.peer_id]


async def attempt(
    victim: PeerNode, identity: Identity, ticket: str, **cheat: object
) -> HostileProtocol:
    async with hostile_client(victim.address) as hostile:
        await hostile.handshake(identity=identity, ticket=ticket, **cheat)  # type: ignore[arg-type]
        hostile.send_data(WhisperMessage(content="let me in", sender_id=2))
        await hostile.close_code()
        return hostile


async def test_stolen_ticket_without_its_key(
    make_node: NodeFactory, fake_lobby: FakeLobby, caplog: pytest.LogCaptureFixture
) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    thief = Identity.generate()
    stolen = ticket_of(witness)  # a real ticket, but the thief lacks the witness's key
    witness_identity = witness.identity
    caplog.set_level(logging.INFO, logger="mesh")
    async with hostile_client(victim.address) as hostile:
        await hostile.handshake(identity=witness_identity, ticket=stolen, signer=thief)
        hostile.send_data(WhisperMessage(content="I am the witness", sender_id=2))
        assert await hostile.close_code() == CloseCode.CHALLENGE_FAILED
    lines = [r for r in caplog.records if "closing connection" in r.getMessage()]
    assert len(lines) == 1 and "0x104" in lines[0].getMessage()
    await still_serves(victim, witness, inbox)


async def test_forged_ticket(make_node: NodeFactory, fake_lobby: FakeLobby) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    attacker = Identity.generate()
    fake_lobby = FakeLobby(Ed25519PrivateKey.generate())
    forged = fake_lobby.ticket(attacker, 2, "Witness")
    async with hostile_client(victim.address) as hostile:
        hostile.send_control(_hello(attacker, forged))
        assert await hostile.close_code() == CloseCode.TICKET_INVALID
    # a real ticket with one field changed after signing
    real = fake_lobby.ticket(attacker, 3, "Mallory")
    prefix, body, digest, sig = real.split(".")
    tampered = ".".join(
        (prefix, body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1], digest, sig)
    )
    async with hostile_client(victim.address) as hostile:
        hostile.send_control(_hello(attacker, tampered))
        assert await hostile.close_code() == CloseCode.TICKET_INVALID
    await still_serves(victim, witness, inbox)


async def test_expired_ticket(make_node: NodeFactory, fake_lobby: FakeLobby) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    attacker = Identity.generate()
    expired = fake_lobby.ticket(attacker, 3, "Late", now=time.time() - 7200, ttl=3600)
    async with hostile_client(victim.address) as hostile:
        hostile.send_control(_hello(attacker, expired))
        assert await hostile.close_code() == CloseCode.TICKET_EXPIRED
    await still_serves(victim, witness, inbox)


async def test_replayed_handshake(make_node: NodeFactory, fake_lobby: FakeLobby) -> None:
    """A proof the witness once made for the victim is useless in a new handshake."""
    victim, witness, inbox = await victim_with_witness(make_node)
    old_nonce = new_nonce()
    recorded = sign_challenge(
        witness.identity.signing_key,
        old_nonce,
        context=handshake_context(
            "shards/1",
            "client",
            witness.peer_id,
            victim.peer_id,
            token_digest(ticket_of(witness)),
            token_digest(ticket_of(victim)),
        ),
    )
    async with hostile_client(victim.address) as hostile:
        await hostile.handshake(
            identity=witness.identity, ticket=ticket_of(witness), replay_signature=recorded
        )
        assert await hostile.close_code() == CloseCode.CHALLENGE_FAILED
    await still_serves(victim, witness, inbox)


async def test_node_id_not_matching_ticket(make_node: NodeFactory, fake_lobby: FakeLobby) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    attacker = Identity.generate()
    ticket = fake_lobby.ticket(attacker, 3, "Mallory")
    async with hostile_client(victim.address) as hostile:
        hostile.send_control(_hello(attacker, ticket, node_id=witness.peer_id))
        assert await hostile.close_code() == CloseCode.PEER_MISMATCH
    await still_serves(victim, witness, inbox)


async def test_data_before_authentication(make_node: NodeFactory, fake_lobby: FakeLobby) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    async with hostile_client(victim.address) as hostile:
        hostile.send_data(WhisperMessage(content="early bird", sender_id=1))
        assert await hostile.close_code() == CloseCode.PROTOCOL_VIOLATION
    async with hostile_client(victim.address) as hostile:
        attacker = Identity.generate()
        hostile.send_control(_hello(attacker, fake_lobby.ticket(attacker, 3, "M")))
        hostile.send_data(WhisperMessage(content="before proof", sender_id=1))
        assert await hostile.close_code() == CloseCode.PROTOCOL_VIOLATION
    await still_serves(victim, witness, inbox)


async def test_spoofed_sender_is_overwritten(make_node: NodeFactory, fake_lobby: FakeLobby) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    mallory = Identity.generate()
    ticket = fake_lobby.ticket(mallory, 66, "Mallory")
    async with hostile_client(victim.address) as hostile:
        await hostile.handshake(identity=mallory, ticket=ticket)
        await hostile.expect_welcome()
        hostile.send_data(
            WhisperMessage(content="trust me", sender_id=2, sender_name="Witness", target_id=1)
        )
        (msg,) = await inbox.wait_for(1)
        assert msg.content == "trust me"
        assert (msg.sender_id, msg.sender_name) == (66, "Mallory")
        # movement for someone else's character is dropped, our own is accepted
        forged = _update(character_id=2, seq=1)
        hostile.send_datagram(encode_movement_batch([forged]))
        hostile.send_datagram(encode_movement_batch([_update(character_id=66, seq=1)]))
        items = await inbox.wait_for(2)
        assert items[1].character_id == 66
        assert victim.stats["spoofed_updates"] == 1
    inbox.items.clear()
    await still_serves_after_leave(victim, witness, inbox)


async def still_serves_after_leave(victim: PeerNode, witness: PeerNode, inbox: Inbox) -> None:
    await witness.send_whisper(1, "after mallory")
    msgs = await inbox.wait_for(1)
    assert msgs[-1].content == "after mallory" and msgs[-1].sender_id == 2


async def test_bad_frames_close_only_that_connection(
    make_node: NodeFactory, fake_lobby: FakeLobby
) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    cases = [
        b"\xff\xff\xff\xff" + b"x" * 16,  # absurd length
        encode_frame(KIND_CONTROL, b"{not json"),
        encode_frame(7, b"unknown kind"),
        encode_frame(KIND_CONTROL, b'{"type":"whisper","content":"x"}'),  # not a handshake message
    ]
    for raw in cases:
        async with hostile_client(victim.address) as hostile:
            hostile.send_raw(raw)
            assert await hostile.close_code() == CloseCode.PROTOCOL_VIOLATION
    async with hostile_client(victim.address) as hostile:
        hostile.send_raw(b"hi", stream_id=4)  # a stream other than the control stream
        assert await hostile.close_code() == CloseCode.PROTOCOL_VIOLATION
    # after authentication, garbage on the control stream still closes it
    mallory = Identity.generate()
    async with hostile_client(victim.address) as hostile:
        await hostile.handshake(identity=mallory, ticket=fake_lobby.ticket(mallory, 70, "M"))
        await hostile.expect_welcome()
        hostile.send_raw(encode_frame(KIND_CONTROL, b"[]"))
        assert await hostile.close_code() == CloseCode.PROTOCOL_VIOLATION
    await still_serves(victim, witness, inbox)


async def test_bad_datagrams_are_dropped(make_node: NodeFactory, fake_lobby: FakeLobby) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    mallory = Identity.generate()
    async with hostile_client(victim.address) as hostile:
        await hostile.handshake(identity=mallory, ticket=fake_lobby.ticket(mallory, 71, "M"))
        await hostile.expect_welcome()
        for junk in (b"", b"\x00", b"\x22\x05" + b"\x00" * 10, b"\xff" * 1000):
            hostile.send_datagram(junk)
        hostile.send_data(WhisperMessage(content="still connected"))
        (msg,) = await inbox.wait_for(1)
        assert msg.content == "still connected" and msg.sender_id == 71
        assert victim.stats["bad_datagrams"] >= 3
        assert not hostile.closed.done()
    inbox.items.clear()
    await still_serves_after_leave(victim, witness, inbox)


async def test_impostor_server_fails_tls_key_check(
    make_node: NodeFactory, fake_lobby: FakeLobby
) -> None:
    """A node presenting someone else's ticket is caught by the dialler (TLS key != ticket key)."""
    victim = await make_node(1, "Victim")
    honest = await make_node(2, "Honest")
    impostor_identity = Identity.generate()
    impostor = PeerNode(
        impostor_identity,
        host="127.0.0.1",
        port=0,
        auth=LobbyTicketAuth(fake_lobby.public_key, ticket_of(honest)),
    )
    async with impostor:
        with pytest.raises(HandshakeError):
            await victim.connect(ticket_of(honest), impostor.endpoint)
    assert victim.peers == {}


def _hello(identity: Identity, ticket: str, node_id: str | None = None) -> object:
    from protocol.messages.peer import PeerHelloMessage

    return PeerHelloMessage(
        node_id=node_id or identity.peer_id, challenge=b64(new_nonce()), ticket=ticket
    )


def _update(character_id: int, seq: int) -> PositionUpdateMessage:
    return PositionUpdateMessage(
        character_id=character_id, location_id=1, position=Vec3(x=1.0), seq=seq
    )


async def test_udp_junk_and_foreign_alpn_do_not_disturb(make_node: NodeFactory) -> None:
    import asyncio
    import ssl as ssl_module

    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    victim, witness, inbox = await victim_with_witness(make_node)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        for junk in (b"", b"\x00" * 5, b"\xc3" + b"\xff" * 1300, bytes(range(256)) * 5):
            transport.sendto(junk, victim.address)
    finally:
        transport.close()
    quic = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True, alpn_protocols=["h3"], verify_mode=ssl_module.CERT_NONE
        )
    )
    transport, proto = await loop.create_datagram_endpoint(
        lambda: QuicConnectionProtocol(quic), local_addr=("127.0.0.1", 0)
    )
    try:
        proto.connect(victim.address)
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(proto.wait_connected(), 10.0)
    finally:
        transport.close()
    await still_serves(victim, witness, inbox)


async def test_movement_before_authentication_is_dropped(
    make_node: NodeFactory, fake_lobby: FakeLobby
) -> None:
    victim, witness, inbox = await victim_with_witness(make_node)
    mallory = Identity.generate()
    async with hostile_client(victim.address) as hostile:
        hostile.send_datagram(encode_movement_batch([_update(character_id=72, seq=1)]))
        hostile.send_control(_hello(mallory, fake_lobby.ticket(mallory, 72, "M")))
        await hostile.recv()  # the victim's hello: it processed our datagram by now
        assert victim.stats["bad_datagrams"] == 1
    await still_serves(victim, witness, inbox)
