"""Fixtures of the game-rule tests: the shipped world, and variants of it."""

from __future__ import annotations

import pytest

from lobby.game.world import WorldDefinition, load_world


@pytest.fixture(scope="session")
def world() -> WorldDefinition:
    return load_world()
