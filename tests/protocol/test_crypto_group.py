"""LAN group key, tag and proof (PBKDF2 derivations done once per module)."""

from __future__ import annotations

import pytest

from protocol.crypto import (
    GROUP_SALT,
    Identity,
    derive_group_key,
    group_proof,
    group_tag,
    new_nonce,
    verify_group_proof,
)
from protocol.errors import ChallengeError

__all__: list[str] = []


@pytest.fixture(scope="module")
def key() -> bytes:
    return derive_group_key("correct horse battery staple")


@pytest.fixture(scope="module")
def wrong_key() -> bytes:
    return derive_group_key("correct horse battery stapler")


@pytest.fixture(scope="module")
def peer() -> Identity:
    return Identity.generate()


def test_key_is_deterministic_with_the_documented_salt(key: bytes) -> None:
    assert len(key) == 32
    assert derive_group_key("correct horse battery staple", salt=GROUP_SALT) == key


def test_known_answer() -> None:
    # PBKDF2-HMAC-SHA256("password", "salt", 100000, 32): a published test value
    expected = "0394a2ede332c9a13eb82e9b24631604c31df978b4e2f0fbd2c549944f9d79a5"
    assert derive_group_key("password", salt=b"salt").hex() == expected


def test_wrong_passphrase_other_key_and_tag(key: bytes, wrong_key: bytes) -> None:
    assert key != wrong_key
    assert group_tag(key) != group_tag(wrong_key)
    tag = group_tag(key)
    assert len(tag) == 16
    assert tag == group_tag(key)
    assert tag not in key.hex()


def test_proof_verifies(key: bytes, peer: Identity) -> None:
    nonce = new_nonce()
    verify_group_proof(key, nonce, peer.public_key, group_proof(key, nonce, peer.public_key))


def test_wrong_passphrase_proof_fails(key: bytes, wrong_key: bytes, peer: Identity) -> None:
    nonce = new_nonce()
    with pytest.raises(ChallengeError):
        verify_group_proof(
            key, nonce, peer.public_key, group_proof(wrong_key, nonce, peer.public_key)
        )


def test_proof_is_bound_to_nonce_and_identity(key: bytes, peer: Identity) -> None:
    nonce = new_nonce()
    proof = group_proof(key, nonce, peer.public_key)
    with pytest.raises(ChallengeError):
        verify_group_proof(key, new_nonce(), peer.public_key, proof)
    with pytest.raises(ChallengeError):
        verify_group_proof(key, nonce, Identity.generate().public_key, proof)
    with pytest.raises(ChallengeError):
        verify_group_proof(key, nonce, peer.public_key, proof[:-1])
    with pytest.raises(ChallengeError):
        verify_group_proof(key, b"short", peer.public_key, proof)


def test_bad_local_input() -> None:
    with pytest.raises(ValueError):
        derive_group_key("")
    with pytest.raises(ValueError):
        group_tag(b"short")
