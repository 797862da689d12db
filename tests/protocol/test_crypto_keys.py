"""Identity keys: persistence round trips, peer ids, the derived box key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocol.crypto import (
    Identity,
    b64url_decode,
    b64url_encode,
    box_private_key,
    box_public_raw,
    dump_private_key_pem,
    dump_private_key_raw,
    generate_identity_key,
    load_private_key_pem,
    load_private_key_raw,
    peer_id,
    public_key_raw,
)
from protocol.errors import CryptoError

__all__: list[str] = []


def test_raw_round_trip_keeps_identity() -> None:
    key = generate_identity_key()
    again = load_private_key_raw(dump_private_key_raw(key))
    assert public_key_raw(again) == public_key_raw(key)
    assert len(public_key_raw(key)) == 32


@pytest.mark.parametrize("password", [None, b"hunter2"])
def test_pem_round_trip(password: bytes | None) -> None:
    key = generate_identity_key()
    pem = dump_private_key_pem(key, password=password)
    assert pem.startswith(b"-----BEGIN")
    assert public_key_raw(load_private_key_pem(pem, password=password)) == public_key_raw(key)


def test_bad_key_material_is_crypto_error() -> None:
    with pytest.raises(CryptoError):
        load_private_key_raw(b"short")
    with pytest.raises(CryptoError):
        load_private_key_pem(b"not a pem")
    pem = dump_private_key_pem(generate_identity_key(), password=b"right")
    with pytest.raises(CryptoError):
        load_private_key_pem(pem, password=b"wrong")


def test_peer_id_is_stable_and_distinct() -> None:
    a, b = generate_identity_key(), generate_identity_key()
    pid = peer_id(public_key_raw(a))
    assert pid == peer_id(public_key_raw(a))
    assert pid != peer_id(public_key_raw(b))
    assert len(pid) == 32
    assert int(pid, 16) >= 0
    with pytest.raises(ValueError):
        peer_id(b"\x00" * 31)


def test_box_key_is_derived_deterministically() -> None:
    key = generate_identity_key()
    restored = load_private_key_raw(dump_private_key_raw(key))
    assert box_public_raw(box_private_key(key)) == box_public_raw(box_private_key(restored))
    other = generate_identity_key()
    assert box_public_raw(box_private_key(key)) != box_public_raw(box_private_key(other))


def test_identity_bundle() -> None:
    ident = Identity.generate()
    assert ident.peer_id == peer_id(ident.public_key)
    assert ident.box_public_key == box_public_raw(ident.box_key)
    assert Identity.from_raw(ident.to_raw()).box_public_key == ident.box_public_key
    assert Identity.from_pem(ident.to_pem()).peer_id == ident.peer_id
    assert "box_key" not in repr(ident)


def test_b64url_is_strict() -> None:
    assert b64url_encode(b"\xff\xfe") == "__4"
    assert b64url_decode("__4") == b"\xff\xfe"
    for bad in ("__4=", "__5", "a", "a b", "+/8", "é"):
        with pytest.raises(ValueError):
            b64url_decode(bad)


def test_import_is_pure() -> None:
    code = (
        "import sys, protocol.crypto; "
        "bad = [m for m in ('asyncio', 'aiohttp', 'aioquic', 'zeroconf') if m in sys.modules]; "
        "print(*bad, file=sys.stderr); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
