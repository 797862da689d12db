"""Movement batching and newest-wins (pure)."""

from __future__ import annotations

from mesh.datagrams import MovementInbox, MovementOutbox, split_batches
from protocol.messages.location import PositionUpdateMessage, Vec3
from protocol.movement import decode_movement_batch, seq_newer


def upd(character_id: int, seq: int, x: float = 0.0) -> PositionUpdateMessage:
    return PositionUpdateMessage(
        character_id=character_id, location_id=1, position=Vec3(x=x), seq=seq
    )


def test_outbox_newest_wins_and_is_bounded() -> None:
    box = MovementOutbox(max_pending=2)
    box.put(upd(1, 5))
    box.put(upd(1, 4))  # stale: dropped
    box.put(upd(1, 6, x=6.0))
    assert [(u.character_id, u.seq) for u in box.take()] == [(1, 6)]
    box.put(upd(1, 65535))
    box.put(upd(1, 0))  # wrap-around: 0 is newer than 65535
    box.put(upd(2, 1))
    box.put(upd(3, 1))  # over the bound: the oldest character is dropped
    assert [(u.character_id, u.seq) for u in box.take()] == [(2, 1), (3, 1)]
    assert len(box) == 0 and box.dropped == 2
    # a newer update of a queued character makes it the newest: the bound drops another
    box.put(upd(1, 1))
    box.put(upd(2, 2))
    box.put(upd(1, 2))
    box.put(upd(3, 2))
    assert [(u.character_id, u.seq) for u in box.take()] == [(1, 2), (3, 2)]
    assert box.dropped == 3


def test_inbox_drops_stale_and_accepts_after_silence() -> None:
    inbox = MovementInbox(reset_after=5.0)
    assert inbox.accept("p", upd(1, 10), 0.0)
    assert not inbox.accept("p", upd(1, 10), 0.1)
    assert not inbox.accept("p", upd(1, 9), 0.1)
    assert inbox.accept("p", upd(1, 11), 0.2)
    assert inbox.accept("q", upd(1, 3), 0.2)  # another sender is tracked apart
    assert inbox.accept("p", upd(1, 65000), 0.3) is False  # 65000 is "older" than 11
    assert inbox.accept("p", upd(1, 1), 10.0)  # silence: the sender restarted
    inbox.forget("p")
    assert inbox.accept("p", upd(1, 0), 10.1)
    assert inbox.stale == 3


def test_inbox_order_is_seq_newer_around_every_wrap() -> None:
    """The inbox's in-line order test is :func:`protocol.movement.seq_newer`: at 0, 1,
    half the range and its neighbours, and across the 65535 -> 0 wrap."""
    diffs = (0, 1, 2, 100, 0x7FFE, 0x7FFF, 0x8000, 0x8001, 0x8002, 0xFFFE, 0xFFFF)
    for last in (0, 1, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF, 12345):
        for diff in diffs:
            seq = (last + diff) & 0xFFFF
            inbox = MovementInbox(reset_after=5.0)
            assert inbox.accept("p", upd(1, last), 0.0)
            assert inbox.accept("p", upd(1, seq), 0.1) is seq_newer(seq, last), (last, seq)


def test_split_batches_respects_the_size_limit() -> None:
    updates = [upd(i, 1, float(i)) for i in range(60)]
    batches = split_batches(updates, 1100)
    assert all(len(b) <= 1100 for b in batches)
    decoded = [u for b in batches for u in decode_movement_batch(b)]
    assert [u.character_id for u in decoded] == list(range(60))
    assert split_batches(updates, 10) == []
    assert split_batches(updates[:1], 43) == []  # a batch of one is 44 bytes
    (one,) = split_batches(updates[:1], 44)
    assert len(one) == 44 and decode_movement_batch(one)[0].character_id == 0
    assert split_batches([], 1100) == []
