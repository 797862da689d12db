"""A hostile peer built on raw aioquic: speaks the mesh framing by hand, breaks every rule."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived

from mesh.certs import ALPN
from mesh.streams import KIND_CONTROL, KIND_DATA, FrameDecoder, encode_data, encode_frame
from protocol.codec import deserialize, serialize_bytes
from protocol.crypto import Identity, b64url_decode, handshake_context, sign_challenge
from protocol.messages.base import BaseMessage
from protocol.messages.peer import PeerHelloMessage, PeerProofMessage, PeerWelcomeMessage


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class HostileProtocol(QuicConnectionProtocol):
    """Collects control frames and the connection's fate."""

    def __init__(self, quic: QuicConnection) -> None:
        super().__init__(quic)
        self.decoder = FrameDecoder()
        self.frames: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.closed: asyncio.Future[ConnectionTerminated] = (
            asyncio.get_running_loop().create_future()
        )

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            for frame in self.decoder.feed(event.data):
                self.frames.put_nowait(frame)
        elif isinstance(event, ConnectionTerminated) and not self.closed.done():
            self.closed.set_result(event)

    # sending ------------------------------------------------------------------

    def send_raw(self, data: bytes, stream_id: int = 0) -> None:
        self._quic.send_stream_data(stream_id, data)
        self.transmit()

    def send_control(self, message: BaseMessage) -> None:
        self.send_raw(encode_frame(KIND_CONTROL, serialize_bytes(message)))

    def send_data(self, message: BaseMessage, seq: int = 1, epoch: bytes = b"E" * 8) -> None:
        self.send_raw(encode_frame(KIND_DATA, encode_data(epoch, 1, seq, serialize_bytes(message))))

    def send_datagram(self, data: bytes) -> None:
        self._quic.send_datagram_frame(data)
        self.transmit()

    # receiving ----------------------------------------------------------------

    async def recv(self) -> BaseMessage:
        kind, body = await asyncio.wait_for(self.frames.get(), 10.0)
        assert kind == KIND_CONTROL
        return deserialize(body)

    async def close_code(self) -> int:
        event = await asyncio.wait_for(asyncio.shield(self.closed), 10.0)
        return event.error_code

    # a handshake, honest or not ---------------------------------------------------

    async def handshake(
        self,
        *,
        identity: Identity,
        ticket: str,
        signer: Identity | None = None,
        node_id: str | None = None,
        replay_signature: bytes | None = None,
    ) -> PeerHelloMessage:
        """Run the client side; ``signer``/``node_id``/``replay_signature`` cheat on purpose."""
        nonce = b"N" * 32
        self.send_control(
            PeerHelloMessage(
                node_id=node_id or identity.peer_id, challenge=b64(nonce), ticket=ticket
            )
        )
        hello = await self.recv()
        assert isinstance(hello, PeerHelloMessage) and hello.ticket is not None
        proof = await self.recv()
        assert isinstance(proof, PeerProofMessage)
        server_nonce = base64.b64decode(hello.challenge)
        context = handshake_context(
            "shards/1",
            "client",
            identity.peer_id,
            hello.node_id,
            token_digest(ticket),
            token_digest(hello.ticket),
        )
        signature = replay_signature or sign_challenge(
            (signer or identity).signing_key, server_nonce, context=context
        )
        self.send_control(PeerProofMessage(signature=b64(signature)))
        return hello

    async def expect_welcome(self) -> PeerWelcomeMessage:
        welcome = await self.recv()
        assert isinstance(welcome, PeerWelcomeMessage) and welcome.accepted
        return welcome


def token_digest(token: str) -> bytes:
    """The digest a ticket token carries (what handshake contexts bind to)."""
    return b64url_decode(token.split(".")[2])


@asynccontextmanager
async def hostile_client(address: tuple[str, int]) -> AsyncIterator[HostileProtocol]:
    """A raw aioquic client bound to loopback, TLS done, nothing else sent."""
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        verify_mode=ssl.CERT_NONE,
        max_datagram_frame_size=65536,
        idle_timeout=10.0,
    )
    loop = asyncio.get_running_loop()
    quic = QuicConnection(configuration=config)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: HostileProtocol(quic), local_addr=("127.0.0.1", 0)
    )
    try:
        protocol.connect(address)
        await asyncio.wait_for(protocol.wait_connected(), 10.0)
        yield protocol
    finally:
        protocol.close()
        transport.close()
