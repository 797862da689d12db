"""Identities the protocol tests share: Alice and Bob talk, Mallory attacks.

Each is generated once per test module, so one module's keys never leak into another's.
"""

from __future__ import annotations

import pytest

from protocol.crypto import Identity

__all__ = ["alice", "bob", "mallory"]


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def bob() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def mallory() -> Identity:
    return Identity.generate()
