"""The event loops async tests run on: asyncio's, and uvloop where it is installed.

``tests/conftest.py`` runs async tests on the loop ``--loop`` names (asyncio by
default); a test or module marked :data:`BOTH_LOOPS` runs once on each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

__all__ = ["BOTH_LOOPS", "LOOPS"]

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
"""Loop factories by name."""
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a test dependency off Windows
    pass
else:
    LOOPS["uvloop"] = uvloop.new_event_loop

BOTH_LOOPS = pytest.mark.asyncio(loop_factories=list(LOOPS))
"""Run a test (or, as ``pytestmark``, a module's tests) once on each loop of :data:`LOOPS`."""
