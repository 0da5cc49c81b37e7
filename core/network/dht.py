"""Kademlia DHT: bootstrap with a readiness signal, a queue of operations asked for before it
is ready, and topic rendezvous (advertise / discover peers of a topic), as p2p-webapp does.

A peer with no network must still start at once: bootstrap runs in the background, and
operations wait for it in the queue instead of failing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from core import libp2p_compat as compat
from core.events import DhtReady, EventSink
from core.ipfs import dagpb

log = logging.getLogger(__name__)

READY_WAIT = 30.0
BOOTSTRAP_SUCCESSES = 3
REDISCOVER_FIRST = 5.0
REDISCOVER_MAX = 120.0
TOPIC_LOOKUP_COUNT = 100
"""Providers a topic lookup stops at (the library's default, 20, is a small topic)."""
"""While we are in a topic its providers are looked up again, 5 s after the first lookup and
then with the pause doubling up to 2 min: one lookup finds only who advertised before it, and
returns a bounded batch (at 50 peers in the swarm lab, lists stayed a third complete). A
lookup that finds a provider no earlier one found starts the pause over: the topic is still
growing, and its newcomers are found 5 s later instead of up to 2 min later."""

Operation = Callable[[], Awaitable[None]]


def namespace_cid(namespace: str) -> str:
    """CIDv1(raw, sha2-256(namespace)): go-libp2p's routing discovery key for a namespace."""
    return dagpb.cid_str(dagpb.cid_v1_raw(namespace.encode()))


def rendezvous_namespaces(topic: str) -> list[str]:
    """p2p-webapp advertises the raw topic name; GossipSub's own discovery uses
    ``floodsub:<topic>``. We advertise and look up both, to be found by either kind of peer."""
    return [topic, f"floodsub:{topic}"]


class Dht:
    def __init__(
        self,
        host: IHost,
        emit: EventSink,
        dial: Callable[[PeerInfo], Awaitable[bool]],
        bootstrap_addrs: list[str],
        *,
        ready_wait: float = READY_WAIT,
        reprovide_interval: float = compat.REPROVIDE_INTERVAL,
        provider_ttl: float = compat.PROVIDER_TTL,
        rediscover_first: float = REDISCOVER_FIRST,
    ) -> None:
        self.host = host
        self.emit = emit
        self.dial = dial
        self.bootstrap_addrs = bootstrap_addrs
        self.ready_wait = ready_wait
        self.reprovide_interval = reprovide_interval
        self.rediscover_first = rediscover_first
        self.kad: KadDHT = compat.GoLikeKadDHT(host, DHTMode.SERVER)
        compat.widen_inbound_handlers(self.kad)
        self.providers = compat.install_provider_store(self.kad, provider_ttl)
        self.ready = trio.Event()
        self._queue: list[Operation] = []
        self._advertising: dict[str, trio.CancelScope] = {}
        self._readvertise: dict[str, trio.Event] = {}
        """Set to advertise a topic again before its next round (``addresses_changed``)."""
        self._discovering: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._bootstrap)
            task_status.started()
            await trio.sleep_forever()

    def set_record_times(self, provider_ttl: float, reprovide_interval: float) -> None:
        """How long the provider records we store stay valid, and how often we advertise
        ours again (go's 48 h and 22 h by default; the swarm lab makes them seconds, to see
        records refreshed and expiring). Takes effect at the next advertisement."""
        self.providers.ttl = provider_ttl
        self.reprovide_interval = reprovide_interval

    def routing_table_size(self) -> int:
        return self.kad.get_routing_table_size()

    def set_server_mode(self, server: bool) -> None:
        """go's auto mode: answer DHT queries only while publicly reachable (a NATed server
        would be put in routing tables where nobody can reach it)."""
        mode = DHTMode.SERVER if server else DHTMode.CLIENT
        if self.kad.mode == mode or self._nursery is None:
            return

        async def switch() -> None:
            try:
                await self.kad.switch_mode(mode)
                log.info("DHT now in %s mode", mode.name.lower())
            except Exception as exc:
                log.warning("DHT mode switch failed: %s", exc)

        self._nursery.start_soon(switch)

    async def add_peer(self, peer: ID) -> None:
        """Connecting does not put a peer into py-libp2p's routing table: do it ourselves."""
        try:
            await self.kad.add_peer(peer, skip_server_mode_check=True)
        except Exception as exc:
            log.debug("routing table refused %s: %s", peer, exc)

    async def _bootstrap(self) -> None:
        successes = 0
        for text in self.bootstrap_addrs:
            if successes >= BOOTSTRAP_SUCCESSES:
                break
            try:
                info = info_from_p2p_addr(multiaddr.Multiaddr(text))
            except Exception as exc:
                log.warning("bootstrap address %s is invalid: %s", text, exc)
                continue
            if info.peer_id == self.host.get_id():
                continue
            if await self.dial(info):
                await self.add_peer(info.peer_id)
                successes += 1
        for peer in self.host.get_connected_peers():
            await self.add_peer(peer)
        if successes:
            try:
                with trio.move_on_after(self.ready_wait):
                    await self.kad.refresh_routing_table()
            except Exception as exc:
                log.info("DHT refresh failed: %s", exc)
        with trio.move_on_after(self.ready_wait):
            while self.routing_table_size() == 0:
                await trio.sleep(0.5)
                for peer in self.host.get_connected_peers():
                    await self.add_peer(peer)
        size = self.routing_table_size()
        log.info("DHT ready with %d peer(s) in the routing table", size)
        self.ready.set()
        self.emit(DhtReady(size))
        queued, self._queue = self._queue, []
        for op in queued:
            self._spawn(op)

    def enqueue(self, op: Operation) -> None:
        """Run now if the DHT is ready, otherwise when it becomes ready."""
        if self.ready.is_set():
            self._spawn(op)
        else:
            self._queue.append(op)

    def _spawn(self, op: Operation) -> None:
        assert self._nursery is not None

        async def guarded() -> None:
            try:
                await op()
            except Exception as exc:
                log.warning("DHT operation failed: %s", exc)

        self._nursery.start_soon(guarded)

    # -- topic rendezvous ---------------------------------------------------------------------

    def advertise_topic(self, topic: str) -> None:
        if topic in self._advertising:
            return
        scope = trio.CancelScope()
        self._advertising[topic] = scope

        async def advertise() -> None:
            with scope:
                while True:
                    self._readvertise[topic] = trio.Event()
                    async with trio.open_nursery() as nursery:  # both names at once
                        for ns in rendezvous_namespaces(topic):
                            nursery.start_soon(self._provide, ns)
                    with trio.move_on_after(self.reprovide_interval):
                        await self._readvertise[topic].wait()

        self.enqueue(advertise)

    async def _provide(self, namespace: str) -> None:
        sent = await compat.provide_network(self.kad, namespace_cid(namespace))
        log.debug("advertised %s to %d peer(s)", namespace, sent)

    def addresses_changed(self) -> None:
        """Our advertised addresses changed (a relay reservation made or lost): advertise our
        topics again now. A provider record carries the addresses we had when we sent it, and
        servers answer lookups with those: a NATed peer that advertised before its first
        reservation was listed with its private addresses only, which nobody can dial, until
        the next round (22 h)."""
        for event in self._readvertise.values():
            event.set()

    def stop_advertising(self, topic: str) -> None:
        """We left the topic: stop advertising it and looking for its peers."""
        self._readvertise.pop(topic, None)
        for scopes in (self._advertising, self._discovering):
            scope = scopes.pop(topic, None)
            if scope is not None:
                scope.cancel()

    def discover_topic_peers(self, topic: str) -> None:
        """Dial the topic's providers we are not connected to, now and again while we are in
        the topic (``REDISCOVER_FIRST``, doubling to ``REDISCOVER_MAX`` while no lookup finds
        anyone new)."""
        if topic in self._discovering:
            return
        scope = trio.CancelScope()
        self._discovering[topic] = scope

        async def discover() -> None:
            pause = self.rediscover_first
            seen: set[ID] = set()
            with scope:
                while True:
                    growing = False
                    try:
                        found = await self._find_and_dial(topic)
                        growing = bool({i.peer_id for i in found} - seen)
                        seen.update(i.peer_id for i in found)
                    except Exception as exc:  # a lookup failing now may work next time
                        log.debug("looking for the peers of %s failed: %s", topic, exc)
                    pause = self.rediscover_first if growing else pause
                    await trio.sleep(pause)
                    pause = min(pause * 2, REDISCOVER_MAX)

        self.enqueue(discover)

    async def _find_and_dial(self, topic: str) -> list[PeerInfo]:
        """One lookup of the topic's providers; each we are not connected to (or only through
        a relay) is dialled as soon as the walk names it, not when the walk ends. Returns when
        the dials have."""
        # A peer we reach only through a relay is dialled too: the dial tries it directly.
        connected = {
            p for p in self.host.get_connected_peers() if not compat.only_relayed(self.host, p)
        }
        dialled: set[ID] = set()
        async with trio.open_nursery() as nursery:

            def dial_new(info: PeerInfo) -> None:
                if info.peer_id not in connected and info.peer_id not in dialled:
                    dialled.add(info.peer_id)
                    nursery.start_soon(self.dial, info)

            found = await self.find_topic_peers(topic, on_found=dial_new)
            for info in found:
                dial_new(info)
            log.debug("topic %s: %d found, dialing %d", topic, len(found), len(dialled))
        return found

    async def find_topic_peers(
        self, topic: str, *, on_found: Callable[[PeerInfo], None] | None = None
    ) -> list[PeerInfo]:
        """The topic's providers under both rendezvous names (not us), each also handed to
        ``on_found`` once, as soon as a walk names it with addresses."""
        me = self.host.get_id()
        answers: list[list[PeerInfo]] = []
        told = {me}

        def tell(info: PeerInfo) -> None:  # once per peer, whichever name's walk names it
            if on_found is not None and info.peer_id not in told:
                told.add(info.peer_id)
                on_found(PeerInfo(info.peer_id, _dialable(info.addrs)))

        async def look(ns: str) -> None:
            key = namespace_cid(ns)
            answers.append(
                await compat.find_providers_network(self.kad, key, TOPIC_LOOKUP_COUNT, tell)
            )

        async with trio.open_nursery() as nursery:  # both names at once: half the wait
            for ns in rendezvous_namespaces(topic):
                nursery.start_soon(look, ns)
        found: dict[ID, PeerInfo] = {}
        for info in (i for providers in answers for i in providers):
            if info.peer_id != me and info.peer_id not in found:
                found[info.peer_id] = PeerInfo(info.peer_id, _dialable(info.addrs))
        return list(found.values())

    async def find_peer(self, peer: ID) -> PeerInfo | None:
        """Where ``peer`` is: its connection's addresses if we are connected, else what a walk
        through the DHT finds (never the peerstore's old addresses: callers ask the DHT
        because those failed)."""
        await self.ready.wait()
        if self.host.get_network().get_connections(peer):
            return PeerInfo(peer, compat.known_addrs(self.host, peer))
        info = await compat.find_peer_network(self.kad, peer)
        return PeerInfo(peer, _dialable(info.addrs)) if info is not None else None


def _dialable(addrs: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    """Provider records carry ``/p2p/<id>``; a circuit address keeps all of it (cut at its
    first ``/p2p/`` it would be the relay's own address)."""
    circuits = [a for a in addrs if compat.is_circuit(a)]
    return compat.strip_p2p([a for a in addrs if not compat.is_circuit(a)]) + circuits
