"""Baseline: the schema of the hand-written runner's newest step (3).

Accounts, characters and sessions; the game tables (world meta, shard owners,
the event log, parties, items, trades); ids of accounts, characters, sessions
and items never reused (``AUTOINCREMENT`` on SQLite). A database made by that
runner is converted and stamped here instead of running this revision (see
:mod:`lobby.storage.legacy`, which holds the one frozen definition).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from lobby.storage.legacy import baseline_metadata

__all__ = ["branch_labels", "depends_on", "down_revision", "downgrade", "revision", "upgrade"]

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    baseline_metadata().create_all(op.get_bind())


def downgrade() -> None:
    baseline_metadata().drop_all(op.get_bind())
