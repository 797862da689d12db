"""What the lobby's rendezvous tells a client: peers' candidates, our own, and ICE servers.

* :class:`CandidateBook`: the candidates of every peer the lobby paired us
  with, from its ``PEER_INFO`` (or a REST entry): the latest entry of a
  character replaces the one before; an entry without a pairing (the lobby
  says we are not paired now), an offline one, or a departure drops them.
* :class:`LocalCandidates`: the candidates we register at select: host ones
  from the node's advertised endpoints, plus the server-reflexive and relayed
  ones the node learns later (STUN/TURN over its mesh socket) and adds.
* :class:`IceCache`: the lobby's STUN servers and TURN credentials
  (``GET /api/turn/credentials``), asked again only when the credentials near
  their end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from protocol.candidates import (
    MAX_CANDIDATES,
    Candidate,
    CandidateKind,
    PairingReason,
    endpoint_candidate,
    sorted_candidates,
)
from protocol.errors import ConfigError
from protocol.messages.peer import PeerInfoMessage
from protocol.rest import IceServersOut

__all__ = [
    "STUN_DEFAULT_PORT",
    "CandidateBook",
    "IceCache",
    "LocalCandidates",
    "PeerCandidates",
    "stun_server_address",
]

STUN_DEFAULT_PORT = 3478
"""RFC 8489's port for a ``stun:`` URL that names none."""

REFRESH_AT = 0.8
"""Ask for fresh TURN credentials past this fraction of their lifetime."""


@dataclass(frozen=True, slots=True)
class PeerCandidates:
    """A paired peer's addresses, as the lobby gave them (best first)."""

    character_id: int
    character_name: str
    node_id: str | None
    candidates: tuple[Candidate, ...]
    pairing: PairingReason
    pairing_id: str | None
    received_at: float

    def of_kind(self, kind: CandidateKind) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.kind is kind)

    def direct_addresses(self) -> list[tuple[str, int]]:
        """Where a hole punch dials, in order: host candidates (the same LAN, no NAT in
        the way), then server-reflexive ones (the peer's NAT mappings). Relayed
        candidates are the TURN path's, not a punch's."""
        return [
            (c.address, c.port)
            for c in self.candidates
            if c.kind in (CandidateKind.HOST, CandidateKind.SRFLX)
        ]


class CandidateBook:
    """The candidates of the peers the lobby paired us with (see the module docstring)."""

    def __init__(self) -> None:
        self._by_character: dict[int, PeerCandidates] = {}

    def update(self, msg: PeerInfoMessage, *, now: float) -> PeerCandidates | None:
        """Take one directory entry; returns what is now kept for that character."""
        if not msg.online or msg.pairing is None:
            self._by_character.pop(msg.character_id, None)
            return None
        candidates = list(msg.candidates)
        if not candidates:  # a 1.0 lobby: endpoints only, read as host candidates
            for rank, text in enumerate(msg.endpoints[:MAX_CANDIDATES]):
                try:
                    candidates.append(endpoint_candidate(text, local_preference=65535 - rank))
                except ValueError:
                    continue
        entry = PeerCandidates(
            character_id=msg.character_id,
            character_name=msg.character_name,
            node_id=msg.node_id,
            candidates=tuple(sorted_candidates(candidates)),
            pairing=msg.pairing,
            pairing_id=msg.pairing_id,
            received_at=now,
        )
        self._by_character[msg.character_id] = entry
        return entry

    def get(self, character_id: int) -> PeerCandidates | None:
        return self._by_character.get(character_id)

    def forget(self, character_id: int) -> None:
        self._by_character.pop(character_id, None)

    def restore(self, character_id: int, entry: PeerCandidates | None) -> None:
        """Put back what was kept for ``character_id`` before a refused update."""
        if entry is None:
            self._by_character.pop(character_id, None)
        else:
            self._by_character[character_id] = entry

    def clear(self) -> None:
        self._by_character.clear()

    @property
    def peers(self) -> Mapping[int, PeerCandidates]:
        """Every paired peer's candidates, by character id (read-only view)."""
        return MappingProxyType(self._by_character)


