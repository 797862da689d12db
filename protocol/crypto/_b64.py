"""Strict unpadded base64url, the text form of keys and ticket parts.

The standard library decoder silently skips characters outside the alphabet and
accepts non-zero padding bits, so two different strings can decode to the same
bytes. Signed data must have exactly one text form, hence this strict variant.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["b64url_decode", "b64url_encode"]

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(data: bytes) -> str:
    """Encode ``data`` as base64url without ``=`` padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; raise :class:`ValueError` unless ``text`` is canonical."""
    if not isinstance(text, str) or _ALPHABET.fullmatch(text) is None or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data
