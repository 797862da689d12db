"""Packet protection in one call (mesh._quic_crypto): byte for byte aioquic's, every suite."""

from __future__ import annotations

import random

import pytest
from aioquic._crypto import CryptoError
from aioquic.quic.crypto import CryptoPair
from aioquic.tls import CipherSuite

from mesh._quic_crypto import open_payload, seal_short, unmask_short_header

SUITES = [
    CipherSuite.AES_128_GCM_SHA256,
    CipherSuite.AES_256_GCM_SHA384,
    CipherSuite.CHACHA20_POLY1305_SHA256,
]


def _pairs(suite: CipherSuite, rng: random.Random) -> tuple[CryptoPair, CryptoPair]:
    """A sender and a receiver sharing one secret each way (as after a handshake)."""
    sender, receiver = CryptoPair(), CryptoPair()
    size = 48 if suite is CipherSuite.AES_256_GCM_SHA384 else 32
    secrets = (rng.randbytes(size), rng.randbytes(size))
    sender.send.setup(cipher_suite=suite, secret=secrets[0], version=1)
    sender.recv.setup(cipher_suite=suite, secret=secrets[1], version=1)
    receiver.send.setup(cipher_suite=suite, secret=secrets[1], version=1)
    receiver.recv.setup(cipher_suite=suite, secret=secrets[0], version=1)
    return sender, receiver


def _header(rng: random.Random, pn_length: int, packet_number: int) -> bytes:
    """A short header: fixed bit, spin and key phase bits, 8-byte CID, the packet number."""
    first = 0x40 | (rng.getrandbits(1) << 5) | (rng.getrandbits(1) << 2) | (pn_length - 1)
    truncated = packet_number & ((1 << (8 * pn_length)) - 1)
    return bytes([first]) + rng.randbytes(8) + truncated.to_bytes(pn_length, "big")


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_seal_unmask_and_open_are_aioquics(suite: CipherSuite) -> None:
    rng = random.Random(suite.value)
    sender, receiver = _pairs(suite, rng)
    for step in range(300):
        packet_number = rng.choice((step, rng.getrandbits(20), rng.getrandbits(40)))
        pn_length = rng.choice((1, 2, 2, 3, 4))
        header = _header(rng, pn_length, packet_number)
        # at least 4 - pn_length bytes, as aioquic pads: the header protection samples 16
        # bytes from 4 past the packet number's start
        payload = rng.randbytes(max(4 - pn_length, rng.choice((1, 2, 3, 20, 43, 200, 1100))))
        sealed = seal_short(sender, header, payload, packet_number)
        assert sealed == sender.encrypt_packet(header, payload, packet_number)
        mine = unmask_short_header(receiver.recv, sealed, 9)
        assert mine == receiver.recv.hp.remove(sealed, 9)
        assert mine[0] == header
        assert open_payload(receiver.recv, sealed, header, packet_number) == payload


def test_a_requested_key_update_goes_through_aioquic() -> None:
    """With a key update asked for, the pair switches keys first (its key phase flips):
    the sealed packet is aioquic's with the next keys, and the receiver opens it only
    with those."""
    rng = random.Random(5)
    sender, receiver = _pairs(CipherSuite.AES_128_GCM_SHA256, rng)
    twin, _ = _pairs(CipherSuite.AES_128_GCM_SHA256, random.Random(5))
    sender.update_key()
    twin.update_key()
    header = _header(rng, 2, 7)
    sealed = seal_short(sender, header, b"hello", 7)
    assert sealed == twin.encrypt_packet(header, b"hello", 7)
    assert sender.key_phase == 1
    with pytest.raises(CryptoError):  # the old keys no longer open it
        open_payload(receiver.recv, sealed, header, 7)


def test_bad_packets_are_refused_as_aioquic_refuses_them() -> None:
    rng = random.Random(9)
    sender, receiver = _pairs(CipherSuite.AES_128_GCM_SHA256, rng)
    header = _header(rng, 2, 3)
    sealed = seal_short(sender, header, b"x" * 40, 3)
    with pytest.raises(CryptoError, match="too short"):
        unmask_short_header(receiver.recv, sealed[:20], 9)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    plain_header, _ = unmask_short_header(receiver.recv, bytes(tampered), 9)
    with pytest.raises(CryptoError):
        open_payload(receiver.recv, bytes(tampered), plain_header, 3)
