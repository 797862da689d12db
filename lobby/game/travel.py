"""Travel on the world map (the ``MOVE`` rules): one step to a neighbour, shortest paths.

A move is valid when the destination exists, differs from the current location,
is a neighbour of it, the mover is not in combat, and - if the client stated
where it moves from - that statement matches the server's record (a stale client
is refused rather than teleported). Every refusal is a
:class:`~protocol.errors.GameRuleError` with code ``INVALID_MOVE``.
"""

from __future__ import annotations

from collections import deque

from lobby.game._common import refuse
from lobby.game.world import LocationDef, WorldDefinition
from protocol.errors import ErrorCode

__all__ = ["path_between", "validate_move"]


def validate_move(
    world: WorldDefinition,
    *,
    current_location_id: int,
    to_location_id: int,
    claimed_from_id: int | None = None,
    in_combat: bool = False,
) -> LocationDef:
    """Check a move from ``current_location_id``; return the destination or raise."""
    destination = world.location(to_location_id)
    if destination is None:
        refuse(
            ErrorCode.INVALID_MOVE,
            f"no location with id {to_location_id}",
            to_location_id=to_location_id,
        )
    if world.location(current_location_id) is None:
        # A character stored at a location an operator removed: let it walk to the start.
        if to_location_id == world.start_location_id:
            return destination
        refuse(
            ErrorCode.INVALID_MOVE,
            f"current location {current_location_id} no longer exists; move to the start "
            f"location {world.start_location_id}",
            current_location_id=current_location_id,
        )
    if claimed_from_id is not None and claimed_from_id != current_location_id:
        refuse(
            ErrorCode.INVALID_MOVE,
            f"you are at location {current_location_id}, not {claimed_from_id}",
            current_location_id=current_location_id,
            from_location_id=claimed_from_id,
        )
    if in_combat:
        refuse(ErrorCode.INVALID_MOVE, "cannot move while in combat: flee first")
    if to_location_id == current_location_id:
        refuse(
            ErrorCode.INVALID_MOVE,
            f"already at {destination.name}",
            to_location_id=to_location_id,
        )
    if not world.are_neighbours(current_location_id, to_location_id):
        refuse(
            ErrorCode.INVALID_MOVE,
            f"{destination.name} is not next to location {current_location_id}",
            current_location_id=current_location_id,
            to_location_id=to_location_id,
        )
    return destination


def path_between(world: WorldDefinition, start: int, goal: int) -> list[int] | None:
    """A shortest list of location ids from ``start`` to ``goal`` (both included), or None."""
    if world.location(start) is None or world.location(goal) is None:
        return None
    previous: dict[int, int | None] = {start: None}
    todo = deque([start])
    while todo:
        here = todo.popleft()
        if here == goal:
            path = [here]
            step = previous[here]
            while step is not None:
                path.append(step)
                step = previous[step]
            return path[::-1]
        location = world.location(here)
        for n in sorted(location.neighbours) if location is not None else ():
            if n not in previous:
                previous[n] = here
                todo.append(n)
    return None
