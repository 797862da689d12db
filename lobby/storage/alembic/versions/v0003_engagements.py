"""Trades and fights held in the database; fencing tokens of the cluster's shared state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 20:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__ = ["branch_labels", "depends_on", "down_revision", "downgrade", "revision", "upgrade"]

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engagements",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_engagements_kind", "engagements", ["kind"])
    op.create_table(
        "engagement_members",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("character_id", sa.Integer(), nullable=False),
        sa.Column("engagement_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["engagement_id"], ["engagements.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("kind", "character_id"),
    )
    op.create_index("ix_engagement_members_engagement", "engagement_members", ["engagement_id"])
    op.create_table(
        "shared_fences",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("shared_fences")
    op.drop_index("ix_engagement_members_engagement", table_name="engagement_members")
    op.drop_table("engagement_members")
    op.drop_index("ix_engagements_kind", table_name="engagements")
    op.drop_table("engagements")
