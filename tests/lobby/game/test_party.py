"""Tests of the party state machine and the one-party-per-character book."""

from __future__ import annotations

import pytest

from lobby.game.party import Party, PartyBook
from lobby.game.world import RulesDef, WorldDefinition
from protocol.errors import ErrorCode, GameRuleError
from tests.lobby.game.refusals import refused

TTL = 60.0


def owner(character_id: int) -> int:
    """The account owning test character ``character_id`` (one account per character)."""
    return 1000 + character_id


@pytest.fixture
def rules() -> RulesDef:
    return RulesDef(party_size_limit=3, invite_ttl_seconds=TTL)


def _party(rules: RulesDef, *members: int) -> Party:
    party, change = Party.create("p1", leader_id=1, leader_name="Lead", now=0.0, rules=rules)
    assert change.kind == "created" and change.notify == {1}
    t = 1.0
    for m in members:
        party.invite(1, m, account_id=owner(m), now=t)
        party.accept(m, f"M{m}", account_id=owner(m), now=t + 1)
        t += 2
    return party


def _code(exc: pytest.ExceptionInfo[GameRuleError]) -> ErrorCode:
    return exc.value.code


def test_create_and_snapshot(rules: RulesDef) -> None:
    party = _party(rules)
    snap = party.snapshot(0.0)
    assert snap["party_id"] == "p1" and snap["leader_id"] == 1
    assert snap["members"] == [
        {"character_id": 1, "name": "Lead", "joined_at": 0.0, "is_leader": True}
    ]
    assert snap["invites"] == [] and snap["size_limit"] == 3 and not snap["disbanded"]


def test_invite_accept(rules: RulesDef) -> None:
    party = _party(rules)
    change = party.invite(1, 2, account_id=owner(2), now=10.0)
    assert change.kind == "invited" and change.subject_id == 2
    assert change.notify == {1, 2}
    assert change.snapshot["invites"] == [
        {"character_id": 2, "invited_by": 1, "expires_at": 10.0 + TTL}
    ]
    change = party.accept(2, "Bea", account_id=owner(2), now=10.0 + TTL - 0.001)
    assert change.kind == "joined" and change.notify == {1, 2}
    assert party.member_ids() == [1, 2]
    assert change.snapshot["invites"] == []


def test_accept_expired_invite_refused(rules: RulesDef) -> None:
    party = _party(rules)
    party.invite(1, 2, account_id=owner(2), now=10.0)
    with refused(ErrorCode.INVITE_EXPIRED):
        party.accept(2, "Bea", account_id=owner(2), now=10.0 + TTL)
    assert not party.is_member(2)
    # the expired invite is gone: a second try finds none
    with refused(ErrorCode.NOT_FOUND):
        party.accept(2, "Bea", account_id=owner(2), now=10.0 + TTL)


def test_accept_without_invite(rules: RulesDef) -> None:
    party = _party(rules)
    with refused(ErrorCode.NOT_FOUND):
        party.accept(5, "X", account_id=owner(5), now=0.0)


def test_reinvite_refreshes(rules: RulesDef) -> None:
    party = _party(rules)
    party.invite(1, 2, account_id=owner(2), now=0.0)
    party.invite(1, 2, account_id=owner(2), now=50.0)
    party.accept(2, "Bea", account_id=owner(2), now=50.0 + TTL - 1)
    assert party.is_member(2)


def test_decline(rules: RulesDef) -> None:
    party = _party(rules)
    party.invite(1, 2, account_id=owner(2), now=0.0)
    change = party.decline(2, now=1.0)
    assert change.kind == "declined" and change.notify == {1, 2}
    with refused(ErrorCode.NOT_FOUND):
        party.accept(2, "Bea", account_id=owner(2), now=2.0)
    with refused(ErrorCode.NOT_FOUND):
        party.decline(2, now=2.0)


def test_invite_refusals(rules: RulesDef) -> None:
    party = _party(rules, 2)
    with refused(ErrorCode.NOT_IN_PARTY):
        party.invite(9, 3, account_id=owner(3), now=0.0)
    with refused(ErrorCode.ALREADY_IN_PARTY):
        party.invite(1, 2, account_id=owner(2), now=0.0)
    party.invite(2, 3, account_id=owner(3), now=0.0)  # any member may invite
    assert party.live_invite(3, 1.0) is not None


def test_size_limit(rules: RulesDef) -> None:
    party = _party(rules, 2)
    party.invite(1, 3, account_id=owner(3), now=10.0)
    party.invite(1, 4, account_id=owner(4), now=10.0)
    party.accept(3, "C", account_id=owner(3), now=11.0)
    assert party.is_full()
    with refused(ErrorCode.PARTY_FULL):
        party.accept(4, "D", account_id=owner(4), now=11.0)
    with refused(ErrorCode.PARTY_FULL):
        party.invite(1, 5, account_id=owner(5), now=11.0)


