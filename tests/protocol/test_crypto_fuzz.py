"""Property tests: arbitrary input into verifiers and openers raises only documented errors."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.crypto import (
    FernetSealer,
    Identity,
    derive_fernet_key,
    derive_group_key,
    issue_ticket,
    open_from_peer,
    seal_to_peer,
    verify_challenge,
    verify_group_proof,
    verify_self_ticket,
    verify_ticket,
)
from protocol.errors import ChallengeError, SealError, TicketError

__all__: list[str] = []

NOW = 1_750_000_000.0
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def sealer() -> FernetSealer:
    return FernetSealer(derive_fernet_key("fuzz", b"fuzz-salt"))


@pytest.fixture(scope="module")
def token(alice: Identity, bob: Identity) -> str:
    return issue_ticket(
        alice.signing_key,
        character_id=9,
        character_name="Fuzz",
        faction="Void",
        public_key=bob.public_key,
        box_key=bob.box_public_key,
        endpoints=["10.0.0.1:4433"],
        now=NOW,
        ttl=60,
    )


@SETTINGS
@given(text=st.text(max_size=600))
def test_verify_ticket_arbitrary_text(alice: Identity, text: str) -> None:
    with pytest.raises(TicketError):
        verify_ticket(text, alice.public_key, now=NOW)
    with pytest.raises(TicketError):
        verify_self_ticket(text, now=NOW)


@SETTINGS
@given(index=st.integers(min_value=0), char=st.characters())
def test_verify_ticket_mutated_token(alice: Identity, token: str, index: int, char: str) -> None:
    i = index % len(token)
    mutated = token[:i] + char + token[i + 1 :]
    if mutated == token:
        return
    with pytest.raises(TicketError):
        verify_ticket(mutated, alice.public_key, now=NOW)


@SETTINGS
@given(prefix=st.sampled_from(["st1.", "st1.e30.", ""]), parts=st.lists(st.text(), max_size=5))
def test_verify_ticket_shaped_junk(alice: Identity, prefix: str, parts: list[str]) -> None:
    with pytest.raises(TicketError):
        verify_ticket(prefix + ".".join(parts), alice.public_key, now=NOW)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_fernet_open_arbitrary(sealer: FernetSealer, data: bytes) -> None:
    with pytest.raises(SealError):
        sealer.open(data, now=NOW, ttl=60)


@SETTINGS
@given(data=st.binary(max_size=400), sender=st.binary(max_size=40))
def test_open_from_peer_arbitrary(
    alice: Identity, bob: Identity, data: bytes, sender: bytes
) -> None:
    with pytest.raises(SealError):
        open_from_peer(data, recipient_box_private=bob.box_key, sender_public_key_raw=sender)
    with pytest.raises(SealError):
        open_from_peer(
            data, recipient_box_private=bob.box_key, sender_public_key_raw=alice.public_key
        )


@SETTINGS
@given(index=st.integers(min_value=0), value=st.integers(min_value=1, max_value=255))
def test_open_from_peer_mutated(alice: Identity, bob: Identity, index: int, value: int) -> None:
    blob = bytearray(
        seal_to_peer(
            b"payload", recipient_box_key=bob.box_public_key, sender_identity_key=alice.signing_key
        )
    )
    blob[index % len(blob)] ^= value
    with pytest.raises(SealError):
        open_from_peer(
            bytes(blob), recipient_box_private=bob.box_key, sender_public_key_raw=alice.public_key
        )


@SETTINGS
@given(
    key=st.binary(max_size=40),
    nonce=st.binary(max_size=40),
    sig=st.binary(max_size=80),
    ctx=st.binary(max_size=64),
)
def test_verify_challenge_arbitrary(key: bytes, nonce: bytes, sig: bytes, ctx: bytes) -> None:
    with pytest.raises(ChallengeError):
        verify_challenge(key, nonce, sig, context=ctx)


@pytest.fixture(scope="module")
def group_key() -> bytes:
    return derive_group_key("fuzz group")


@SETTINGS
@given(nonce=st.binary(max_size=80), key=st.binary(max_size=40), proof=st.binary(max_size=40))
def test_verify_group_proof_arbitrary(
    group_key: bytes, nonce: bytes, key: bytes, proof: bytes
) -> None:
    with pytest.raises(ChallengeError):
        verify_group_proof(group_key, nonce, key, proof)
