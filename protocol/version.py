"""Protocol version and the compatibility rule.

``PROTOCOL_VERSION`` is ``"major.minor"``. The rule, applied by
:func:`protocol.codec.deserialize` to every message's ``version`` field:

* a different **major** is incompatible: :class:`~protocol.errors.VersionMismatchError`
  naming both versions (an unparsable version string is treated the same way);
* the same major and the same or an **older minor** must match our schema exactly:
  an unknown field is an error (``extra="forbid"``);
* the same major and a **newer minor** may add *optional* top-level fields: those
  unknown to us are dropped before validation, everything we know is validated
  as usual (a newer minor must never change the meaning of an existing field).

History: 1.1 added ``PEER_INFO.candidates``, ``pairing`` and ``pairing_id``
(typed candidates and the lobby's pairing; :mod:`protocol.candidates`).
"""

from __future__ import annotations

import re

from protocol.errors import VersionMismatchError

__all__ = [
    "DISTRIBUTION",
    "PROTOCOL_VERSION",
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "VERSION_PATTERN",
    "check_version",
    "is_newer_minor",
    "parse_version",
]

PROTOCOL_VERSION = "1.1"
DISTRIBUTION = "shards-net"
"""The distribution (``pyproject.toml``) whose installed metadata holds the programs' version."""
VERSION_PATTERN = r"^[0-9]{1,4}\.[0-9]{1,4}$"

_VERSION_RE = re.compile(VERSION_PATTERN)


def parse_version(version: str) -> tuple[int, int]:
    """Return ``(major, minor)`` of a ``"major.minor"`` string.

    Raises :class:`VersionMismatchError` (naming both versions) when it is not one.
    """
    if not isinstance(version, str) or _VERSION_RE.match(version) is None:
        shown = _shown(version)
        raise VersionMismatchError(
            f"unparsable protocol version {shown} (ours is {PROTOCOL_VERSION})",
            details={"remote_version": shown, "local_version": PROTOCOL_VERSION},
        )
    major, _, minor = version.partition(".")
    return int(major), int(minor)


PROTOCOL_MAJOR, PROTOCOL_MINOR = parse_version(PROTOCOL_VERSION)


def check_version(remote: str) -> None:
    """Raise :class:`VersionMismatchError` unless ``remote`` has our major version."""
    if remote == PROTOCOL_VERSION:
        return
    major, _ = parse_version(remote)
    if major != PROTOCOL_MAJOR:
        raise VersionMismatchError(
            f"incompatible protocol version {remote} (ours is {PROTOCOL_VERSION})",
            details={"remote_version": remote, "local_version": PROTOCOL_VERSION},
        )


def is_newer_minor(remote: str) -> bool:
    """True when ``remote`` is compatible and has a newer minor than ours."""
    if remote == PROTOCOL_VERSION:
        return False
    major, minor = parse_version(remote)
    return major == PROTOCOL_MAJOR and minor > PROTOCOL_MINOR


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 32 else text[:32] + "..."