def test_leader_leaving_passes_to_longest_standing(rules: RulesDef) -> None:
    party = _party(rules, 2, 3)
    change = party.leave(1, now=100.0)
    assert change.kind == "left" and change.notify == {1, 2, 3}
    assert party.leader_id == 2
    assert change.snapshot["leader_id"] == 2


def test_leadership_tiebreak_by_join_order(rules: RulesDef) -> None:
    party, _ = Party.create("p", leader_id=1, leader_name="L", now=0.0, rules=rules)
    party.invite(1, 3, account_id=owner(3), now=0.0)
    party.invite(1, 2, account_id=owner(2), now=0.0)
    party.accept(3, "C", account_id=owner(3), now=5.0)
    party.accept(2, "B", account_id=owner(2), now=5.0)
    party.leave(1, now=6.0)
    assert party.leader_id == 3


def test_member_leaving_keeps_leader(rules: RulesDef) -> None:
    party = _party(rules, 2, 3)
    party.leave(3, now=5.0)
    assert party.leader_id == 1 and party.member_ids() == [1, 2]
    with refused(ErrorCode.NOT_IN_PARTY):
        party.leave(3, now=5.0)


def test_last_member_leaving_disbands(rules: RulesDef) -> None:
    party = _party(rules)
    party.invite(1, 2, account_id=owner(2), now=0.0)
    change = party.leave(1, now=1.0)
    assert change.kind == "disbanded" and party.disbanded
    assert change.snapshot["invites"] == []
    with refused(ErrorCode.NOT_FOUND):
        party.invite(1, 2, account_id=owner(2), now=2.0)


def test_kick(rules: RulesDef) -> None:
    party = _party(rules, 2, 3)
    change = party.kick(1, 3, now=10.0)
    assert change.kind == "kicked" and change.subject_id == 3
    assert change.notify == {1, 2, 3}  # the kicked member hears of it too
    assert party.member_ids() == [1, 2]


def test_kick_when_not_leader_refused(rules: RulesDef) -> None:
    party = _party(rules, 2, 3)
    with refused(ErrorCode.NOT_PARTY_LEADER):
        party.kick(2, 3, now=10.0)
    assert party.member_ids() == [1, 2, 3]
    with refused(ErrorCode.NOT_IN_PARTY):
        party.kick(9, 3, now=10.0)
    with refused(ErrorCode.NOT_IN_PARTY):
        party.kick(1, 9, now=10.0)
    with refused(ErrorCode.BAD_REQUEST):
        party.kick(1, 1, now=10.0)


def test_disband(rules: RulesDef) -> None:
    party = _party(rules, 2, 3)
    with refused(ErrorCode.NOT_PARTY_LEADER):
        party.disband(2, now=1.0)
    change = party.disband(1, now=1.0)
    assert change.kind == "disbanded" and change.notify == {1, 2, 3}
    assert party.disbanded and party.member_ids() == []
    assert change.snapshot["disbanded"] is True


def test_promote(rules: RulesDef) -> None:
    party = _party(rules, 2)
    with refused(ErrorCode.NOT_PARTY_LEADER):
        party.promote(2, 2, now=1.0)
    with refused(ErrorCode.NOT_IN_PARTY):
        party.promote(1, 7, now=1.0)
    party.promote(1, 2, now=1.0)
    assert party.leader_id == 2
    party.kick(2, 1, now=2.0)
    assert party.member_ids() == [2]


def test_expire_invites_and_snapshot_hides_expired(rules: RulesDef) -> None:
    party = _party(rules)
    party.invite(1, 2, account_id=owner(2), now=0.0)
    party.invite(1, 3, account_id=owner(3), now=30.0)
    assert [i["character_id"] for i in party.snapshot(TTL)["invites"]] == [3]
    gone = party.expire_invites(TTL)
    assert [i.character_id for i in gone] == [2]
    assert set(party.invites) == {3}


def test_round_trip(rules: RulesDef) -> None:
    party = _party(rules, 2)
    party.invite(2, 5, account_id=owner(5), now=20.0)
    again = Party.from_dict(party.to_dict())
    assert again.snapshot(21.0) == party.snapshot(21.0)
    again.leave(1, now=30.0)
    assert again.leader_id == 2


# -- PartyBook ------------------------------------------------------------------------------


def test_book_one_party_per_character(world: WorldDefinition) -> None:
    book = PartyBook(world.rules)
    a = book.create(1, "A", now=0.0)
    b = book.create(2, "B", now=0.0)
    assert a.party_id != b.party_id
    with pytest.raises(GameRuleError) as exc:
        book.create(1, "A", now=0.0)
    assert exc.value.code == ErrorCode.ALREADY_IN_PARTY
    with pytest.raises(GameRuleError) as exc:
        book.invite(1, 2, account_id=owner(2), now=0.0)
    assert exc.value.code == ErrorCode.ALREADY_IN_PARTY
    book.invite(1, 3, account_id=owner(3), now=0.0)
    book.invite(2, 3, account_id=owner(3), now=1.0)
    assert [i.party_id for i in book.invites_for(3, 2.0)] == [a.party_id, b.party_id]
    book.accept(3, "C", a.party_id, account_id=owner(3), now=2.0)
    party_a = book.party_of(3)
    assert party_a is not None and party_a.party_id == a.party_id
    # joining one party voided the other invite
    with pytest.raises(GameRuleError) as exc:
        book.accept(3, "C", b.party_id, account_id=owner(3), now=3.0)
    assert exc.value.code == ErrorCode.ALREADY_IN_PARTY
    book.leave(3, now=4.0)
    with pytest.raises(GameRuleError) as exc:
        book.accept(3, "C", b.party_id, account_id=owner(3), now=5.0)
    assert exc.value.code == ErrorCode.NOT_FOUND


