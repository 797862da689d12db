"""Which link carries a peer reached over two paths, and when a path is silent (sans-I/O).

:class:`PathChooser` is the part of :class:`mesh.core.MeshCore` that decides, for a
peer with a direct and a TURN link (:attr:`mesh.router.LinkTable.spares`), which
one carries it, and tells a silent path from a quiet one::

 new direct link authenticated ─────────────────────────► it carries the peer
 new TURN link, the link in use silent ─────────────────► it carries the peer
 link in use silent (no datagram for path_silence        the spare, if heard lately,
   despite a PING each path_probe_interval) ────────────► carries the peer; else
                                                         PathChanged(silent=True)
 direct spare heard again ──────────────────────────────► it carries the peer again
 link in use terminated, spare there ───────────────────► the spare carries the peer
                                                         (no PeerDisconnected)
 direct link of a peer TURN carries terminated ─────────► its endpoint is dialled again
                                                         (reconnect_interval, then
                                                         every redial_backoff)
 TURN spare unused for spare_linger, direct working ────► closed

Each change of carrier is a :class:`~mesh.events.PathChanged` event, and what
waits for an acknowledgement goes on the new carrier at once
(:meth:`mesh.reliable.ReliableDelivery.resend_direct`: the receiver's sequence
numbers drop the copy it has). A probe is a PING sent past a full congestion
window (:func:`mesh._quicshim.probe_path`): the packets a silent path keeps in
flight must not hold back the one that notices it is back.
"""

from __future__ import annotations

import logging

from mesh import _quicshim
from mesh.admission import PeerDirectory
from mesh.context import CoreContext
from mesh.events import PathChanged
from mesh.handshake import CloseCode
from mesh.link import Link, LinkState
from mesh.reliable import ReliableDelivery
from mesh.router import LinkTable

__all__ = ["PathChooser"]

logger = logging.getLogger("mesh.core")


