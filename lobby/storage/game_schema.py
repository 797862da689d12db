"""Game tables of the lobby services: world state, shard owners, event log, parties, items, trades.

Declared on the shared :data:`lobby.storage.metadata` so they can reference
``characters``; created by the baseline Alembic revision.

* ``world_meta``: key/value (JSON text) of the world: ``reality``, the Aetherfall
  schedule anchor, the active Aetherfall and its counter.
* ``shard_owners``: one row per shard ever captured (the owning faction, when, by whom).
* ``world_events``: the append-only event log (captures, reality shifts, Aetherfalls).
* ``parties``: one row per live party, its state as JSON (members, leader, invites).
* ``items``: every item instance with a unique id, never reused (``AUTOINCREMENT``
  on SQLite), owned by exactly one character (the single ``owner_id`` column makes
  "owned twice" unrepresentable).
* ``trades``: the record of every completed exchange.
* ``engagements``: every unfinished trade and running fight (``kind``), its state as
  JSON and a ``version`` each change bumps (:mod:`lobby.services.engagements`).
* ``engagement_members``: who takes part in which engagement; the primary key
  ``(kind, character_id)`` keeps a character in one trade and one fight at a time,
  whichever lobby process asks.
* ``shared_fences``: the fencing token of each piece of state the cluster's processes
  change under a lock (:mod:`lobby.cluster_state`).

Gold lives on ``characters.gold``.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from lobby.storage.schema import metadata

__all__ = [
    "engagement_members",
    "engagements",
    "items",
    "parties",
    "shard_owners",
    "shared_fences",
    "trades",
    "world_events",
    "world_meta",
]

world_meta = Table(
    "world_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

shard_owners = Table(
    "shard_owners",
    metadata,
    Column("shard_id", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(64), nullable=True),
    Column("captured_at", Float, nullable=True),
    Column("captured_by", Integer, nullable=True),
    Column("captured_by_name", String(64), nullable=True),
)

world_events = Table(
    "world_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_type", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("data", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_world_events_created", "created_at"),
)

parties = Table(
    "parties",
    metadata,
    Column("party_id", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("template_id", Integer, nullable=False),
    Column(
        "owner_id",
        Integer,
        ForeignKey("characters.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", Float, nullable=False),
    Index("ix_items_owner", "owner_id"),
    sqlite_autoincrement=True,  # an item id is never reused
)

trades = Table(
    "trades",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("trade_id", String(64), nullable=False),
    Column("initiator_id", Integer, nullable=False),
    Column("partner_id", Integer, nullable=False),
    Column("exchange", Text, nullable=False),
    Column("completed_at", Float, nullable=False),
)

engagements = Table(
    "engagements",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("data", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_engagements_kind", "kind"),
)

engagement_members = Table(
    "engagement_members",
    metadata,
    Column("kind", String(16), primary_key=True),
    # no foreign key to characters: a deleted character's row stays until its trade or
    # fight is ended through the usual path (its leave), which frees the partner too
    Column("character_id", Integer, primary_key=True),
    Column(
        "engagement_id",
        String(64),
        ForeignKey("engagements.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Index("ix_engagement_members_engagement", "engagement_id"),
)

shared_fences = Table(
    "shared_fences",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("token", Integer, nullable=False),
)
