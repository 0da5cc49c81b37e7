"""Circuit relay v2: reservations on relays while we are not publicly reachable, and the relay
service for others when we are (off unless asked for).

Auto-relay as go-libp2p does it: candidates are the static relays (``--relay``, the
``relays`` setting) and every connected peer that offers the hop protocol (bootstrap peers
included). We keep ``TARGET`` reservations, refresh each before it expires, and re-reserve
elsewhere when a relay goes away. Our ``/p2p-circuit`` addresses go into what the host
advertises, and an identify push tells connected peers (and so the DHT) at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.identity.identify_push.identify_push import push_identify_to_peers
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.tools.anyio_service import background_trio_service

from core import libp2p_compat as compat
from core.network.nat.addrs import is_private_or_loopback

log = logging.getLogger(__name__)

TARGET = 2
CHECK_INTERVAL = 0.5
RESERVE_TIMEOUT = 5.0
REFRESH_MARGIN = 0.25
"""Refresh when less than this share of a reservation's lifetime is left."""
RETRY_AFTER = 30.0
"""A relay that refused us is not asked again for this long."""
STATIC_REDIAL = 5.0
"""A static relay we lost is dialled again this often while we need it."""

SERVICE_LIMITS = RelayLimits(
    duration=120,
    data=1 << 17,
    max_circuit_conns=64,
    max_reservations=128,
)
"""go-libp2p's defaults: relayed connections are cut after 2 minutes or 128 KiB."""


@dataclass
class Reservation:
    relay: ID
    expires: float
    granted: float
    addrs: list[multiaddr.Multiaddr]


