"""Handshake challenges: valid answers verify; replays into another handshake do not."""

from __future__ import annotations

import pytest

from protocol.crypto import (
    Identity,
    handshake_context,
    new_nonce,
    sign_challenge,
    verify_challenge,
)
from protocol.errors import ChallengeError

__all__: list[str] = []


def test_nonces_are_fresh() -> None:
    a, b = new_nonce(), new_nonce()
    assert len(a) == len(b) == 32
    assert a != b


def test_answer_verifies(alice: Identity, bob: Identity) -> None:
    nonce = new_nonce()
    ctx = handshake_context(alice.peer_id, bob.peer_id, b"digest-a", b"digest-b")
    sig = sign_challenge(alice.signing_key, nonce, context=ctx)
    verify_challenge(alice.public_key, nonce, sig, context=ctx)


def test_replay_under_another_nonce_fails(alice: Identity, bob: Identity) -> None:
    ctx = handshake_context(alice.peer_id, bob.peer_id)
    sig = sign_challenge(alice.signing_key, new_nonce(), context=ctx)
    with pytest.raises(ChallengeError):
        verify_challenge(alice.public_key, new_nonce(), sig, context=ctx)


def test_replay_under_another_context_fails(alice: Identity, bob: Identity) -> None:
    nonce = new_nonce()
    sig = sign_challenge(
        alice.signing_key, nonce, context=handshake_context(alice.peer_id, bob.peer_id)
    )
    carol = Identity.generate()
    with pytest.raises(ChallengeError):
        verify_challenge(
            alice.public_key, nonce, sig, context=handshake_context(alice.peer_id, carol.peer_id)
        )
    # the order of the parties is part of the context too
    with pytest.raises(ChallengeError):
        verify_challenge(
            alice.public_key, nonce, sig, context=handshake_context(bob.peer_id, alice.peer_id)
        )


def test_wrong_key_and_garbage_fail(alice: Identity, bob: Identity) -> None:
    nonce, ctx = new_nonce(), b"ctx"
    sig = sign_challenge(alice.signing_key, nonce, context=ctx)
    for args in [
        (bob.public_key, nonce, sig),
        (alice.public_key[:31], nonce, sig),
        (alice.public_key, nonce[:31], sig),
        (alice.public_key, nonce, sig[:63]),
        (alice.public_key, nonce, bytes(64)),
    ]:
        with pytest.raises(ChallengeError):
            verify_challenge(*args, context=ctx)
    with pytest.raises(ChallengeError):
        verify_challenge(alice.public_key, nonce, sig, context=b"x" * 2000)


def test_context_parts_are_unambiguous() -> None:
    assert handshake_context(b"ab", b"c") != handshake_context(b"a", b"bc")
    assert handshake_context("a") == handshake_context(b"a")
    assert len(handshake_context()) == 32
