"""Rendezvous bookkeeping of the peer directory: registered candidates, whisper pairings, ICE.

* :func:`registered_candidates`: what a select registers as the node's
  addresses (its ``endpoints`` as host candidates plus its typed
  ``candidates``), checked against the lobby's address policy.
* :class:`PairingBook`: the pairings that exist only because someone asked
  (a whisper, ``POST /api/peers/{id}/pair``), each alive for a bounded time
  with its pairing id.
* :func:`ice_servers`: the STUN servers and time-limited TURN REST credentials
  a node asks for (``GET /api/turn/credentials``); the TURN secret never leaves.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

from lobby.config import LobbySettings
from protocol.candidates import Candidate, check_candidates, endpoint_candidate
from protocol.errors import ErrorCode, LobbyError
from protocol.rest import IceServersOut
from protocol.turn import turn_rest_credentials

__all__ = ["PairingBook", "ice_servers", "new_pairing_id", "registered_candidates"]


def new_pairing_id() -> str:
    """A fresh, unguessable pairing id (both PEER_INFO of one pairing carry it)."""
    return secrets.token_urlsafe(12)


def registered_candidates(
    endpoints: Sequence[str], candidates: Iterable[Candidate], *, allow_loopback: bool
) -> list[Candidate]:
    """The node's addresses as the lobby keeps them: checked, deduplicated, best first.

    ``endpoints`` (the 1.0 field) become host candidates, listed in order of
    preference. Their syntax was checked by the request model; an address the
    lobby will not hand to peers is refused with ``LobbyError forbidden`` (403),
    naming it.
    """
    typed: list[Candidate] = []
    try:
        for rank, text in enumerate(endpoints):
            typed.append(endpoint_candidate(text, local_preference=max(0, 65535 - rank)))
        typed.extend(candidates)
        return check_candidates(typed, allow_loopback=allow_loopback)
    except ValueError as exc:
        raise LobbyError(
            f"refused peer address: {exc}",
            code=ErrorCode.FORBIDDEN,
            details={"field": "candidates"},
        ) from None


class PairingBook:
    """Whisper pairings: each with its pairing id, alive until a deadline.

    Indexed by character, so a departure or a lookup costs the pairings of that
    character, not of everyone. Expired pairings are dropped when met.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._pairs: dict[frozenset[int], tuple[float, str]] = {}
        self._by_character: dict[int, set[int]] = {}

    def whisper(self, a: int, b: int, *, now: float, pairing_id: str | None = None) -> str:
        """Pair ``a`` and ``b`` until ``now + ttl`` (renewed by each call); the pairing id
        (``pairing_id``: one another lobby process chose, else a fresh one)."""
        pairing_id = pairing_id or new_pairing_id()
        self._pairs[frozenset((a, b))] = (now + self._ttl, pairing_id)
        self._by_character.setdefault(a, set()).add(b)
        self._by_character.setdefault(b, set()).add(a)
        return pairing_id

    def whispering(self, a: int, b: int, *, now: float) -> str | None:
        """The pairing id while a whisper pairing of ``a`` and ``b`` lasts, else None."""
        key = frozenset((a, b))
        found = self._pairs.get(key)
        if found is None:
            return None
        until, pairing_id = found
        if now >= until:
            self._drop(a, b)
            return None
        return pairing_id

    def whisper_partners(self, character_id: int, *, now: float) -> list[int]:
        """The characters ``character_id`` is paired with by a live whisper pairing."""
        partners = sorted(self._by_character.get(character_id, ()))
        return [p for p in partners if self.whispering(character_id, p, now=now) is not None]

    def forget(self, character_id: int) -> None:
        """``character_id`` went offline: every whisper pairing of it ends."""
        for other in list(self._by_character.get(character_id, ())):
            self._drop(character_id, other)

    def clear(self) -> None:
        self._pairs.clear()
        self._by_character.clear()

    def __len__(self) -> int:
        return len(self._pairs)

    def _drop(self, a: int, b: int) -> None:
        self._pairs.pop(frozenset((a, b)), None)
        for x, y in ((a, b), (b, a)):
            others = self._by_character.get(x)
            if others is not None:
                others.discard(y)
                if not others:
                    del self._by_character[x]


def ice_servers(
    settings: LobbySettings,
    *,
    character_id: int,
    now: float,
    stun_host: str | None,
    stun_port: int | None,
) -> IceServersOut:
    """The answer of ``GET /api/turn/credentials`` for ``character_id`` at ``now``.

    ``stun_host`` / ``stun_port``: where the lobby's own STUN responder is
    reached (None when it does not run); TURN servers answer STUN too, so they
    follow it in ``stun_urls``.
    """
    stun_urls = []
    if stun_host and stun_port:
        host = f"[{stun_host}]" if ":" in stun_host else stun_host
        stun_urls.append(f"stun:{host}:{stun_port}")
    turn_urls = list(settings.turn_urls)
    for url in turn_urls:
        scheme, _, rest = url.partition(":")
        if scheme == "turn":
            stun = f"stun:{rest.partition('?')[0]}"
            if stun not in stun_urls:
                stun_urls.append(stun)
    if not turn_urls or settings.turn_secret is None:
        return IceServersOut(stun_urls=stun_urls)
    creds = turn_rest_credentials(
        settings.turn_secret.get_secret_value(), str(character_id), now=now, ttl=settings.turn_ttl
    )
    return IceServersOut(
        stun_urls=stun_urls,
        turn_urls=turn_urls,
        username=creds.username,
        password=creds.password,
        expires_at=creds.expires_at,
        ttl=settings.turn_ttl,
    )
