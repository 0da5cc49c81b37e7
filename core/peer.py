"""One libp2p peer (the design card's Peer): a host and everything that runs on it.

The peer owns its trio tasks; callers use its async methods from inside the same trio run
(``PeerManager`` for several peers, the WebSocket server, the GUI bridge) and hear back through
the event sink. Nothing here blocks the trio thread on disk or zeroconf work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import multiaddr
import trio
from libp2p.abc import INetConn
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from core import libp2p_compat as compat
from core.events import (
    CoreError,
    Event,
    EventSink,
    PeerConnected,
    PeerDisconnected,
    PeerFailed,
    ReachabilityChanged,
)
from core.files.blockstore import BlockStore
from core.files.fileproto import PROTOCOL as FILE_PROTOCOL
from core.files.sharing import Files
from core.network.contacts import Contacts
from core.network.dht import Dht
from core.network.direct import DirectConfig, DirectMessaging, Outgoing
from core.network.nat.addrs import AddressPolicy
from core.network.nat.autonat import AutoNatClient, AutoNatService
from core.network.nat.holepunch import HolePunching
from core.network.nat.portmap import PortMapping
from core.network.nat.relay import Relays
from core.network.profile_name import ProfileNames
from core.network.topics import Topics, make_pubsub, make_router
from core.network.trimmer import Trimmer
from core.profile import identity

if TYPE_CHECKING:
    from core.profile.settings import Settings

log = logging.getLogger(__name__)

CLOSE_BOUND = 3.0
PING_INTERVAL = 15.0
MUXER_RTT_SETTLE = 5.0
"""Yamux measures its first round trip 0.5 s after the connection is up (later on a busy
peer); a ping is made only if it has none by then."""
DIAL_TIMEOUT = 10.0


@dataclass
class PeerConfig:
    listen_addrs: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    mdns: bool = False
    mdns_interfaces: list[str] | None = None
    low_water: int = 100
    high_water: int = 400
    grace_period: float = 20.0
    """New connections are safe from pruning for this long."""
    direct: DirectConfig = field(default_factory=DirectConfig)
    dht_ready_wait: float = 30.0
    contacts_redial: float = 5.0
    file_update_topic: str = ""
    files_dir: str = ""
    """Folder of this peer's block store; empty means no file tree."""
    relays: list[str] = field(default_factory=list)
    """Static relays (``/…/p2p/<id>`` multiaddrs) to reserve on while not publicly reachable."""
    relay_service: bool = False
    """Serve as a circuit relay v2 for others (with go-libp2p's default limits)."""
    port_mapping: bool = False
    """Map the listen port on the router by UPnP (core/network/nat/portmap.py)."""
    display_name: str = ""
    """The name other Peerdesk peers are told (``/peerdesk/profile/1.0.0``)."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        files_dir: Path,
        *,
        listen_addrs: list[str],
        bootstrap: list[str] | None = None,
        mdns: bool = True,
        relays: list[str] | None = None,
        relay_service: bool = False,
    ) -> PeerConfig:
        """The peer a profile's settings describe, for the desktop and ``serve`` alike; an
        argument that is given (from the command line) overrides its setting."""
        return cls(
            listen_addrs=list(listen_addrs),
            bootstrap=list(settings.bootstrap if bootstrap is None else bootstrap),
            mdns=settings.mdns and mdns,
            low_water=settings.conn_low_water,
            high_water=settings.conn_high_water,
            file_update_topic=settings.file_update_topic,
            files_dir=str(files_dir),
            relays=list(settings.relays if relays is None else relays),
            relay_service=relay_service,
            port_mapping=settings.port_mapping,
            display_name=settings.display_name,
        )


class ServiceStopped(RuntimeError):
    """One of py-libp2p's services ended while the peer was running."""


