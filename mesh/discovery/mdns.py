"""LAN discovery over mDNS / DNS-SD with python-zeroconf's asyncio API.

A node advertises one service of type :data:`SERVICE_TYPE` under a random
instance name. The SRV and A records carry its QUIC port and addresses; the TXT
record carries (keys in :data:`TXT_KEYS`) the protocol version, the peer id,
the character name and the LAN group tag (never the group key). It browses the
same type, resolves every instance it sees and reports it as a
:class:`~mesh.discovery.base.PeerFound`.

Vanished peers are noticed two ways: a goodbye (TTL 0, sent when a node closes)
is a ``PeerLost`` at once; a node that dies without one is a ``PeerLost`` once
none of its records was heard for ``peer_timeout`` seconds. For that every node
re-announces its records every ``heartbeat`` seconds. (zeroconf's own cache
expiry is no use here: it raises every PTR TTL to at least 1125 s.)

The instance table is bounded (``max_instances``) and cannot be pinned by
junk: the heartbeat deletes an instance silent for ``peer_timeout`` and one
still unresolved ``unresolved_timeout`` after it was first seen (a PTR heard
later brings it back); when the table is full, a new instance evicts the
oldest one that is not alive (never a live peer). ``clock`` (default: the
event loop's) is what "silent for" is measured with; tests inject one.

Where mDNS runs is explicit: ``interfaces`` is a list of local IPv4 addresses;
zeroconf joins the mDNS group and sends only on those. The default is every
non-loopback IPv4 address of the host (:func:`lan_interface_addresses`), which
is right for LAN play and wrong for tests: tests pass ``["127.0.0.1"]`` or an
address inside a network namespace they made. All queries are QM (multicast
answers), so several nodes on one host (sharing port 5353) all hear every
answer. zeroconf errors become :class:`~protocol.errors.DiscoveryError`.

Advertised addresses are not trusted: only addresses inside the subnet of one
of the mDNS ``interfaces`` (127.0.0.0/8 for a loopback interface) are kept,
at most 8 per instance, so a forged advertisement cannot make a node send
QUIC Initials to third parties elsewhere. Several live instances claiming one
peer id (an impostor copying a member's id) are merged: the peer's endpoints
are the union (ours-group instances first, oldest first), so the real
member's address stays reachable; the handshake sorts out which is real.

How zeroconf 0.154 behaves with ``interfaces=["127.0.0.1"]`` (IPv4 only),
measured here: one listen socket on ``0.0.0.0:5353`` joins 224.0.0.251 on
``lo`` only; one responder socket bound to ``127.0.0.1:5353`` with
``IP_MULTICAST_IF=127.0.0.1`` and ``IP_MULTICAST_LOOP=1`` does all sending.
Multicast loops back on ``lo`` although ``lo`` has no MULTICAST flag, and
nothing can leave the machine. Every instance on the host binds port 5353
with ``SO_REUSEPORT``: multicast reaches them all, a unicast reply only one,
hence QM questions everywhere. ``::1`` does not work (zeroconf says so).
Registering takes about 1.2 s (three probes, then the announcement).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ifaddr
from zeroconf import (
    DNSQuestionType,
    IPVersion,
    RecordUpdate,
    RecordUpdateListener,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from mesh.discovery.base import Discovery, PeerFound
from protocol.errors import DiscoveryError
from protocol.version import PROTOCOL_VERSION

__all__ = [
    "SERVICE_TYPE",
    "TXT_KEYS",
    "MdnsDiscovery",
    "lan_interface_addresses",
    "parse_interfaces",
]

log = logging.getLogger("mesh.discovery.mdns")

SERVICE_TYPE = "_shards._udp.local."
TXT_KEYS = {"version": "v", "peer_id": "id", "name": "n", "group_tag": "g"}
"""TXT record keys: protocol version, peer id, character name, group tag."""

_TYPE_PTR = 12
_TYPE_TXT = 16
_TYPE_SRV = 33
_MAX_INSTANCES = 256
_MAX_FIELD = 128
_MAX_NAME = 64
_MAX_ENDPOINTS = 8
_MAX_MERGED_ENDPOINTS = 32


def _subnets(interfaces: Sequence[str]) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnet of each interface address (/8 for loopback, /32 if unknown)."""
    prefixes: dict[str, int] = {}
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                prefixes.setdefault(ip.ip, ip.network_prefix)
    networks: list[ipaddress.IPv4Network] = []
    for address in interfaces:
        default = 8 if ipaddress.IPv4Address(address).is_loopback else 32
        prefix = prefixes.get(address, default)
        networks.append(ipaddress.IPv4Network(f"{address}/{prefix}", strict=False))
    return networks


