"""Packet protection of the movement packets, in one step each way.

aioquic protects a packet through four objects (``CryptoPair`` -> ``CryptoContext`` ->
``AEAD`` and ``HeaderProtection``), each a Python call or two, and its header protection
copies the whole packet twice to change three bytes. For the 1-RTT packets a node sends
and receives most (a movement DATAGRAM, maybe an ACK), these functions do the same
operations on the same keys in one Python call each:

* :func:`seal_short`: ``CryptoPair.encrypt_packet`` of a short header: the AEAD over the
  payload (nonce = IV xor packet number), then the header protection mask over the
  packet number's bytes and the first byte's low five bits;
* :func:`unmask_short_header`: ``HeaderProtection.remove`` of a short header, reading only
  the header and the sample;
* :func:`open_payload`: ``AEAD.decrypt`` of the payload that follows it.

Both take aioquic's own path whenever theirs would not be exactly it: a key update asked
for (``CryptoPair`` switches keys first), a ChaCha20 header protection (its cipher takes the
sample as its nonce). ``tests/mesh/test_quic_crypto.py`` compares both with aioquic's,
byte for byte, for every cipher suite. The private attributes read are listed in
:mod:`mesh._quicshim`'s docstring.
"""

from __future__ import annotations

from typing import Any

from aioquic._crypto import CryptoError
from cryptography.exceptions import InvalidTag

__all__ = ["open_payload", "seal_short", "unmask_short_header"]

_SAMPLE_LENGTH = 16
_PN_MAX = 4  # the header protection sample starts this far past the packet number's start


def seal_short(pair: Any, header: bytes, payload: bytes, packet_number: int) -> bytes:
    """``pair.encrypt_packet(header, payload, packet_number)`` for a short (1-RTT) header."""
    if pair._update_key_requested or header[0] & 0x80:
        return bytes(pair.encrypt_packet(header, payload, packet_number))
    context = pair.send
    hp = context.hp
    if hp._is_chacha20:
        return bytes(context.encrypt_packet(header, payload, packet_number))
    aead = context.aead
    protected: bytes = aead._aead.encrypt(
        (aead._iv ^ packet_number).to_bytes(12, "big"), payload, header
    )
    pn_length = (header[0] & 0x03) + 1
    offset = _PN_MAX - pn_length
    mask: bytes = hp._encryptor.update(protected[offset : offset + _SAMPLE_LENGTH])
    # the mask over the whole header as one integer XOR (the first byte's low five bits,
    # the packet number's bytes; the connection ID unchanged): no loop over its bytes
    size = len(header)
    header_mask = ((mask[0] & 0x1F) << (8 * size - 8)) | int.from_bytes(
        mask[1 : 1 + pn_length], "big"
    )
    return (int.from_bytes(header, "big") ^ header_mask).to_bytes(size, "big") + protected


def unmask_short_header(context: Any, packet: bytes, pn_offset: int) -> tuple[bytes, int]:
    """``context.hp.remove(packet, pn_offset)`` for a short header: the plain header (up to
    and including the packet number) and the truncated packet number. Raises aioquic's
    ``CryptoError`` when the packet is too short to sample, as ``remove`` does."""
    hp = context.hp
    if hp._is_chacha20 or packet[0] & 0x80:
        header, truncated = hp.remove(packet, pn_offset)
        return bytes(header), int(truncated)
    sample_offset = pn_offset + _PN_MAX
    if sample_offset + _SAMPLE_LENGTH > len(packet):
        raise CryptoError("Packet is too short to sample")
    mask: bytes = hp._encryptor.update(packet[sample_offset : sample_offset + _SAMPLE_LENGTH])
    first_mask = mask[0] & 0x1F
    pn_length = ((packet[0] ^ first_mask) & 0x03) + 1
    end = pn_offset + pn_length
    # as seal_short: the header's mask as one integer XOR
    header_mask = (first_mask << (8 * end - 8)) | int.from_bytes(mask[1 : 1 + pn_length], "big")
    plain = int.from_bytes(packet[:end], "big") ^ header_mask
    return plain.to_bytes(end, "big"), plain & ((1 << (8 * pn_length)) - 1)


def open_payload(context: Any, packet: bytes, header: bytes, packet_number: int) -> bytes:
    """``context.aead.decrypt(packet[len(header):], header, packet_number)``: the plain
    payload, or aioquic's ``CryptoError`` when it does not authenticate."""
    aead = context.aead
    try:
        plain: bytes = aead._aead.decrypt(
            (aead._iv ^ packet_number).to_bytes(12, "big"), packet[len(header) :], header
        )
    except InvalidTag as exc:
        raise CryptoError(str(exc)) from exc
    return plain
