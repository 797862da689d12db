"""Parties: a state machine per party and a book that keeps one party per character.

Rules (refusals are :class:`~protocol.errors.GameRuleError`):

* any member may invite (``NOT_IN_PARTY`` otherwise); an invite names the
  character and the account owning it, and expires ``rules.invite_ttl_seconds``
  after it was made; inviting again refreshes it; it dies with the character
  (:meth:`PartyBook.drop_invites`);
* accepting needs a live invite (``NOT_FOUND`` if none, ``INVITE_EXPIRED`` once
  ``now >= expires_at``, ``FORBIDDEN`` if it was made to another account's
  character of that id, which drops it) and room (``PARTY_FULL``: members count against
  ``rules.party_size_limit``; pending invites do not, but inviting into a full
  party is refused);
* only the leader kicks or disbands (``NOT_PARTY_LEADER``); the leader cannot kick
  themself (``BAD_REQUEST``: leave instead);
* when the leader leaves, leadership passes to the longest-standing member
  (earliest ``joined_at``, then join order); the last member leaving disbands;
* a character is in at most one party (:class:`PartyBook`: ``ALREADY_IN_PARTY``).

Every change returns a :class:`PartyChange`: its ``snapshot`` is the ``PARTY_UPDATE``
payload and ``notify`` the character ids to send it to (members after the change,
plus whoever was removed or invited).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lobby.game._common import refuse
from lobby.game.world import RulesDef
from protocol.errors import ErrorCode

__all__ = [
    "Party",
    "PartyBook",
    "PartyChange",
    "PartyInvite",
    "PartyMember",
]

ChangeKind = Literal[
    "created", "invited", "joined", "declined", "left", "kicked", "disbanded", "promoted"
]


@dataclass(frozen=True, slots=True)
class PartyMember:
    character_id: int
    name: str
    joined_at: float
    order: int


@dataclass(frozen=True, slots=True)
class PartyInvite:
    party_id: str
    character_id: int
    account_id: int
    """The account owning ``character_id`` when it was invited: only it may accept."""
    invited_by: int
    created_at: float
    expires_at: float

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def names(self, character_id: int, account_id: int) -> bool:
        """True if this invite is for ``character_id`` of ``account_id``."""
        return self.character_id == character_id and self.account_id == account_id


@dataclass(frozen=True, slots=True)
class PartyChange:
    """One change: what happened, to whom, the new snapshot and who to tell."""

    kind: ChangeKind
    party_id: str
    actor_id: int
    subject_id: int | None
    snapshot: dict[str, Any]
    notify: frozenset[int]


@dataclass
class Party:
    """One party's state. Create with :meth:`Party.create` (or :meth:`from_dict`)."""

    party_id: str
    leader_id: int
    size_limit: int
    invite_ttl: float
    members: list[PartyMember] = field(default_factory=list)
    invites: dict[int, PartyInvite] = field(default_factory=dict)
    disbanded: bool = False
    name: str | None = None
    _next_order: int = 0

    @classmethod
    def create(
        cls,
        party_id: str,
        *,
        leader_id: int,
        leader_name: str,
        now: float,
        rules: RulesDef,
        name: str | None = None,
    ) -> tuple[Party, PartyChange]:
        party = cls(
            party_id=party_id,
            leader_id=leader_id,
            size_limit=rules.party_size_limit,
            invite_ttl=rules.invite_ttl_seconds,
            name=name,
        )
        party._add(leader_id, leader_name, now)
        return party, party._change("created", leader_id, leader_id, now)

    # -- queries ---------------------------------------------------------------------------

    def member_ids(self) -> list[int]:
        return [m.character_id for m in self.members]

    def is_member(self, character_id: int) -> bool:
        return any(m.character_id == character_id for m in self.members)

    def is_full(self) -> bool:
        return len(self.members) >= self.size_limit

    def live_invite(
        self, character_id: int, now: float, *, account_id: int | None = None
    ) -> PartyInvite | None:
        """The unexpired invite of ``character_id`` (of ``account_id``, when given)."""
        invite = self.invites.get(character_id)
        if invite is None or invite.expired(now):
            return None
        if account_id is not None and invite.account_id != account_id:
            return None
        return invite

    def snapshot(self, now: float) -> dict[str, Any]:
        """The ``PARTY_UPDATE`` payload; expired invites are left out."""
        return {
            "party_id": self.party_id,
            "name": self.name,
            "leader_id": self.leader_id,
            "size_limit": self.size_limit,
            "disbanded": self.disbanded,
            "members": [
                {
                    "character_id": m.character_id,
                    "name": m.name,
                    "joined_at": m.joined_at,
                    "is_leader": m.character_id == self.leader_id,
                }
                for m in self.members
            ],
            "invites": [
                {
                    "character_id": i.character_id,
                    "invited_by": i.invited_by,
                    "expires_at": i.expires_at,
                }
                for i in sorted(self.invites.values(), key=lambda i: i.created_at)
                if not i.expired(now)
            ],
        }

    # -- transitions -----------------------------------------------------------------------

    def invite(self, actor_id: int, invitee_id: int, *, account_id: int, now: float) -> PartyChange:
        """Invite character ``invitee_id``, owned by ``account_id``."""
        self._require_open()
        self._require_member(actor_id)
        if self.is_member(invitee_id):
            refuse(
                ErrorCode.ALREADY_IN_PARTY,
                f"character {invitee_id} is already in this party",
                character_id=invitee_id,
            )
        if self.is_full():
            refuse(ErrorCode.PARTY_FULL, f"the party is full ({self.size_limit})")
        self.invites[invitee_id] = PartyInvite(
            party_id=self.party_id,
            character_id=invitee_id,
            account_id=account_id,
            invited_by=actor_id,
            created_at=now,
            expires_at=now + self.invite_ttl,
        )
        return self._change("invited", actor_id, invitee_id, now, extra=(invitee_id,))

    def accept(self, character_id: int, name: str, *, account_id: int, now: float) -> PartyChange:
        """Accept as ``character_id`` of ``account_id`` (the account the invite names)."""
        self._require_open()
        invite = self.invites.get(character_id)
        if invite is None:
            refuse(ErrorCode.NOT_FOUND, "no invite to this party", party_id=self.party_id)
        if invite.account_id != account_id:
            del self.invites[character_id]  # it names a character that no longer exists
            refuse(
                ErrorCode.FORBIDDEN,
                "this invite was made to another account's character",
                party_id=self.party_id,
            )
        if invite.expired(now):
            del self.invites[character_id]
            refuse(
                ErrorCode.INVITE_EXPIRED,
                "the invite has expired",
                party_id=self.party_id,
                expired_at=invite.expires_at,
            )
        if self.is_full():
            refuse(ErrorCode.PARTY_FULL, f"the party is full ({self.size_limit})")
        del self.invites[character_id]
        self._add(character_id, name, now)
        return self._change("joined", character_id, character_id, now)

    def decline(self, character_id: int, *, now: float) -> PartyChange:
        self._require_open()
        if self.invites.pop(character_id, None) is None:
            refuse(ErrorCode.NOT_FOUND, "no invite to this party", party_id=self.party_id)
        return self._change("declined", character_id, character_id, now, extra=(character_id,))

    def leave(self, character_id: int, *, now: float) -> PartyChange:
        """Leave; a leaving leader hands over to the longest-standing member."""
        self._require_open()
        self._require_member(character_id)
        self.members = [m for m in self.members if m.character_id != character_id]
        if not self.members:
            self.disbanded = True
            self.invites.clear()
            return self._change("disbanded", character_id, character_id, now, extra=(character_id,))
        if character_id == self.leader_id:
            self.leader_id = min(self.members, key=lambda m: (m.joined_at, m.order)).character_id
        return self._change("left", character_id, character_id, now, extra=(character_id,))

    def kick(self, actor_id: int, target_id: int, *, now: float) -> PartyChange:
        self._require_open()
        self._require_leader(actor_id)
        if target_id == actor_id:
            refuse(ErrorCode.BAD_REQUEST, "the leader cannot kick themself; leave instead")
        if not self.is_member(target_id):
            refuse(
                ErrorCode.NOT_IN_PARTY,
                f"character {target_id} is not in this party",
                character_id=target_id,
            )
        self.members = [m for m in self.members if m.character_id != target_id]
        return self._change("kicked", actor_id, target_id, now, extra=(target_id,))

    def promote(self, actor_id: int, target_id: int, *, now: float) -> PartyChange:
        """The leader hands leadership to another member."""
        self._require_open()
        self._require_leader(actor_id)
        if not self.is_member(target_id):
            refuse(
                ErrorCode.NOT_IN_PARTY,
                f"character {target_id} is not in this party",
                character_id=target_id,
            )
        self.leader_id = target_id
        return self._change("promoted", actor_id, target_id, now)

    def disband(self, actor_id: int, *, now: float) -> PartyChange:
        self._require_open()
        self._require_leader(actor_id)
        former = tuple(self.member_ids())
        self.members = []
        self.invites.clear()
        self.disbanded = True
        return self._change("disbanded", actor_id, None, now, extra=former)

    def drop_invite(self, character_id: int) -> PartyInvite | None:
        """Withdraw the invite of ``character_id`` (deleted), if any; return it."""
        return self.invites.pop(character_id, None)

    def expire_invites(self, now: float) -> list[PartyInvite]:
        """Drop and return the invites that have expired by ``now``."""
        gone = [i for i in self.invites.values() if i.expired(now)]
        for invite in gone:
            del self.invites[invite.character_id]
        return gone

    # -- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "party_id": self.party_id,
            "leader_id": self.leader_id,
            "size_limit": self.size_limit,
            "invite_ttl": self.invite_ttl,
            "disbanded": self.disbanded,
            "name": self.name,
            "members": [
                {"character_id": m.character_id, "name": m.name, "joined_at": m.joined_at}
                for m in self.members
            ],
            "invites": [
                {
                    "character_id": i.character_id,
                    "account_id": i.account_id,
                    "invited_by": i.invited_by,
                    "created_at": i.created_at,
                    "expires_at": i.expires_at,
                }
                for i in self.invites.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Party:
        """Rebuild from :meth:`to_dict` output (members in join order).

        An invite stored without its account (written by a version that did not
        record it) is dropped: nobody could tell whom it was meant for.
        """
        party = cls(
            party_id=str(data["party_id"]),
            leader_id=int(data["leader_id"]),
            size_limit=int(data["size_limit"]),
            invite_ttl=float(data["invite_ttl"]),
            disbanded=bool(data.get("disbanded", False)),
            name=None if data.get("name") is None else str(data["name"]),
        )
        for m in data.get("members", []):
            party._add(int(m["character_id"]), str(m["name"]), float(m["joined_at"]))
        for i in data.get("invites", []):
            if i.get("account_id") is None:
                continue
            invite = PartyInvite(
                party_id=party.party_id,
                character_id=int(i["character_id"]),
                account_id=int(i["account_id"]),
                invited_by=int(i["invited_by"]),
                created_at=float(i["created_at"]),
                expires_at=float(i["expires_at"]),
            )
            party.invites[invite.character_id] = invite
        return party

    # -- helpers ---------------------------------------------------------------------------

    def _add(self, character_id: int, name: str, now: float) -> None:
        self.members.append(PartyMember(character_id, name, now, self._next_order))
        self._next_order += 1

    def _require_open(self) -> None:
        if self.disbanded:
            refuse(ErrorCode.NOT_FOUND, "the party has been disbanded", party_id=self.party_id)

    def _require_member(self, character_id: int) -> None:
        if not self.is_member(character_id):
            refuse(ErrorCode.NOT_IN_PARTY, "not a member of this party", party_id=self.party_id)

    def _require_leader(self, character_id: int) -> None:
        self._require_member(character_id)
        if character_id != self.leader_id:
            refuse(
                ErrorCode.NOT_PARTY_LEADER,
                "only the party leader can do that",
                leader_id=self.leader_id,
            )

    def _change(
        self,
        kind: ChangeKind,
        actor_id: int,
        subject_id: int | None,
        now: float,
        *,
        extra: tuple[int, ...] = (),
    ) -> PartyChange:
        return PartyChange(
            kind=kind,
            party_id=self.party_id,
            actor_id=actor_id,
            subject_id=subject_id,
            snapshot=self.snapshot(now),
            notify=frozenset(self.member_ids()) | frozenset(extra),
        )


class PartyBook:
    """Every party of one lobby, keeping each character in at most one party.

    ``party_id`` values are the caller's (a database id) or, when omitted,
    ``"party-<n>"`` from a counter. Disbanded parties are dropped from the book.
    """

    def __init__(self, rules: RulesDef) -> None:
        self.rules = rules
        self._parties: dict[str, Party] = {}
        self._member_of: dict[int, str] = {}
        self._counter = 0

    def get(self, party_id: str) -> Party | None:
        return self._parties.get(party_id)

    def party_of(self, character_id: int) -> Party | None:
        party_id = self._member_of.get(character_id)
        return None if party_id is None else self._parties[party_id]

    def parties(self) -> list[Party]:
        return list(self._parties.values())

    def invites_for(
        self, character_id: int, now: float, *, account_id: int | None = None
    ) -> list[PartyInvite]:
        """The live invites a character (of ``account_id``, when given) holds, oldest first."""
        found = [
            invite
            for party in self._parties.values()
            if (invite := party.live_invite(character_id, now, account_id=account_id)) is not None
        ]
        return sorted(found, key=lambda i: i.created_at)

    def add(self, party: Party) -> None:
        """Adopt a party rebuilt from storage."""
        for cid in party.member_ids():
            if cid in self._member_of and self._member_of[cid] != party.party_id:
                refuse(ErrorCode.ALREADY_IN_PARTY, f"character {cid} is in another party")
        self._parties[party.party_id] = party
        for cid in party.member_ids():
            self._member_of[cid] = party.party_id

    def create(
        self,
        leader_id: int,
        leader_name: str,
        *,
        now: float,
        party_id: str | None = None,
        name: str | None = None,
    ) -> PartyChange:
        self._require_free(leader_id)
        if party_id is None:
            self._counter += 1
            party_id = f"party-{self._counter}"
            while party_id in self._parties:
                self._counter += 1
                party_id = f"party-{self._counter}"
        elif party_id in self._parties:
            refuse(ErrorCode.CONFLICT, f"party id {party_id!r} is taken")
        party, change = Party.create(
            party_id,
            leader_id=leader_id,
            leader_name=leader_name,
            now=now,
            rules=self.rules,
            name=name,
        )
        self.add(party)
        return change

    def invite(self, actor_id: int, invitee_id: int, *, account_id: int, now: float) -> PartyChange:
        party = self._party_of_member(actor_id)
        if invitee_id in self._member_of:
            refuse(
                ErrorCode.ALREADY_IN_PARTY,
                f"character {invitee_id} is already in a party",
                character_id=invitee_id,
            )
        return party.invite(actor_id, invitee_id, account_id=account_id, now=now)

    def accept(
        self, character_id: int, name: str, party_id: str, *, account_id: int, now: float
    ) -> PartyChange:
        party = self._existing(party_id)
        self._require_free(character_id)
        change = party.accept(character_id, name, account_id=account_id, now=now)
        self._member_of[character_id] = party_id
        # Joining one party voids the character's invites to every other.
        for other in self._parties.values():
            if other is not party:
                other.invites.pop(character_id, None)
        return change

    def decline(self, character_id: int, party_id: str, *, now: float) -> PartyChange:
        return self._existing(party_id).decline(character_id, now=now)

    def leave(self, character_id: int, *, now: float) -> PartyChange:
        party = self._party_of_member(character_id)
        change = party.leave(character_id, now=now)
        del self._member_of[character_id]
        self._forget_if_disbanded(party)
        return change

    def kick(self, actor_id: int, target_id: int, *, now: float) -> PartyChange:
        party = self._party_of_member(actor_id)
        change = party.kick(actor_id, target_id, now=now)
        del self._member_of[target_id]
        return change

    def promote(self, actor_id: int, target_id: int, *, now: float) -> PartyChange:
        return self._party_of_member(actor_id).promote(actor_id, target_id, now=now)

    def disband(self, actor_id: int, *, now: float) -> PartyChange:
        party = self._party_of_member(actor_id)
        change = party.disband(actor_id, now=now)
        for cid in change.notify:
            if self._member_of.get(cid) == party.party_id:
                del self._member_of[cid]
        self._forget_if_disbanded(party)
        return change

    def drop_invites(self, character_id: int) -> list[Party]:
        """The character is gone: withdraw its invites; return the parties that had one."""
        return [p for p in self._parties.values() if p.drop_invite(character_id) is not None]

    def expire_invites(self, now: float) -> list[PartyInvite]:
        gone: list[PartyInvite] = []
        for party in self._parties.values():
            gone.extend(party.expire_invites(now))
        return gone

    def _existing(self, party_id: str) -> Party:
        party = self._parties.get(party_id)
        if party is None:
            refuse(ErrorCode.NOT_FOUND, f"no party {party_id!r}", party_id=party_id)
        return party

    def _party_of_member(self, character_id: int) -> Party:
        party = self.party_of(character_id)
        if party is None:
            refuse(ErrorCode.NOT_IN_PARTY, "not in a party", character_id=character_id)
        return party

    def _require_free(self, character_id: int) -> None:
        if character_id in self._member_of:
            refuse(
                ErrorCode.ALREADY_IN_PARTY,
                "already in a party; leave it first",
                party_id=self._member_of[character_id],
            )

    def _forget_if_disbanded(self, party: Party) -> None:
        if party.disbanded:
            self._parties.pop(party.party_id, None)