def lan_interface_addresses() -> list[str]:
    """Every non-loopback, non-link-local IPv4 address of this host (sorted).

    The default ``interfaces`` for real LAN play. Tests never use it to bind.
    """
    found: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            address = ipaddress.IPv4Address(ip.ip)
            if address.is_loopback or address.is_link_local or address.is_unspecified:
                continue
            found.add(str(address))
    return sorted(found)


def parse_interfaces(interfaces: Sequence[str]) -> list[str]:
    """Check a list of interface addresses: unicast IPv4 only, at least one.

    Raises :class:`DiscoveryError` naming the bad entry.
    """
    if isinstance(interfaces, str):
        interfaces = [interfaces]
    result: list[str] = []
    for entry in interfaces:
        try:
            address = ipaddress.IPv4Address(entry)
        except (ipaddress.AddressValueError, ValueError) as exc:
            raise DiscoveryError(f"mDNS interface {entry!r} is not an IPv4 address") from exc
        if address.is_unspecified or address.is_multicast:
            raise DiscoveryError(
                f"mDNS interface {entry!r} must be one local unicast address, not a wildcard"
            )
        if str(address) not in result:
            result.append(str(address))
    if not result:
        raise DiscoveryError("no interface to run mDNS on")
    return result


@dataclass(slots=True)
class _Instance:
    key: str
    name: str
    peer: PeerFound | None = None
    last_seen: float = 0.0
    created: float = 0.0
    alive: bool = False
    resolver: asyncio.Task[None] | None = None


