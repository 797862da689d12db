"""Adapters from the product's ``mesh.PeerNode`` to the benchmarks' endpoint interface."""

from __future__ import annotations

from typing import Any

from bench._common import Skip

__all__ = ["peer_endpoint", "product_skip_reason"]


def product_skip_reason() -> str | None:
    """Why the mesh benchmarks cannot measure the product yet (None: they can)."""
    try:
        import mesh
    except ImportError as exc:
        return f"mesh does not import ({exc})"
    if not hasattr(mesh, "PeerNode"):
        return "mesh.PeerNode has not landed yet"
    return None


async def peer_endpoint(options: dict[str, Any]) -> Any:
    raise Skip("mesh.PeerNode adapter not written yet")