class PathChooser:
    """The carrier of each peer reached over two paths (see the module docstring)."""

    def __init__(
        self,
        ctx: CoreContext,
        table: LinkTable,
        directory: PeerDirectory,
        reliable: ReliableDelivery,
    ) -> None:
        self._ctx = ctx
        self._table = table
        self._directory = directory
        self._reliable = reliable
        self.silent: set[str] = set()
        """Peers whose link in use was reported silent (``PathChanged(silent=True)``). Read
        it; only this chooser changes it. A received datagram may change a carrier
        (:meth:`heard` is needed) only while this set or the table's ``spares`` is not
        empty: the core checks both for every datagram, without a call."""
        # peers TURN carries since their direct link ended: when to dial it again
        self._direct_retry: dict[str, float] = {}

    # what happened ------------------------------------------------------------------

    def added(self, link: Link, now: float, *, spare: bool) -> None:
        """``link`` authenticated and is its peer's; ``spare``: it was kept beside the link
        in use (``Admitted.ADDED``), which it replaces when it is direct or that one is
        silent."""
        pid = link.peer_id
        if pid is None:  # pragma: no cover - only authenticated links get here
            return
        table = self._table
        if link.path == "direct":
            self._direct_retry.pop(pid, None)
        other = table.spares.get(pid)
        if other is not None and other.spare_since is None:
            other.spare_since = now
        in_use = table.direct(pid)
        if (
            spare
            and in_use is not None
            and (link.path == "direct" or now - in_use.last_rx >= self._ctx.config.path_silence)
        ):
            self._use_spare(pid, now)

    def heard(self, link: Link, now: float) -> None:
        """A datagram arrived on ``link``: a direct spare heard again carries its peer
        again; a link in use that was reported silent is reported back."""
        pid = link.peer_id
        if pid is None or link.state is not LinkState.ACTIVE:
            return
        table = self._table
        if table.spares.get(pid) is link:
            if link.path == "direct":
                self._use_spare(pid, now)
        elif pid in self.silent and table.direct(pid) is link and link.identity is not None:
            self.silent.discard(pid)
            self._ctx.events.append(PathChanged(link.identity, link.path, silent=False))

    def probe(self, link: Link, now: float) -> None:
        """``link`` heard nothing for ``path_probe_interval``: PING it; silent for
        ``path_silence``, its peer moves to the spare (or the driver hears of it)."""
        link.last_probe = now
        _quicshim.probe_path(link.quic)
        pid, identity = link.peer_id, link.identity
        if pid is None or identity is None:  # pragma: no cover - only ACTIVE links probe
            return
        config = self._ctx.config
        table = self._table
        spare = table.spares.get(pid)
        if spare is link:
            in_use = table.direct(pid)
            if (
                link.path == "turn"
                and link.spare_since is not None
                and now - link.spare_since >= config.spare_linger
                and in_use is not None
                and now - in_use.last_rx < config.path_silence
            ):
                link.close(CloseCode.NORMAL, "the direct path works again")
                table.unset_direct(link)
            return
        if now - link.last_rx < config.path_silence:
            return
        if spare is not None and now - spare.last_rx < config.path_silence:
            self._use_spare(pid, now)
        elif pid not in self.silent:
            self.silent.add(pid)
            logger.info("peer %s: the %s path went silent", pid[:12], link.path)
            self._ctx.events.append(PathChanged(identity, link.path, silent=True))

    def ended(self, link: Link, reason: str, now: float) -> bool:
        """The ``ACTIVE`` ``link`` terminated; True when its peer's other link carries it
        on (no departure), False when the peer has no link left."""
        pid = link.peer_id
        table = self._table
        if pid is None or pid not in table.spares:
            return False
        in_use = table.direct(pid) is link
        carrier = table.unset_direct(link)
        logger.info("peer %s: the %s path ended: %s", pid[:12], link.path, reason)
        if carrier is None:  # pragma: no cover - a peer with a spare has a link left
            return False
        if in_use and carrier.identity is not None:
            carrier.spare_since = None
            self.silent.discard(pid)
            self._ctx.events.append(PathChanged(carrier.identity, carrier.path, silent=False))
            self._reliable.resend_direct(pid, carrier, now)
        if link.path == "direct" and carrier.path == "turn":
            # the direct path died while TURN carries the peer: try it again soon, and
            # then now and then, so the peer comes back to it once it works again
            self._direct_retry[pid] = now + self._ctx.config.reconnect_interval
        return True

    def forget(self, pid: str) -> None:
        """``pid`` is gone: nothing of it is watched any more."""
        self.silent.discard(pid)
        self._direct_retry.pop(pid, None)

    # timers -------------------------------------------------------------------------

    def timers(self, times: list[float]) -> None:
        """Append when :meth:`service` must run next."""
        times.extend(self._direct_retry.values())

    def service(self, now: float) -> None:
        """Dial the direct endpoint of each peer TURN carries whose retry is due; again
        every ``redial_backoff`` until a direct link is back or the peer is gone."""
        if not self._direct_retry:
            return
        table, config = self._table, self._ctx.config
        for pid, at in list(self._direct_retry.items()):
            if now < at:
                continue
            carrier = table.direct(pid)
            endpoint = self._directory.endpoints.get(pid)
            if carrier is None or carrier.path != "turn" or endpoint is None:
                del self._direct_retry[pid]
                continue
            self._direct_retry[pid] = now + config.redial_backoff
            if table.active(pid, "direct") is None and not table.dialing(pid, "direct"):
                table.dial(endpoint, pid, now)

    # internals ----------------------------------------------------------------------

    def _use_spare(self, pid: str, now: float) -> None:
        """``pid``'s spare carries it from now on (what waits for an ack is sent on it)."""
        table = self._table
        old = table.direct(pid)
        if old is not None:
            old.spare_since = now
        link = table.swap(pid)
        link.spare_since = None
        self.silent.discard(pid)
        identity = link.identity
        if identity is not None:
            logger.info("peer %s: now over the %s path", pid[:12], link.path)
            self._ctx.events.append(PathChanged(identity, link.path, silent=False))
        self._reliable.resend_direct(pid, link, now)
