"""Helpers shared by the rule modules: seeded random streams and refusals."""

from __future__ import annotations

import hashlib
import random
from typing import Any, NoReturn

from protocol.errors import ErrorCode, GameRuleError

__all__ = ["derive_rng", "refuse"]


def derive_rng(seed: int, *parts: object) -> random.Random:
    """A private random stream fixed by ``seed`` and ``parts``, never the global one.

    Game outcomes only need to be reproducible, not unpredictable, and the streams
    are derived with SHA-256 so they do not depend on ``PYTHONHASHSEED``.
    """
    material = repr((seed, *parts)).encode("utf-8")
    digest = hashlib.sha256(material).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))  # noqa: S311 - game dice, not secrets


def refuse(code: ErrorCode, message: str, **details: Any) -> NoReturn:
    """Raise the :class:`GameRuleError` a refused request becomes."""
    raise GameRuleError(message, code=code, details=details or None)