def test_book_leave_kick_disband(world: WorldDefinition) -> None:
    book = PartyBook(world.rules)
    pid = book.create(1, "A", now=0.0, party_id="42").party_id
    assert pid == "42"
    with pytest.raises(GameRuleError) as exc:
        book.create(5, "E", now=0.0, party_id="42")
    assert exc.value.code == ErrorCode.CONFLICT
    for cid in (2, 3, 4):
        book.invite(1, cid, account_id=owner(cid), now=0.0)
        book.accept(cid, f"C{cid}", pid, account_id=owner(cid), now=1.0)
    with pytest.raises(GameRuleError) as exc:
        book.kick(2, 3, now=2.0)
    assert exc.value.code == ErrorCode.NOT_PARTY_LEADER
    book.kick(1, 4, now=2.0)
    assert book.party_of(4) is None
    book.create(4, "D", now=3.0)  # free again
    book.leave(1, now=4.0)
    party = book.get(pid)
    assert party is not None and party.leader_id == 2
    change = book.disband(2, now=5.0)
    assert change.notify == {2, 3}
    assert book.get(pid) is None and book.party_of(3) is None
    with pytest.raises(GameRuleError) as exc:
        book.leave(3, now=6.0)
    assert exc.value.code == ErrorCode.NOT_IN_PARTY
    with pytest.raises(GameRuleError) as exc:
        book.decline(3, "nope", now=6.0)
    assert exc.value.code == ErrorCode.NOT_FOUND


def test_book_last_leave_forgets_party(world: WorldDefinition) -> None:
    book = PartyBook(world.rules)
    pid = book.create(1, "A", now=0.0).party_id
    book.invite(1, 2, account_id=owner(2), now=0.0)
    book.leave(1, now=1.0)
    assert book.get(pid) is None and book.parties() == []
    assert book.invites_for(2, 1.0) == []


def test_book_expire_and_adopt(world: WorldDefinition) -> None:
    book = PartyBook(world.rules)
    book.create(1, "A", now=0.0)
    book.invite(1, 2, account_id=owner(2), now=0.0)
    assert [i.character_id for i in book.expire_invites(world.rules.invite_ttl_seconds)] == [2]
    other = Party.from_dict(
        {
            "party_id": "x",
            "leader_id": 1,
            "size_limit": 5,
            "invite_ttl": 60,
            "members": [{"character_id": 1, "name": "A", "joined_at": 0.0}],
        }
    )
    with pytest.raises(GameRuleError) as exc:
        book.add(other)
    assert exc.value.code == ErrorCode.ALREADY_IN_PARTY


def test_an_invite_names_the_account_and_dies_with_the_character(rules: RulesDef) -> None:
    book = PartyBook(rules)
    party = book.get(book.create(1, "Lead", now=0.0).party_id)
    assert party is not None
    book.invite(1, 2, account_id=owner(2), now=0.0)
    # another account's character holding the same id is refused, and the stale invite goes
    with pytest.raises(GameRuleError) as exc:
        book.accept(2, "Usurper", party.party_id, account_id=owner(3), now=1.0)
    assert _code(exc) is ErrorCode.FORBIDDEN
    assert party.invites == {} and book.party_of(2) is None
    with pytest.raises(GameRuleError) as exc:
        book.accept(2, "Bea", party.party_id, account_id=owner(2), now=1.0)
    assert _code(exc) is ErrorCode.NOT_FOUND
    # visible only to the account it names
    book.invite(1, 2, account_id=owner(2), now=2.0)
    assert party.live_invite(2, 3.0, account_id=owner(3)) is None
    assert [i.party_id for i in book.invites_for(2, 3.0, account_id=owner(2))] == [party.party_id]
    assert book.invites_for(2, 3.0, account_id=owner(3)) == []
    # deleting the character withdraws every invite it holds
    assert book.drop_invites(2) == [party]
    assert book.invites_for(2, 3.0) == [] and book.drop_invites(2) == []


def test_a_stored_invite_without_its_account_is_dropped_on_load(rules: RulesDef) -> None:
    party = _party(rules, 2)
    party.invite(1, 3, account_id=owner(3), now=5.0)
    data = party.to_dict()
    assert Party.from_dict(data).invites[3].account_id == owner(3)
    for invite in data["invites"]:
        del invite["account_id"]  # as written before invites named their account
    assert Party.from_dict(data).invites == {}
