"""The world's event log (the Eternal Chronicle): what is written when the world changes.

Pure functions from the rule modules' outcomes to :class:`LogEntry` values (kind,
text, JSON-ready data), which the lobby appends to its ``world_events`` table and
shows in ``WORLD_STATE`` / ``GET /api/world/events``, and to the
``WORLD_ANNOUNCEMENT`` the Chronicle broadcasts with the biggest of them:

* ``shard_captured``: a capture (who, which shard, for which faction, from whom);
* ``reality_shift``: a capture that shifted the reality;
* ``aetherfall``: an Aetherfall struck (its :meth:`AetherfallEvent.to_dict` as data);
* ``aetherfall_end``: the Aetherfall's time ran out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lobby.game.shards import AetherfallEvent, CaptureOutcome, RealityShift
from protocol.messages import WorldAnnouncementMessage

__all__ = [
    "ANNOUNCER",
    "LogEntry",
    "aetherfall_announcement",
    "aetherfall_end_entry",
    "aetherfall_entry",
    "capture_entries",
    "reality_shift_announcement",
]

ANNOUNCER = "The Eternal Chronicle"
"""The sender name of the world's own announcements."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the world event log."""

    kind: str
    description: str
    data: dict[str, Any]


def capture_entries(
    outcome: CaptureOutcome, *, character_id: int, character_name: str, faction: str
) -> list[LogEntry]:
    """The capture's entry, then the reality shift's if the capture caused one."""
    shard = outcome.shard
    entries = [
        LogEntry(
            "shard_captured",
            f"{character_name} captured {shard.name} for the {faction}",
            {
                "shard_id": shard.id,
                "faction": faction,
                "previous_faction": outcome.previous_owner,
                "character_id": character_id,
                "location_id": shard.location_id,
            },
        )
    ]
    shift = outcome.reality_shift
    if shift is not None:
        entries.append(
            LogEntry(
                "reality_shift",
                f"Reality shifts from {shift.from_reality} to {shift.to_reality}: "
                f"the {shift.faction} hold {shift.shards_held} shards",
                {
                    "from": shift.from_reality,
                    "to": shift.to_reality,
                    "faction": shift.faction,
                    "shards_held": shift.shards_held,
                },
            )
        )
    return entries


def aetherfall_entry(event: AetherfallEvent, *, number: int) -> LogEntry:
    """The entry of the ``number``-th Aetherfall (counted since the world began)."""
    return LogEntry(
        "aetherfall",
        f"Aetherfall #{number} strikes {event.epicentre_name} "
        f"({event.damage} damage in locations {list(event.struck_location_ids)})",
        event.to_dict(),
    )


def aetherfall_end_entry(event: AetherfallEvent) -> LogEntry:
    return LogEntry(
        "aetherfall_end",
        f"The Aetherfall over {event.epicentre_name} has passed",
        {"seed": event.seed, "ends_at": event.ends_at},
    )


def reality_shift_announcement(shift: RealityShift) -> WorldAnnouncementMessage:
    return WorldAnnouncementMessage(
        sender_name=ANNOUNCER,
        content=f"Reality shifts: the world is now {shift.to_reality}.",
        priority="warning",
    )


def aetherfall_announcement(event: AetherfallEvent) -> WorldAnnouncementMessage:
    return WorldAnnouncementMessage(
        sender_name=ANNOUNCER,
        content=f"The Aether falls on {event.epicentre_name}!",
        priority="critical",
    )
