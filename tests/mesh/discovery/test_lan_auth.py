"""LanGroupAuth: self-issued tickets plus a group proof over the verifier's nonce."""

from __future__ import annotations

import pytest

from mesh.discovery.lan_auth import LanGroupAuth, lan_character_id
from protocol.crypto import Identity, derive_group_key, group_tag, new_nonce
from protocol.errors import ChallengeError, CryptoError, TicketExpiredError

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def group_key() -> bytes:
    return derive_group_key("correct horse battery staple")


def make(group_key: bytes, name: str = "alice", **kwargs: object) -> LanGroupAuth:
    return LanGroupAuth(
        Identity.generate(), character_name=name, now=NOW, group_key=group_key, **kwargs
    )  # type: ignore[arg-type]


def test_members_admit_each_other(group_key: bytes) -> None:
    alice, bob = make(group_key, "alice"), make(group_key, "bob")
    peer = alice.verify_credential(bob.credential(), now=NOW + 1)
    assert peer.peer_id == bob.peer_id
    assert peer.character_name == "bob"
    assert peer.character_id == lan_character_id(bob.peer_id)
    nonce = new_nonce()
    proof = bob.membership_proof(nonce, bob.identity.public_key)
    alice.verify_membership(peer, nonce, proof)
    assert alice.group_tag == group_tag(group_key)
    assert "correct horse" not in repr(alice)


def test_passphrase_and_key_agree(group_key: bytes) -> None:
    by_pass = LanGroupAuth(
        Identity.generate(), character_name="c", now=NOW, passphrase="correct horse battery staple"
    )
    assert by_pass.group_tag == make(group_key).group_tag
    with pytest.raises(ValueError):
        LanGroupAuth(Identity.generate(), character_name="c", now=NOW)


def test_wrong_passphrase_is_refused(group_key: bytes) -> None:
    alice = make(group_key)
    mallory = make(derive_group_key("wrong"), "mallory")
    with pytest.raises(ChallengeError):
        alice.verify_credential(mallory.credential(), now=NOW)


def test_copied_tag_without_the_key_fails_the_proof(group_key: bytes) -> None:
    alice = make(group_key)
    mallory = make(derive_group_key("wrong"), "mallory")
    mallory.group_tag = alice.group_tag  # claims our group in the ticket...
    mallory.set_endpoints([], now=NOW)
    peer = alice.verify_credential(mallory.credential(), now=NOW)
    nonce = new_nonce()
    with pytest.raises(ChallengeError):  # ...but cannot prove it
        alice.verify_membership(peer, nonce, mallory.membership_proof(nonce, peer.public_key))
    with pytest.raises(ChallengeError):
        alice.verify_membership(peer, nonce, None)


def test_proof_is_bound_to_nonce_and_identity(group_key: bytes) -> None:
    alice, bob, carol = make(group_key), make(group_key, "bob"), make(group_key, "carol")
    bob_peer = alice.verify_credential(bob.credential(), now=NOW)
    nonce = new_nonce()
    replayed = bob.membership_proof(new_nonce(), bob.identity.public_key)
    with pytest.raises(ChallengeError):
        alice.verify_membership(bob_peer, nonce, replayed)
    lent = carol.membership_proof(nonce, carol.identity.public_key)
    with pytest.raises(ChallengeError):
        alice.verify_membership(bob_peer, nonce, lent)


def test_ticket_expiry_and_renewal(group_key: bytes) -> None:
    alice, bob = make(group_key, ttl=100.0), make(group_key, "bob", ttl=100.0)
    old = bob.credential()
    with pytest.raises(TicketExpiredError):
        alice.verify_credential(old, now=NOW + 500)
    bob.own_identity(now=NOW + 500)  # renews: less than half the ttl was left
    assert bob.credential() != old
    assert alice.verify_credential(bob.credential(), now=NOW + 500).peer_id == bob.peer_id


def test_garbage_credential_is_a_crypto_error(group_key: bytes) -> None:
    with pytest.raises(CryptoError):
        make(group_key).verify_credential("st1.garbage", now=NOW)
