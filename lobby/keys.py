"""The lobby's Ed25519 signing key: created on first start, persisted in the data directory.

The key signs peer tickets (:func:`protocol.crypto.issue_ticket`). It is stored as
an unencrypted PKCS#8 PEM file ``lobby_key.pem`` with mode 0600, created
atomically (written to a temporary file in the same directory, then renamed),
so a crash never leaves a half-written key. Its public half is published in
``GET /api/status`` as unpadded base64url of the raw 32 bytes (the same text
form tickets use) together with its peer id, the value tickets name as issuer.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.crypto import (
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
    """The lobby signing key and the public forms of it."""

    private_key: Ed25519PrivateKey = field(repr=False)
    public_key: bytes = field(init=False)
    public_key_b64: str = field(init=False)
    peer_id: str = field(init=False)

    def __post_init__(self) -> None:
        raw = public_key_raw(self.private_key)
        object.__setattr__(self, "public_key", raw)
        object.__setattr__(self, "public_key_b64", b64url_encode(raw))
        object.__setattr__(self, "peer_id", peer_id(raw))


def load_or_create_key(data_dir: Path) -> LobbyKey:
    """Load ``data_dir/lobby_key.pem``, creating it (0600) if absent."""
    path = data_dir / KEY_FILE_NAME
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return _create(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the lobby key {path}: {exc}") from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("lobby key %s is readable by others (mode %o); fixing to 0600", path, mode)
        path.chmod(0o600)
    try:
        return LobbyKey(load_private_key_pem(pem))
    except CryptoError as exc:
        raise ConfigError(f"the lobby key {path} is unusable: {exc}") from None


def _create(path: Path) -> LobbyKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_identity_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(dump_private_key_pem(key))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    lobby_key = LobbyKey(key)
    log.info("created lobby signing key %s (peer id %s)", path, lobby_key.peer_id)
    return lobby_key