class Peer:
    def __init__(
        self,
        key_pair: KeyPair,
        config: PeerConfig | None = None,
        emit: EventSink | None = None,
        *,
        contacts: dict[str, list[str]] | None = None,
        save_contacts: Callable[[dict[str, list[str]]], None] | None = None,
        alias: str = "",
    ) -> None:
        self.key_pair = key_pair
        self.config = config or PeerConfig()
        self.alias = alias
        self._sinks: list[EventSink] = [emit] if emit else []
        self.host = compat.build_host(
            key_pair,
            low_water=self.config.low_water,
            high_water=self.config.high_water,
            grace_period=self.config.grace_period,
            addrs_factory=AddressPolicy(),
        )
        self.peer_id: ID = self.host.get_id()
        self.autonat = AutoNatClient(self.host, self._on_reachability)
        self.autonat_service = AutoNatService(self.host)
        self.relays = Relays(
            self.host,
            self.dial,
            self.config.relays,
            service=self.config.relay_service,
            wanted=lambda: self.reachability != "public",
        )
        compat.advertise_circuits(self.host, self.relays.circuit_addrs)
        self.portmap = PortMapping(
            self.host, enabled=self.config.port_mapping, on_change=self._mapped_addrs_changed
        )
        compat.advertise_mapped(self.host, self.portmap.addrs)
        compat.forget_dead_connections(self.host, self._on_disconnected)
        self.holepunch = HolePunching(self.host)
        self.profile_names = ProfileNames(self.host, lambda: self.config.display_name)
        self.router = make_router()
        self.pubsub = make_pubsub(self.host, self.router)
        self.direct = DirectMessaging(self.host, self._emit, self.config.direct)
        self.dht = Dht(
            self.host,
            self._emit,
            self.dial,
            self.config.bootstrap,
            ready_wait=self.config.dht_ready_wait,
        )
        self.relays.find_peer = self.dht.find_peer
        self.relays.on_change = self.dht.addresses_changed
        self.topics = Topics(
            self.host,
            self.pubsub,
            self.router,
            self._emit,
            on_subscribed=self._on_subscribed,
            on_unsubscribed=self.dht.stop_advertising,
        )
        self.contacts = Contacts(
            self.host,
            self.dial,
            self.dht.find_peer,
            contacts or {},
            save_contacts or (lambda _c: None),
            redial_interval=self.config.contacts_redial,
        )
        self.trimmer = Trimmer(
            self.host, self.config.low_water, self.config.high_water, self.config.grace_period
        )
        self._latency: dict[ID, float] = {}
        self._connected_since: dict[ID, float] = {}
        self._stop = trio.Event()
        self.stopped = trio.Event()
        self.running = False
        self._started = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._mdns: Any = None
        self.files: Files | None = None
        if self.config.files_dir:
            store = BlockStore(Path(self.config.files_dir) / "blocks.sqlite")
            self.files = Files(self.host, store, self._emit, self._publish_file_notice)

    # -- events -------------------------------------------------------------------------------

    def remove_sink(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def _emit(self, event: Event) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:
                log.exception("event sink failed on %r", event)

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until ``stop()``; then close every connection and the host within a bound."""
        listen = [multiaddr.Multiaddr(a) for a in self.config.listen_addrs]
        self._token = trio.lowlevel.current_trio_token()
        self.host.get_network().register_notifee(
            compat.ConnectionNotifee(
                lambda _net, conn: self._on_connected(conn),
                lambda _net, conn: self._on_disconnected(conn),
            )
        )
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(self.host.run(listen))
                await stack.enter_async_context(background_trio_service(self.pubsub))
                await stack.enter_async_context(background_trio_service(self.router))
                await stack.enter_async_context(background_trio_service(self.dht.kad))
                await self.pubsub.wait_until_ready()
                compat.install_subscription_repair(self.pubsub)
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self.direct.run)
                    await nursery.start(self.topics.run)
                    await nursery.start(self.dht.run)
                    await nursery.start(self.contacts.run)
                    await nursery.start(self.trimmer.run)
                    await nursery.start(self.relays.run)
                    await nursery.start(self.holepunch.run)
                    await nursery.start(self.profile_names.run)
                    self.autonat_service.start()
                    await nursery.start(self.autonat.run)
                    await nursery.start(self.portmap.run)
                    nursery.start_soon(self._ping_loop)
                    nursery.start_soon(self._watch_services)
                    if self.files is not None:
                        await nursery.start(self.files.run)
                    if self.config.mdns:
                        self._start_mdns()
                    self.running = self._started = True
                    task_status.started(self)
                    await self._stop.wait()
                    self.running = False
                    self._stop_mdns()
                    nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_BOUND):
                    await self._close_connections()
                    await self.host.close()
        except Exception as exc:
            if not self._started:
                raise
            # Never a zombie: the owner hears that this peer is gone and why.
            log.exception("peer %s failed", self.peer_id)
            self._emit(PeerFailed(f"the peer stopped after an internal error: {exc!r}"))
        finally:
            self.running = False
            if self.files is not None:
                self.files.store.close()
            self.stopped.set()

    def stop(self) -> None:
        self._stop.set()

    async def _watch_services(self) -> None:
        """py-libp2p's services can end on an error without it reaching us (the peer would go
        on answering as a zombie with no network or no pubsub): a service that stops while we
        run fails the whole peer, visibly."""
        services = {
            "network": self.host.get_network(),
            "pubsub": self.pubsub,
            "gossipsub": self.router,
            "dht": self.dht.kad,
        }
        while True:
            await trio.sleep(0.5)
            for name, service in services.items():
                if not service.manager.is_running:  # type: ignore[attr-defined]
                    raise ServiceStopped(f"the {name} service stopped")

    async def _close_connections(self) -> None:
        """Closing connections one by one costs ~200 ms each inside host.close(): do them all
        at once first."""
        network = self.host.get_network()
        conns = [c for conns in network.get_connections_map().values() for c in conns]

        async def close(conn: INetConn) -> None:
            try:
                await conn.muxed_conn.close()
            except Exception:
                log.debug("closing connection failed", exc_info=True)

        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(close, conn)

    # -- connections --------------------------------------------------------------------------

    async def dial(self, info: PeerInfo) -> bool:
        """Dial a peer whose addresses we know (contacts, the DHT, the manager's own peers);
        False when it cannot be reached, which these callers treat as "try later"."""
        if info.peer_id == self.peer_id:
            return False
        try:
            await self._dial(info)
            return True
        except ConnectionError as exc:
            log.debug("dial %s failed: %s", info.peer_id, exc)
            return False

    async def connect(self, addr: str) -> str:
        """Dial a ``/…/p2p/<id>`` multiaddr; returns the peer id. Raises ValueError on a bad
        address and ConnectionError when the peer cannot be reached."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise ValueError(f"{addr!r} is not a multiaddr ending in /p2p/<peer id>") from exc
        if info.peer_id == self.peer_id:
            raise ValueError("that is this peer's own address")
        try:
            await self._dial(info)
        except ConnectionError as exc:
            raise ConnectionError(f"could not connect to {addr}: {exc}") from exc
        return str(info.peer_id)

    async def _dial(self, info: PeerInfo) -> None:
        """Every dial of the peer goes here: an earlier failure is forgotten first (the
        library's backoff would refuse the retry a user or a redial asks for), and the dial is
        bounded. Any failure is a ConnectionError. A peer we reach only through a relay is
        then dialled at its public addresses (``HolePunching.go_direct``)."""
        compat.forget_dial_failure(self.host, info.peer_id)
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                await self.host.connect(info)
        except Exception as exc:
            raise ConnectionError(str(exc) or type(exc).__name__) from exc
        # Reached only through a relay (now or before): its public addresses are tried
        # directly, in the background (the relayed connection already works).
        if self._nursery is not None and compat.only_relayed(self.host, info.peer_id):
            self._nursery.start_soon(self.holepunch.go_direct, info.peer_id, info.addrs)

    def _on_connected(self, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        first = peer not in self._connected_since
        self._connected_since.setdefault(peer, time.time())
        self.direct.peer_seen(peer)
        self.trimmer.connected(peer)
        if first:
            addr = ""
            try:
                addrs = conn.get_transport_addresses()
                addr = str(addrs[0]) if addrs else ""
            except Exception:
                pass
            self._emit(PeerConnected(str(peer), addr, _direction(conn)))
        self.relays.poke()
        if self.autonat.status == "unknown":
            self.autonat.poke()
        if self._nursery is not None:
            self._nursery.start_soon(self.dht.add_peer, peer)
            self._nursery.start_soon(self._maybe_punch, conn)
            if first:
                self.profile_names.connected(peer)
                self._nursery.start_soon(compat.resync_subscriptions, self.pubsub, peer)
                self._nursery.start_soon(self._first_latency, peer)

    def _mapped_addrs_changed(self) -> None:
        """A port mapping came or went: AutoNAT asks again, the DHT re-advertises."""
        self.autonat.recheck()
        self.dht.addresses_changed()

    @property
    def reachability(self) -> str:
        """'public', 'private' or 'unknown' (AutoNAT's verdict)."""
        return self.autonat.status

    def _on_reachability(self, status: str) -> None:
        """Private: reserve on relays, DHT client. Public: drop reservations, DHT server."""
        self.relays.poke()
        self.dht.set_server_mode(status != "private")
        self._emit(ReachabilityChanged(status))

    async def _maybe_punch(self, conn: INetConn) -> None:
        """A peer that reached us through a relay: start hole punching (the relay transport
        labels the connection just after the swarm announces it)."""
        await trio.sleep(0.05)
        log.debug("new connection %s %s", compat.connection_kind(conn), _direction(conn))
        if compat.connection_kind(conn) == "relayed" and _direction(conn) == "inbound":
            self.holepunch.relayed_inbound(conn.muxed_conn.peer_id)

    def _on_disconnected(self, conn: INetConn) -> None:
        self.relays.poke()
        peer = conn.muxed_conn.peer_id
        if self.host.get_network().get_connections(peer):
            return
        self.trimmer.disconnected(peer)
        if self._connected_since.pop(peer, None) is not None:
            self._latency.pop(peer, None)
            self._emit(PeerDisconnected(str(peer)))

    async def _ping_loop(self) -> None:
        while True:
            async with trio.open_nursery() as nursery:
                for peer in list(self.host.get_connected_peers()):
                    if not self._latency_from_muxer(peer):
                        nursery.start_soon(self._ping, peer)
            await trio.sleep(PING_INTERVAL)

    def _latency_from_muxer(self, peer: ID) -> bool:
        """Take the round trip a connection's muxer measured by itself (free: no stream,
        nothing sent); False if none has one."""
        for conn in self.host.get_network().get_connections(peer):
            rtt = compat.muxer_rtt(conn)
            if rtt is not None:
                self._latency[peer] = rtt
                return True
        return False

    async def _first_latency(self, peer: ID) -> None:
        """A new connection's latency: its muxer's first measurement, or a ping if it has
        none within ``MUXER_RTT_SETTLE``."""
        with trio.move_on_after(MUXER_RTT_SETTLE):
            while not self._latency_from_muxer(peer):
                await trio.sleep(0.25)
            return
        await self._ping(peer)

    async def _ping(self, peer: ID) -> None:
        try:  # not PingService.ping: it raises TypeError (core/libp2p_compat/ping.py)
            self._latency[peer] = await compat.ping_rtt(self.host, peer, timeout=5)
        except Exception:
            log.debug("ping %s failed", peer, exc_info=True)

    def info(self) -> dict[str, Any]:
        network = self.host.get_network()
        store = self.host.get_peerstore()
        conns = []
        for peer, peer_conns in network.get_connections_map().items():
            if not peer_conns:
                continue
            links = [self._link(peer, c) for c in peer_conns]
            # The entry speaks for the connection new streams use: direct before relayed.
            best = min(range(len(links)), key=lambda i: links[i]["kind"] == "relayed")
            conn, addrs = peer_conns[best], links[best]["addrs"]
            try:
                protocols = sorted(store.get_protocols(peer))
            except Exception:
                protocols = []
            conns.append(
                {
                    "peer": str(peer),
                    "addrs": addrs,
                    "direction": _direction(conn),
                    "kind": links[best]["kind"],
                    "links": links,
                    "latency_ms": round(self._latency[peer], 2) if peer in self._latency else None,
                    "protocols": protocols,
                    "contact": self.contacts.is_contact(peer),
                    "since": self._connected_since.get(peer),
                    "name": self.profile_names.name_of(str(peer)),
                }
            )
        return {
            "peerid": str(self.peer_id),
            "alias": self.alias,
            "addrs": [str(a) for a in self.host.get_addrs()],
            "reachability": self.reachability,
            "relay_addrs": [str(a) for a in self.relays.circuit_addrs()],
            "relay_service": self.config.relay_service,
            "protocols": sorted(self.direct.started),
            "connections": sorted(conns, key=lambda c: c["peer"]),
            "topics": self.topics.subscribed,
            "monitored": self.topics.monitored,
            "dht_ready": self.dht.ready.is_set(),
            "routing_table": self.dht.routing_table_size(),
            "mdns": self._mdns is not None,
            "contacts": self.contacts.snapshot(),
        }

    def _link(self, peer: ID, conn: INetConn) -> dict[str, Any]:
        """One connection: 'direct', 'relayed', or 'hole-punched' (direct, made by DCUtR)."""
        try:
            addrs = [str(a) for a in conn.get_transport_addresses()]
        except Exception:
            addrs = []
        kind = compat.connection_kind(conn)
        if kind == "direct" and peer in self.holepunch.punched:
            kind = "hole-punched"
        return {"addrs": addrs, "direction": _direction(conn), "kind": kind}

    def listen_addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    # -- direct messages ----------------------------------------------------------------------

    def start_protocol(self, protocol: str) -> bool:
        """Returns False if the protocol was already started."""
        _check_protocol(protocol)
        return self.direct.start_protocol(protocol)

    def stop_protocol(self, protocol: str) -> None:
        self.direct.stop_protocol(protocol)

    def enqueue(self, peer: str, protocol: str, value: Any) -> Outgoing:
        _check_protocol(protocol)
        return self.direct.enqueue(identity.parse_peer_id(peer), protocol, value)

    async def send(self, peer: str, protocol: str, value: Any) -> str:
        msg = self.enqueue(peer, protocol, value)
        await msg.wait()
        return msg.msg_id

    # -- topics -------------------------------------------------------------------------------

    async def subscribe(self, topic: str) -> None:
        await self.topics.subscribe(topic)

    def _on_subscribed(self, topic: str) -> None:
        self.dht.discover_topic_peers(topic)
        self.dht.advertise_topic(topic)

    async def unsubscribe(self, topic: str) -> None:
        await self.topics.unsubscribe(topic)

    async def publish(self, topic: str, value: Any) -> int:
        """Returns how many peers the message was sent to (0: nobody received it)."""
        return await self.topics.publish(topic, value)

    def list_peers(self, topic: str) -> list[str]:
        return self.topics.peers(topic)

    def monitor(self, topic: str) -> None:
        self.topics.monitor(topic)

    def stop_monitor(self, topic: str) -> None:
        self.topics.stop_monitor(topic)

    # -- files ------------------------------------------------------------------------------

    def require_files(self) -> Files:
        if self.files is None:
            raise RuntimeError("this peer has no file store")
        return self.files

    async def _publish_file_notice(self) -> None:
        """p2p-webapp's notice after every change, only while subscribed to the topic."""
        topic = self.config.file_update_topic
        if topic and topic in self.topics.subscribed:
            await self.publish(topic, {"type": "p2p-webapp-file-update", "peer": str(self.peer_id)})

    # -- contacts -----------------------------------------------------------------------------

    def add_peers(self, entries: list[str]) -> dict[str, str]:
        return self.contacts.add(entries)

    def remove_peers(self, entries: list[str]) -> dict[str, str]:
        return self.contacts.remove(entries)

    # -- mDNS ---------------------------------------------------------------------------------

    def _start_mdns(self) -> None:
        try:
            from core.network.mdns import Mdns
        except ImportError as exc:
            self._emit(CoreError(f"LAN discovery unavailable: {exc}"))
            return
        token = self._token
        assert token is not None

        def found(peer: str, addrs: list[str]) -> None:  # zeroconf thread
            try:
                trio.from_thread.run_sync(self._on_mdns_found, peer, addrs, trio_token=token)
            except trio.RunFinishedError:
                pass

        self._mdns = Mdns(
            str(self.peer_id), self._concrete_addrs, found, interfaces=self.config.mdns_interfaces
        )
        self._mdns.start()

    def _stop_mdns(self) -> None:
        mdns, self._mdns = self._mdns, None
        if mdns is not None:
            # zeroconf's unregister blocks for a while; it runs on its own thread, not ours.
            trio.lowlevel.spawn_system_task(trio.to_thread.run_sync, mdns.stop)

    def _concrete_addrs(self) -> list[str]:
        """Our own addresses for mDNS: a circuit address cut at its first ``/p2p/`` would be
        the relay's address under our peer id, and LAN peers need no relay."""
        return [str(a).split("/p2p/")[0] for a in self.host.get_addrs() if not compat.is_circuit(a)]

    def _on_mdns_found(self, peer: str, addrs: list[str]) -> None:
        if self._nursery is None or not self.running:
            return
        try:
            info = PeerInfo(ID.from_base58(peer), [multiaddr.Multiaddr(a) for a in addrs])
        except Exception as exc:
            log.debug("ignoring mDNS record for %s: %s", peer, exc)
            return
        if info.peer_id == self.peer_id or info.peer_id in self._connected_since:
            return
        self._nursery.start_soon(self.dial, info)


def _check_protocol(protocol: str) -> None:
    """p2p-webapp apps use bare names like ``chat`` as well as ``/chat/1.0.0``; multistream
    only forbids what would break its newline-delimited negotiation."""
    if (
        not isinstance(protocol, str)
        or not protocol
        or len(protocol) > 256
        or any(c in protocol for c in "\r\n\0")
    ):
        raise ValueError("a protocol id is a non-empty string such as /chat/1.0.0")
    if protocol == FILE_PROTOCOL:
        raise ValueError(f"{FILE_PROTOCOL} is reserved for file exchange")


def _direction(conn: INetConn) -> str:
    direction = getattr(conn, "direction", None)
    name = getattr(direction, "name", str(direction or "unknown"))
    return name.lower()


def new_peer(
    config: PeerConfig | None = None,
    emit: EventSink | None = None,
    key_pair: KeyPair | None = None,
    **kwargs: Any,
) -> Peer:
    return Peer(key_pair or identity.generate(), config, emit, **kwargs)
