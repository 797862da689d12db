"""The seed's Fernet layer with an explicit clock."""

from __future__ import annotations

import pytest

from protocol.crypto import FernetSealer, derive_fernet_key
from protocol.errors import SealError

__all__: list[str] = []

NOW = 1_750_000_000.0
SALT = b"shards-test-salt"


@pytest.fixture(scope="module")
def key() -> bytes:
    return derive_fernet_key("your-encryption-key", SALT)


@pytest.fixture(scope="module")
def other_key() -> bytes:
    return derive_fernet_key("another-key", SALT)


def test_key_shape(key: bytes) -> None:
    assert len(key) == 44
    assert derive_fernet_key("your-encryption-key", SALT) == key


def test_round_trip(key: bytes) -> None:
    sealer = FernetSealer(key)
    token = sealer.seal(b"secret payload", now=NOW)
    assert sealer.open(token, now=NOW) == b"secret payload"
    assert sealer.open(token, now=NOW + 10**6) == b"secret payload"  # no ttl
    assert "key" in repr(sealer)
    assert key.decode() not in repr(sealer)


def test_wrong_key(key: bytes, other_key: bytes) -> None:
    token = FernetSealer(key).seal(b"x", now=NOW)
    with pytest.raises(SealError):
        FernetSealer(other_key).open(token, now=NOW)


@pytest.mark.parametrize("index", [0, 10, 30, 60, -1])
def test_tampered_token(key: bytes, index: int) -> None:
    sealer = FernetSealer(key)
    token = bytearray(sealer.seal(b"some data here", now=NOW))
    token[index] = ord("A") if token[index] != ord("A") else ord("B")
    with pytest.raises(SealError):
        sealer.open(bytes(token), now=NOW)


def test_ttl_with_explicit_now(key: bytes) -> None:
    sealer = FernetSealer(key)
    token = sealer.seal(b"x", now=NOW)
    assert sealer.open(token, now=NOW + 30, ttl=30) == b"x"
    with pytest.raises(SealError):
        sealer.open(token, now=NOW + 31, ttl=30)


def test_future_token_refused(key: bytes) -> None:
    sealer = FernetSealer(key)
    token = sealer.seal(b"x", now=NOW + 3600)
    with pytest.raises(SealError):
        sealer.open(token, now=NOW)
    with pytest.raises(SealError):
        sealer.open(token, now=NOW, ttl=10**6)


def test_garbage_and_bad_key(key: bytes) -> None:
    sealer = FernetSealer(key)
    for junk in (b"", b"gAAAA", b"\xff" * 100, b"x" * (2 << 20)):
        with pytest.raises(SealError):
            sealer.open(junk, now=NOW)
    with pytest.raises(ValueError):
        FernetSealer(b"not a key")
    with pytest.raises(ValueError):
        derive_fernet_key("secret", b"short")