class LocalCandidates:
    """Our own candidates: host ones from the advertised endpoints, plus learned ones."""

    def __init__(self) -> None:
        self._learned: tuple[Candidate, ...] = ()
        self._turn: tuple[Candidate, ...] = ()
        self._host: tuple[Candidate, ...] = ()

    def set_host(self, endpoints: Iterable[str]) -> list[str]:
        """Take the node's advertised ``host:port`` endpoints; returns them.

        Raises :class:`ConfigError` for one that is not an IP address and port
        (the lobby takes addresses only, never names).
        """
        host = []
        kept = []
        for rank, text in enumerate(endpoints):
            try:
                host.append(endpoint_candidate(text, local_preference=max(0, 65535 - rank)))
            except ValueError as exc:
                raise ConfigError(f"cannot advertise {text!r}: {exc}") from None
            kept.append(text)
        self._host = tuple(host)
        return kept

    def learned_of(self, kind: CandidateKind) -> tuple[Candidate, ...]:
        return tuple(c for c in self._learned if c.kind is kind)

    def is_host(self, candidate: Candidate) -> bool:
        """``candidate``'s address and port are one of the host candidates (no NAT)."""
        return any((h.address, h.port) == (candidate.address, candidate.port) for h in self._host)

    def learn(self, candidates: Iterable[Candidate]) -> None:
        """Replace the server-reflexive and relayed candidates (host ones stay as bound)."""
        learned = tuple(c for c in candidates if c.kind is not CandidateKind.HOST)
        if len(learned) + len(self._host) + len(self._turn) > MAX_CANDIDATES:
            raise ConfigError(f"at most {MAX_CANDIDATES} candidates in all")
        self._learned = learned

    def learn_turn(self, candidates: Iterable[Candidate]) -> None:
        """Replace the candidates our TURN allocation gave (its relayed address, and our
        address as the TURN server saw it); the others stay."""
        turn = tuple(c for c in candidates if c.kind is not CandidateKind.HOST)
        if len(turn) + len(self._host) + len(self._learned) > MAX_CANDIDATES:
            raise ConfigError(f"at most {MAX_CANDIDATES} candidates in all")
        self._turn = turn

    @property
    def learned(self) -> tuple[Candidate, ...]:
        """The srflx/relay candidates registered besides the host endpoints."""
        return tuple(dict.fromkeys((*self._learned, *self._turn)))

    @property
    def all(self) -> list[Candidate]:
        """Every candidate we register, best first."""
        return sorted_candidates(dict.fromkeys((*self._host, *self.learned)))


class IceCache:
    """The lobby's ICE servers answer, kept while its TURN credentials are fresh."""

    def __init__(
        self, fetch: Callable[[], Awaitable[IceServersOut]], clock: Callable[[], float]
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._answer: IceServersOut | None = None
        self._fetched_at = 0.0

    async def get(self, *, refresh: bool = False) -> IceServersOut:
        """The cached answer, or a fresh one when asked, missing, or near expiry."""
        answer = self._answer
        if refresh or answer is None or self._stale(answer):
            answer = await self._fetch()
            self._answer = answer
            self._fetched_at = self._clock()
        return answer

    def clear(self) -> None:
        self._answer = None

    def _stale(self, answer: IceServersOut) -> bool:
        if answer.expires_at is None:
            return False  # STUN only: nothing to expire
        life = answer.expires_at - self._fetched_at
        return self._clock() >= self._fetched_at + REFRESH_AT * life


def stun_server_address(url: str) -> tuple[str, int] | None:
    """``stun:host[:port]`` (RFC 7064; ``[v6]`` in brackets, query ignored) as
    ``(host, port)``; None for another scheme or a malformed URL."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in ("stun", "turn"):
        return None
    rest = rest.partition("?")[0]
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            return None
        port_text = tail[1:]
    else:
        host, _, port_text = rest.partition(":")
    if not host:
        return None
    if not port_text:
        return host, STUN_DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)