class MdnsDiscovery(Discovery):
    """Advertise this node and find the others over mDNS on chosen interfaces.

    ``peer_id``, ``name``, ``port`` and ``group_tag`` describe this node's
    advertisement (``group_tag=None``: no group, a lobby-less node without a
    passphrase). ``advertise`` lists the addresses put in the A records
    (default: the interface addresses). ``heartbeat`` / ``peer_timeout`` set how
    soon a silent peer is declared lost (and forgotten); ``unresolved_timeout``
    (default ``max(peer_timeout, 2 * resolve_timeout)``) how long an instance
    that never resolves is kept. ``max_instances`` bounds the instance table.
    ``clock`` (default ``loop.time``) measures silence.
    """

    source_name = "mdns"

    def __init__(
        self,
        *,
        peer_id: str,
        name: str,
        port: int,
        group_tag: str | None = None,
        interfaces: Sequence[str] | None = None,
        advertise: Sequence[str] | None = None,
        version: str = PROTOCOL_VERSION,
        service_type: str = SERVICE_TYPE,
        heartbeat: float = 5.0,
        peer_timeout: float | None = None,
        resolve_timeout: float = 3.0,
        unresolved_timeout: float | None = None,
        max_instances: int = _MAX_INSTANCES,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        if not 0 < port < 65536:
            raise DiscoveryError(f"cannot advertise port {port}")
        if heartbeat <= 0:
            raise DiscoveryError("heartbeat must be positive")
        if max_instances < 1:
            raise DiscoveryError("max_instances must be at least 1")
        self.peer_id = peer_id
        self.name = name
        self.port = port
        self.group_tag = group_tag
        self.version = version
        self.service_type = service_type
        self.interfaces = parse_interfaces(
            lan_interface_addresses() if interfaces is None else interfaces
        )
        self.subnets = _subnets(self.interfaces)
        self.advertised = parse_interfaces(self.interfaces if advertise is None else advertise)
        self.heartbeat = heartbeat
        self.peer_timeout = 3 * heartbeat if peer_timeout is None else peer_timeout
        self.unresolved_timeout = (
            max(self.peer_timeout, 2 * resolve_timeout)
            if unresolved_timeout is None
            else unresolved_timeout
        )
        self.max_instances = max_instances
        self._clock = clock
        self._resolve_ms = max(1, int(resolve_timeout * 1000))
        self.instance_name = f"shards-{secrets.token_hex(6)}.{service_type}"
        self._own_key = self.instance_name.lower()
        self._type_key = service_type.lower()
        self._server = f"shards-{secrets.token_hex(6)}.local."
        self._azc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._records: _RecordWatcher | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._instances: dict[str, _Instance] = {}
        self._by_peer: dict[str, str] = {}
        self._warned_full = False

    def __repr__(self) -> str:
        return (
            f"MdnsDiscovery(peer_id={self.peer_id!r}, name={self.name!r}, "
            f"interfaces={self.interfaces!r}, port={self.port})"
        )

    @property
    def instances(self) -> frozenset[str]:
        """The instance table's keys (lower-case service instance names), resolved or not:
        what ``max_instances`` bounds."""
        return frozenset(self._instances)

    # -- Discovery ----------------------------------------------------------

    async def _start(self) -> None:
        properties = {
            TXT_KEYS["version"]: self.version,
            TXT_KEYS["peer_id"]: self.peer_id,
            TXT_KEYS["name"]: self.name,
        }
        if self.group_tag is not None:
            properties[TXT_KEYS["group_tag"]] = self.group_tag
        try:
            self._azc = AsyncZeroconf(interfaces=list(self.interfaces), ip_version=IPVersion.V4Only)
            self._info = AsyncServiceInfo(
                self.service_type,
                self.instance_name,
                port=self.port,
                properties=properties,
                server=self._server,
                parsed_addresses=list(self.advertised),
            )
            zc = self._azc.zeroconf
            self._records = _RecordWatcher(self)
            zc.async_add_listener(self._records, None)
            self._browser = AsyncServiceBrowser(
                zc,
                self.service_type,
                handlers=[self._on_service_state_change],
                question_type=DNSQuestionType.QM,
            )
            await self._azc.async_register_service(self._info)
        except (OSError, RuntimeError, ValueError, ZeroconfError) as exc:
            await self._teardown()
            raise DiscoveryError(
                f"mDNS could not start on {', '.join(self.interfaces)}: {exc}",
                details={"interfaces": list(self.interfaces)},
            ) from exc
        self._heartbeat_task = asyncio.create_task(
            self._heartbeat_loop(), name=f"mdns-heartbeat-{self.peer_id[:8]}"
        )
        log.info(
            "mdns: advertising %s as %r on %s port %d",
            self.peer_id,
            self.name,
            ",".join(self.interfaces),
            self.port,
        )

    async def _stop(self) -> None:
        await self._teardown()

    # -- zeroconf callbacks (event loop) ------------------------------------

    def _on_service_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        key = name.lower()
        if key == self._own_key or self._closed:
            return
        if state_change is ServiceStateChange.Removed:
            self._instance_gone(key)
            return
        instance = self._admit(key, name)
        if instance is None:
            return
        instance.last_seen = self._now()
        self._resolve(instance, force=state_change is ServiceStateChange.Updated)

    def _heard(self, key: str, *, goodbye: bool, name: str | None = None) -> None:
        """A record of instance ``key`` arrived (``name``: from a PTR, may add it)."""
        if self._closed or key == self._own_key:
            return
        instance = self._instances.get(key)
        if instance is None:
            # an instance we forgot (silent too long) is heard again: the browser
            # will not say "Added" twice, so its PTR brings it back
            if goodbye or name is None:
                return
            instance = self._admit(key, name)
            if instance is None:
                return
        if goodbye:
            self._instance_gone(key)
            return
        instance.last_seen = self._now()
        if instance.alive:
            return
        if instance.peer is not None:
            instance.alive = True
            self._publish(instance)
        else:
            self._resolve(instance, force=False)

    # -- internals ----------------------------------------------------------

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _admit(self, key: str, name: str) -> _Instance | None:
        """The instance ``key``, added if new; when the table is full the oldest
        instance that is not alive is evicted for it (None: all are alive)."""
        instance = self._instances.get(key)
        if instance is not None:
            return instance
        if len(self._instances) >= self.max_instances:
            idle = [i for i in self._instances.values() if not i.alive]
            if not idle:
                if not self._warned_full:
                    self._warned_full = True
                    log.warning("mdns: %d live services seen, ignoring more", self.max_instances)
                return None
            self._forget(min(idle, key=lambda i: i.last_seen))
        now = self._now()
        instance = _Instance(key=key, name=name, last_seen=now, created=now)
        self._instances[key] = instance
        return instance

    def _forget(self, instance: _Instance) -> None:
        """Delete an instance (a ``PeerLost`` if it was the peer's current one)."""
        if self._instances.get(instance.key) is instance:
            self._instance_gone(instance.key)

    def _expire(self, now: float) -> None:
        """Forget instances silent for ``peer_timeout`` or unresolved for too long."""
        silent = now - self.peer_timeout
        unresolved = now - self.unresolved_timeout
        for instance in list(self._instances.values()):
            if instance.last_seen < silent or (
                instance.peer is None and instance.created < unresolved
            ):
                self._forget(instance)

    def _resolve(self, instance: _Instance, *, force: bool) -> None:
        if instance.resolver is not None and not instance.resolver.done():
            return
        if instance.peer is not None and instance.alive and not force:
            return
        instance.resolver = asyncio.create_task(
            self._resolve_instance(instance), name=f"mdns-resolve-{instance.key[:24]}"
        )

    async def _resolve_instance(self, instance: _Instance) -> None:
        azc = self._azc
        if azc is None:
            return
        info = AsyncServiceInfo(self.service_type, instance.name)
        try:
            ok = await info.async_request(
                azc.zeroconf, self._resolve_ms, question_type=DNSQuestionType.QM
            )
        except (OSError, ZeroconfError) as exc:
            log.debug("mdns: resolving %s failed: %s", instance.name, exc)
            return
        if not ok or self._closed or self._instances.get(instance.key) is not instance:
            log.debug("mdns: %s did not resolve", instance.name)
            return
        peer = self._peer_from_info(info)
        if peer is None:
            return
        if peer.peer_id == self.peer_id:
            self._instances.pop(instance.key, None)
            return
        instance.peer = peer
        instance.alive = True
        instance.last_seen = self._now()
        self._publish(instance)

    def _publish(self, instance: _Instance) -> None:
        if instance.peer is not None:
            self._refresh_peer(instance.peer.peer_id)

    def _refresh_peer(self, peer_id: str) -> None:
        """Report ``peer_id`` from all its live instances (merged), or as lost."""
        live = [
            (i.peer.group_tag != self.group_tag, i.created, i.key, i.peer)
            for i in self._instances.values()
            if i.alive and i.peer is not None and i.peer.peer_id == peer_id
        ]
        if not live:
            if self._by_peer.pop(peer_id, None) is not None:
                log.debug("mdns: %s is gone", peer_id)
                self._lost(peer_id)
            return
        live.sort(key=lambda entry: entry[:3])
        first = live[0][3]
        endpoints: list[tuple[str, int]] = []
        for *_, peer in live:
            if (peer.group_tag, peer.version) == (first.group_tag, first.version):
                endpoints.extend(e for e in peer.endpoints if e not in endpoints)
        self._by_peer[peer_id] = live[0][2]
        self._found(
            PeerFound(
                peer_id=peer_id,
                name=first.name,
                endpoints=tuple(endpoints[:_MAX_MERGED_ENDPOINTS]),
                version=first.version,
                group_tag=first.group_tag,
                source=self.source_name,
            )
        )

    def _instance_gone(self, key: str) -> None:
        instance = self._instances.pop(key, None)
        if instance is None:
            return
        if instance.resolver is not None and not instance.resolver.done():
            instance.resolver.cancel()
        self._mark_lost(instance)

    def _mark_lost(self, instance: _Instance) -> None:
        instance.alive = False
        if instance.peer is not None:
            self._refresh_peer(instance.peer.peer_id)

    def _peer_from_info(self, info: AsyncServiceInfo) -> PeerFound | None:
        props = info.decoded_properties
        peer_id = props.get(TXT_KEYS["peer_id"]) or ""
        name = props.get(TXT_KEYS["name"]) or ""
        version = props.get(TXT_KEYS["version"]) or ""
        tag = props.get(TXT_KEYS["group_tag"])
        addresses = [
            a
            for a in info.parsed_addresses(IPVersion.V4Only)
            if any(ipaddress.IPv4Address(a) in net for net in self.subnets)
        ]
        port = info.port
        if (
            not peer_id
            or len(peer_id) > _MAX_FIELD
            or len(name) > _MAX_NAME
            or not version
            or len(version) > 16
            or (tag is not None and len(tag) > _MAX_FIELD)
            or not addresses
            or port is None
            or not 0 < port < 65536
        ):
            log.debug("mdns: ignoring malformed advertisement %s", info.name)
            return None
        return PeerFound(
            peer_id=peer_id,
            name=name,
            endpoints=tuple((address, port) for address in addresses[:_MAX_ENDPOINTS]),
            version=version,
            group_tag=tag,
            source=self.source_name,
        )

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.heartbeat
            await asyncio.sleep(max(0.0, due - loop.time()))
            azc, info = self._azc, self._info
            if azc is None or info is None:
                return
            zc = azc.zeroconf
            zc.async_send(zc.generate_service_broadcast(info, None))
            now = loop.time()
            if now - due > self.heartbeat / 2:
                # we were stalled: records that arrived meanwhile may still wait in the
                # socket; judge silence on a later, punctual tick
                due = now
                continue
            self._expire(self._now())

    async def _teardown(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for instance in self._instances.values():
            if instance.resolver is not None and not instance.resolver.done():
                instance.resolver.cancel()
        azc, self._azc = self._azc, None
        if azc is None:
            return
        zc = azc.zeroconf
        try:
            if self._browser is not None:
                await self._browser.async_cancel()
            if self._records is not None:
                zc.async_remove_listener(self._records)
            if self._info is not None and self._info.name in _registered_names(zc):
                await (await azc.async_unregister_service(self._info))
        except (OSError, RuntimeError, ZeroconfError) as exc:
            log.debug("mdns: error while withdrawing %s: %s", self.instance_name, exc)
        finally:
            self._browser = None
            self._records = None
            await azc.async_close()


class _RecordWatcher(RecordUpdateListener):
    """Marks an instance as heard whenever one of its records arrives."""

    def __init__(self, owner: MdnsDiscovery) -> None:
        self._owner = owner

    def async_update_records(self, zc: Zeroconf, now: float, records: list[RecordUpdate]) -> None:
        owner = self._owner
        for update in records:
            record = update.new
            goodbye = record.ttl == 0
            if record.type in (_TYPE_SRV, _TYPE_TXT):
                if record.key in owner._instances:
                    owner._heard(record.key, goodbye=goodbye)
            elif record.type == _TYPE_PTR and record.key == owner._type_key:
                alias = getattr(record, "alias", None)
                if isinstance(alias, str) and alias.lower().endswith("." + owner._type_key):
                    owner._heard(alias.lower(), goodbye=goodbye, name=alias)

    def async_update_records_complete(self) -> None:
        return None


def _registered_names(zc: Zeroconf) -> set[str]:
    return {info.name for info in zc.registry.async_get_service_infos()}