class Relays:
    """Relay protocol + transport on one host, the reservation loop, and our circuit addresses."""

    def __init__(
        self,
        host: IHost,
        dial: Callable[[PeerInfo], Awaitable[bool]],
        static: list[str],
        *,
        service: bool = False,
        wanted: Callable[[], bool] = lambda: True,
    ) -> None:
        self.host = host
        self.dial = dial
        self.service = service
        self.wanted = wanted
        """Whether we need reservations now (not while we are publicly reachable)."""
        self.static: list[PeerInfo] = []
        for text in static:
            try:
                self.static.append(info_from_p2p_addr(multiaddr.Multiaddr(text)))
            except Exception as exc:
                log.warning("relay address %s is invalid: %s", text, exc)
        self.protocol, self.transport = compat.make_relay(host, hop=service, limits=SERVICE_LIMITS)
        self.on_change: Callable[[], None] = lambda: None
        """Called when our circuit addresses change (set by the owner: the DHT re-advertises)."""
        self.find_peer: Callable[[ID], Awaitable[PeerInfo | None]] | None = None
        """The DHT's peer lookup, for dials to peers known only by id (set by the owner, whose
        DHT is made after us)."""
        compat.dial_circuits(host, self.transport, self._lookup)
        self.reservations: dict[ID, Reservation] = {}
        self._refused: dict[ID, float] = {}
        self._next_dial: dict[ID, float] = {}
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()

    async def _lookup(self, peer: ID) -> list[multiaddr.Multiaddr]:
        if self.find_peer is None:
            return []
        try:
            info = await self.find_peer(peer)
        except Exception as exc:
            log.debug("DHT lookup of %s failed: %s", peer, exc)
            return []
        return list(info.addrs) if info is not None else []

    def circuit_addrs(self) -> list[multiaddr.Multiaddr]:
        return [a for r in self.reservations.values() for a in r.addrs]

    def poke(self) -> None:
        """Something changed (a connection, our reachability): look again now."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.protocol):
            await self.protocol.event_started.wait()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for info in self.static:
                    self.host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
                self._redial_static()
                task_status.started()
                while True:
                    with trio.move_on_after(CHECK_INTERVAL):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    try:
                        await self._tend()
                    except Exception:
                        log.exception("relay reservations: unexpected failure")

    def _candidates(self) -> list[ID]:
        me = self.host.get_id()
        store = self.host.get_peerstore()
        connected = set(self.host.get_connected_peers())
        out = [i.peer_id for i in self.static if i.peer_id in connected]
        for peer in connected:
            try:
                offers_hop = compat.HOP_PROTOCOL in store.get_protocols(peer)
            except Exception:
                offers_hop = False
            if offers_hop and peer not in out and self._direct(peer):
                out.append(peer)
        now = time.monotonic()
        return [p for p in out if p != me and self._refused.get(p, 0) <= now]

    def _redial_static(self) -> None:
        """Static relays are kept connected while we need them (a lost one is re-reserved)."""
        if self._nursery is None or not self.wanted():
            return
        now = time.monotonic()
        connected = set(self.host.get_connected_peers())
        for info in self.static:
            if info.peer_id not in connected and self._next_dial.get(info.peer_id, 0) <= now:
                self._next_dial[info.peer_id] = now + STATIC_REDIAL
                self._nursery.start_soon(self.dial, info)

    def _direct(self, peer: ID) -> bool:
        """A relay reached only through another relay is no use as one."""
        conns = self.host.get_network().get_connections(peer)
        return any(compat.connection_kind(c) == "direct" for c in conns)

    async def _tend(self) -> None:
        self._redial_static()
        changed = False
        connected = set(self.host.get_connected_peers())
        for relay in [r for r in self.reservations if r not in connected]:
            log.info("relay %s went away; its reservation is gone", relay)
            del self.reservations[relay]
            changed = True
        if not self.wanted():
            if self.reservations:
                self.reservations.clear()
                changed = True
        else:
            now = time.time()
            for res in list(self.reservations.values()):
                if res.expires - now < (res.expires - res.granted) * REFRESH_MARGIN:
                    changed |= await self._reserve(res.relay)
            for relay in self._candidates():
                if len(self.reservations) >= TARGET:
                    break
                if relay not in self.reservations:
                    changed |= await self._reserve(relay)
        if changed:
            self.on_change()
            await self._announce()

    async def _reserve(self, relay: ID) -> bool:
        """Returns True if our set of circuit addresses changed."""
        try:
            with trio.fail_after(RESERVE_TIMEOUT):
                expires = await compat.reserve(self.transport, self.host, relay)
        except Exception as exc:
            log.debug("reservation on %s failed: %s", relay, exc)
            expires = None
        if expires is None:
            self._refused[relay] = time.monotonic() + RETRY_AFTER
            return self.reservations.pop(relay, None) is not None
        known = relay in self.reservations
        self.reservations[relay] = Reservation(
            relay, expires, time.time(), self._relay_circuits(relay)
        )
        log.info("reservation on relay %s until %s", relay, time.ctime(expires))
        return not known

    def _relay_circuits(self, relay: ID) -> list[multiaddr.Multiaddr]:
        """``<relay address>/p2p/<relay>/p2p-circuit`` for the address we dialled it on (an
        inbound connection shows the relay's ephemeral port instead), and the public ones it
        advertises."""
        addrs: list[multiaddr.Multiaddr] = []
        for conn in self.host.get_network().get_connections(relay):
            direction = getattr(getattr(conn, "direction", None), "name", "")
            if compat.connection_kind(conn) == "direct" and direction.lower() == "outbound":
                try:
                    addrs.extend(conn.get_transport_addresses())
                except Exception:
                    pass
        addrs += [
            a
            for a in compat.known_addrs(self.host, relay)
            if not compat.is_circuit(a) and not is_private_or_loopback(a)
        ]
        out = {}
        for addr in addrs:
            base = str(addr).split("/p2p/")[0]
            out[base] = multiaddr.Multiaddr(f"{base}/p2p/{relay}/p2p-circuit")
        return list(out.values())

    async def _announce(self) -> None:
        """Tell connected peers our new addresses (identify push) instead of waiting for them
        to ask again."""
        try:
            with trio.move_on_after(5):
                await push_identify_to_peers(self.host)
        except Exception as exc:
            log.debug("identify push failed: %s", exc)
