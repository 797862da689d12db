"""A link's life is one LinkState with allowed moves; the core walks links through it."""

from __future__ import annotations

import random

import pytest

from mesh.context import CoreContext
from mesh.core import MeshConfig
from mesh.handshake import CloseCode
from mesh.link import TRANSITIONS, Link, LinkState, LinkStateError
from mesh.router import LinkTable
from protocol.messages.chat import WhisperMessage

from .sim import SimNet

H, A, R, C, T = (
    LinkState.HANDSHAKING,
    LinkState.ACTIVE,
    LinkState.REJECTED,
    LinkState.CLOSING,
    LinkState.TERMINATED,
)


def test_the_table_allows_exactly_the_drawn_moves() -> None:
    assert TRANSITIONS == {
        H: {A, R, C, T},
        A: {C, T},
        R: {T},
        C: {T},
        T: set(),
    }


def _dialled_link() -> Link:
    """A fresh client link in a real LinkTable (nothing sent, nothing received)."""
    core = SimNet(0).add(1).core
    table = LinkTable(CoreContext(core.identity, core.auth, MeshConfig()))
    table.dial(("10.0.0.9", 9000), None, 0.0)
    (link,) = table
    return link


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((R,), A),  # a rejected link never becomes active
        ((A, C), A),  # nor does a closing one, again
        ((A, T), C),  # nothing comes back from TERMINATED
        ((T,), H),
        ((T,), T),
    ],
)
def test_an_illegal_move_is_a_bug_that_raises(
    path: tuple[LinkState, ...], illegal: LinkState
) -> None:
    link = _dialled_link()
    assert link.state is H
    for state in path:
        link.transition(state)
    with pytest.raises(LinkStateError, match=f"-> {illegal.name}"):
        link.transition(illegal)
    assert link.state is path[-1]


def test_close_before_authentication_rejects_and_is_idempotent() -> None:
    link = _dialled_link()
    link.close(CloseCode.HANDSHAKE_FAILED, "go away")
    assert link.state is R
    link.close(CloseCode.NORMAL, "again")
    assert link.state is R and link.info().close_code == CloseCode.HANDSHAKE_FAILED


def test_the_core_walks_links_through_handshaking_active_closing_terminated() -> None:
    net = SimNet(3)
    a, b = net.add(1), net.add(2)
    net.connect(a, b)
    (dialling,) = a.core.links()
    assert (dialling.state, dialling.outbound, dialling.peer_id) == (H, True, None)
    net.run_until(lambda: net.connected(a, b))
    info = a.core.link_info(b.core.identity.peer_id)
    assert info is not None and info.state is A and info.character_id == 2
    handle = net.send(a, b, WhisperMessage(content="hi"))
    assert a.core.pending_sends(b.core.identity.peer_id) == 1
    net.run_until(lambda: handle in a.settled)
    assert a.core.pending_sends(b.core.identity.peer_id) == 0
    assert a.core.disconnect_peer(b.core.identity.peer_id, net.now)
    (closing,) = a.core.links()
    assert closing.state is C and a.core.link_info(b.core.identity.peer_id) is None
    net.run_for(5.0)  # aioquic drains the closed connection
    assert a.core.links() == [] and b.core.links() == []


@pytest.mark.parametrize("count", [1, 2, 6])
def test_the_table_soonest_timer_follows_every_change_of_its_links(count: int) -> None:
    """The table keeps the soonest link timer incrementally (a crowded node re-reads only
    the links touched by each datagram); after any sequence of changes it equals the
    minimum over every link, also when the link that held it moves later or goes, and
    when every link was re-read at once (a pair's one link: no pass over them)."""
    core = SimNet(0).add(1).core
    table = LinkTable(CoreContext(core.identity, core.auth, MeshConfig()))
    for i in range(count):
        table.dial((f"10.0.0.{i + 2}", 9000), None, 0.0)
    links = list(table)
    rng = random.Random(5)
    for step in range(400):
        for link in rng.sample(links, min(len(links), rng.choice((1, 1, 2, 3, len(links))))):
            # the dial deadline is the soonest of a fresh dial's timers; None: aioquic's own
            link.dial_deadline = None if rng.random() < 0.2 else rng.uniform(0.001, 0.1)
            table.retime(link)
        if step == 300 and len(links) > 1:  # a link aioquic is done with leaves the timers
            soonest = min(links, key=lambda li: li.timer() or float("inf"))
            table.remove(soonest)
            table.retime(soonest)
            links.remove(soonest)
        expected = min(t for li in links if (t := li.timer()) is not None)
        assert table.next_timer() == expected, step
