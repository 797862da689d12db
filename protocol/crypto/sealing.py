"""The seed's Fernet payload encryption, with time as a parameter.

Key derivation follows the seed: PBKDF2-HMAC-SHA256, 100,000 iterations, 32
bytes, urlsafe base64 (the form :class:`cryptography.fernet.Fernet` takes).
:class:`FernetSealer` wraps Fernet's ``encrypt_at_time`` / ``decrypt_at_time``
so no clock is read here: the caller passes ``now``.

Fernet authenticates (HMAC-SHA256) before it decrypts; any altered, truncated or
foreign token, a wrong key, an expired token (``ttl``) or one stamped more than
:data:`MAX_CLOCK_SKEW` seconds in the future raises :class:`SealError`.
"""

from __future__ import annotations

import base64
import binascii
import math

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from protocol.crypto.group import PBKDF2_ITERATIONS
from protocol.errors import SealError

__all__ = [
    "MAX_CLOCK_SKEW",
    "MAX_FERNET_TOKEN_SIZE",
    "WS_FERNET_SALT",
    "FernetSealer",
    "derive_fernet_key",
]

MAX_FERNET_TOKEN_SIZE = 1 << 20
"""Largest token :meth:`FernetSealer.open` looks at (1 MiB)."""
MAX_CLOCK_SKEW = 60
"""Seconds a token's timestamp may lie in the future of ``now`` (Fernet's own value)."""
WS_FERNET_SALT = b"shards-of-eternity/ws-fernet/v1"
"""PBKDF2 salt of the lobby WebSocket's Fernet key (the lobby and its clients derive
``derive_fernet_key(secret, WS_FERNET_SALT)`` from the secret they share)."""
_NO_TTL = 1 << 62


def derive_fernet_key(secret: str, salt: bytes) -> bytes:
    """Fernet key from a shared secret: urlsafe base64 of PBKDF2-SHA256(secret, salt, 100,000)."""
    if not isinstance(secret, str) or not secret:
        raise ValueError("the secret must be a non-empty str")
    if not isinstance(salt, bytes | bytearray) or len(salt) < 8:
        raise ValueError("the salt must be at least 8 bytes")
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=bytes(salt), iterations=PBKDF2_ITERATIONS
    )
    return base64.urlsafe_b64encode(kdf.derive(secret.encode("utf-8")))


class FernetSealer:
    """Seal and open Fernet tokens with an explicit clock.

    ``key`` is a Fernet key (urlsafe base64 of 32 bytes), e.g. from
    :func:`derive_fernet_key`; a malformed key raises :class:`ValueError`.
    """

    __slots__ = ("_fernet",)

    def __init__(self, key: bytes | str) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise ValueError("not a Fernet key (urlsafe base64 of 32 bytes)") from exc

    def __repr__(self) -> str:
        return "FernetSealer(<key>)"

    def seal(self, data: bytes, *, now: float) -> bytes:
        """Encrypt and authenticate ``data``, stamped with ``now`` (unix seconds)."""
        if not isinstance(data, bytes | bytearray):
            raise TypeError("data must be bytes")
        return self._fernet.encrypt_at_time(bytes(data), _whole_seconds(now))

    def open(self, token: bytes, *, now: float, ttl: float | None = None) -> bytes:
        """Decrypt a token sealed by the same key; raise :class:`SealError` otherwise.

        With ``ttl`` set, a token older than ``ttl`` seconds at ``now`` is refused.
        Whatever ``ttl``, a token stamped over a minute past ``now`` is refused.
        """
        if not isinstance(token, bytes | bytearray | str):
            raise SealError("a sealed token is bytes")
        if len(token) > MAX_FERNET_TOKEN_SIZE:
            raise SealError("sealed token too large")
        if ttl is not None and (not math.isfinite(ttl) or ttl < 0):
            raise ValueError("ttl must be a finite, non-negative number of seconds")
        ttl_seconds = _NO_TTL if ttl is None else int(ttl)
        try:
            return self._fernet.decrypt_at_time(
                bytes(token) if not isinstance(token, str) else token,
                ttl_seconds,
                _whole_seconds(now),
            )
        except (InvalidToken, ValueError, TypeError) as exc:
            raise SealError("sealed token does not open (wrong key, altered or expired)") from exc


def _whole_seconds(now: float) -> int:
    if not math.isfinite(now) or now < 0:
        raise ValueError("now must be a finite unix time")
    return math.floor(now)
