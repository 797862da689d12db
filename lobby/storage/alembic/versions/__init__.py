"""The lobby's Alembic revisions, ``vNNNN_<slug>.py``, loaded by Alembic by path."""

from __future__ import annotations

__all__: list[str] = []
