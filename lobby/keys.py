"""The lobby's Ed25519 signing key: created on first start, persisted in the data directory.

The key signs peer tickets (:func:`protocol.crypto.issue_ticket`). It is stored as
an unencrypted PKCS#8 PEM file ``lobby_key.pem`` with mode 0600, created
atomically (written to a temporary file in the same directory, then renamed),
so a crash never leaves a half-written key. Its public half is published in
``GET /api/status`` as unpadded base64url of the raw 32 bytes (the same text
form tickets use) together with its peer id, the value tickets name as issuer.

Several lobby processes (a cluster) must sign with one key: point them all at the
same file (``ticket_key_file``). Creation is race-free: the first process to
create it wins (a hard link that fails if the file appeared meanwhile) and the
others load that one.

Rotation without dropping peers: peers accept a ticket signed by any of the
lobby's *trusted* keys, the signing key plus ``ticket_accepted_keys`` (public
keys, unpadded base64url), which ``/api/status`` and the select answer publish as
``lobby_accepted_keys``. To rotate: (1) add the new public key to
``ticket_accepted_keys`` everywhere, and wait ``ticket_ttl`` (every peer has
renewed its ticket and learnt the key); (2) make the new key the signing key and
the old one accepted; (3) after another ``ticket_ttl`` every ticket of the old
key has expired: drop it. Processes restart one at a time (graceful drain).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.crypto import (
    b64url_decode,
    b64url_encode,
    dump_private_key_pem,
    generate_identity_key,
    load_private_key_pem,
    peer_id,
    public_key_raw,
)
from protocol.errors import ConfigError, CryptoError

__all__ = ["KEY_FILE_NAME", "LobbyKey", "load_or_create_key"]

KEY_FILE_NAME = "lobby_key.pem"

log = logging.getLogger("lobby.keys")


@dataclass(frozen=True, slots=True)
class LobbyKey:
    """The lobby signing key and the public forms of it, and the other keys peers trust."""

    private_key: Ed25519PrivateKey = field(repr=False)
    accepted: tuple[bytes, ...] = ()
    """Raw public keys whose tickets peers still (or already) accept: a rotation's other key."""
    public_key: bytes = field(init=False)
    public_key_b64: str = field(init=False)
    peer_id: str = field(init=False)

    def __post_init__(self) -> None:
        raw = public_key_raw(self.private_key)
        object.__setattr__(self, "public_key", raw)
        object.__setattr__(self, "public_key_b64", b64url_encode(raw))
        object.__setattr__(self, "peer_id", peer_id(raw))
        if any(len(k) != 32 for k in self.accepted):
            raise ConfigError("an accepted ticket key must be 32 raw bytes")

    @property
    def accepted_b64(self) -> list[str]:
        """``accepted`` as unpadded base64url (the form ``/api/status`` publishes)."""
        return [b64url_encode(k) for k in self.accepted if k != self.public_key]

    @property
    def trusted(self) -> tuple[bytes, ...]:
        """Every key a ticket of this lobby may be signed with (the signing key first)."""
        return (self.public_key, *(k for k in self.accepted if k != self.public_key))


def load_or_create_key(
    data_dir: Path, *, path: Path | None = None, accepted: Sequence[str] = ()
) -> LobbyKey:
    """Load ``path`` (default ``data_dir/lobby_key.pem``), creating it (0600) if absent.

    ``accepted``: other public keys (unpadded base64url) peers should trust too.
    """
    path = path or data_dir / KEY_FILE_NAME
    extra = tuple(_public_key(text) for text in accepted)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        created = _create(path)
        return LobbyKey(created.private_key, extra) if extra else created
    except OSError as exc:
        raise ConfigError(f"cannot read the lobby key {path}: {exc}") from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("lobby key %s is readable by others (mode %o); fixing to 0600", path, mode)
        path.chmod(0o600)
    try:
        return LobbyKey(load_private_key_pem(pem), extra)
    except CryptoError as exc:
        raise ConfigError(f"the lobby key {path} is unusable: {exc}") from None


def _public_key(text: str) -> bytes:
    try:
        raw = b64url_decode(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"not an Ed25519 public key (32 bytes, base64url): {text[:60]!r}")
    return raw


def _create(path: Path) -> LobbyKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_identity_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(dump_private_key_pem(key))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile
        except FileExistsError:
            log.info("lobby key %s was created by another process; using that one", path)
            return LobbyKey(load_private_key_pem(path.read_bytes()))
        finally:
            tmp.unlink(missing_ok=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    lobby_key = LobbyKey(key)
    log.info("created lobby signing key %s (peer id %s)", path, lobby_key.peer_id)
    return lobby_key
