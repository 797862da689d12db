"""End-to-end sealing of relayed peer payloads."""

from __future__ import annotations

import pytest

from protocol.crypto import BOX_OVERHEAD, Identity, open_from_peer, seal_to_peer
from protocol.crypto.box import MAX_BOX_PLAINTEXT
from protocol.errors import SealError

__all__: list[str] = []


def _seal(sender: Identity, recipient: Identity, data: bytes = b"meet at the shard") -> bytes:
    return seal_to_peer(
        data, recipient_box_key=recipient.box_public_key, sender_identity_key=sender.signing_key
    )


def test_round_trip(alice: Identity, bob: Identity) -> None:
    for data in (b"", b"hello", bytes(range(256)) * 40):
        blob = _seal(alice, bob, data)
        assert len(blob) == len(data) + BOX_OVERHEAD
        assert data not in blob or not data
        opened = open_from_peer(
            blob, recipient_box_private=bob.box_key, sender_public_key_raw=alice.public_key
        )
        assert opened == data


def test_each_seal_differs(alice: Identity, bob: Identity) -> None:
    assert _seal(alice, bob) != _seal(alice, bob)


def test_wrong_recipient(alice: Identity, bob: Identity, mallory: Identity) -> None:
    blob = _seal(alice, bob)
    with pytest.raises(SealError):
        open_from_peer(
            blob, recipient_box_private=mallory.box_key, sender_public_key_raw=alice.public_key
        )


def test_wrong_sender_key(alice: Identity, bob: Identity, mallory: Identity) -> None:
    blob = _seal(mallory, bob)  # mallory seals to bob; relay claims it is from alice
    with pytest.raises(SealError):
        open_from_peer(
            blob, recipient_box_private=bob.box_key, sender_public_key_raw=alice.public_key
        )


def test_every_bit_flip_is_refused(alice: Identity, bob: Identity) -> None:
    blob = _seal(alice, bob, b"abc")
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= bit
            with pytest.raises(SealError):
                open_from_peer(
                    bytes(bad),
                    recipient_box_private=bob.box_key,
                    sender_public_key_raw=alice.public_key,
                )


def test_truncated_and_garbage(alice: Identity, bob: Identity) -> None:
    blob = _seal(alice, bob)
    for bad in (
        b"",
        blob[:10],
        blob[:-1],
        b"SB1\x00" + bytes(200),
        b"x" * (MAX_BOX_PLAINTEXT + 500),
    ):
        with pytest.raises(SealError):
            open_from_peer(
                bad, recipient_box_private=bob.box_key, sender_public_key_raw=alice.public_key
            )
    with pytest.raises(SealError):
        open_from_peer(blob, recipient_box_private=bob.box_key, sender_public_key_raw=b"short")


def test_recipient_cannot_forward_as_sender(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    """Bob opens alice's blob; he cannot re-seal her signed payload to mallory."""
    blob = _seal(alice, bob, b"for bob only")
    # re-using alice's signature under a new seal needs a signature over mallory's key,
    # which bob does not have; the best he can do is re-seal signed by himself
    forwarded = _seal(bob, mallory, b"for bob only")
    with pytest.raises(SealError):
        open_from_peer(
            forwarded, recipient_box_private=mallory.box_key, sender_public_key_raw=alice.public_key
        )
    assert blob != forwarded


def test_bad_recipient_key_and_size(alice: Identity, bob: Identity) -> None:
    with pytest.raises(SealError):
        seal_to_peer(b"x", recipient_box_key=b"short", sender_identity_key=alice.signing_key)
    with pytest.raises(SealError):  # the all-zero point has low order
        seal_to_peer(b"x", recipient_box_key=bytes(32), sender_identity_key=alice.signing_key)
    with pytest.raises(ValueError):
        _seal(alice, bob, bytes(MAX_BOX_PLAINTEXT + 1))
