"""The peer node: QUIC mesh, discovery and the seed's ``NetworkClient``."""

from __future__ import annotations

__all__: list[str] = []
