"""Every discovery test runs under the multicast guard (mDNS on loopback only)."""

from __future__ import annotations

import pytest

from tests.mesh.discovery.guard import multicast_guard

__all__ = ["multicast_guard"]

pytestmark = pytest.mark.usefixtures("multicast_guard")


@pytest.fixture(autouse=True)
def _guard_every_test(multicast_guard: list[str]) -> list[str]:
    return multicast_guard
