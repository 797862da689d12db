"""The master lobby: accounts, sessions, characters and the authoritative world."""

from __future__ import annotations

__all__: list[str] = []
