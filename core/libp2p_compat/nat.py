"""Relay, hole punching and connection kinds on py-libp2p 0.8.1 (docs/spec/nat-notes.md).

- The swarm's ``dial_peer`` drops every ``/p2p-circuit`` address (trap 1), so ``connect()``,
  ``new_stream()`` and every caller above them never reach a NATed peer. ``dial_circuits``
  wraps it: direct addresses first, circuit addresses through the relay transport when the
  peer has no direct address or after a head start for the direct ones.
- With ``max_connections_per_peer=1`` (kept: it is what stops a dial at its first success
  instead of waiting 250 ms of happy eyeballs) the swarm trims a second connection to a peer,
  which kills the direct connection hole punching makes beside the relayed one.
  ``keep_one_per_kind`` lets a direct and a relayed connection live side by side, and up to
  two of a kind: an AutoNAT dial-back opens a second direct connection for a moment, and the
  library's trim would close the *old* ones (the new one is in its grace period). The swarm
  already opens new streams on a direct connection in
  preference to a relayed one.
- ``host.get_addrs()`` strips every address from its first ``/p2p/`` on before adding ours, so
  an ``addrs_factory`` cannot hand it a circuit address (``<relay>/p2p/R/p2p-circuit`` comes
  out as the relay's own address): ``advertise_circuits`` adds them after that step.
- When a relay cuts a relayed connection (go and js relays do after 2 minutes or 128 KiB),
  the connection's close hangs half-way: it is marked closed but stays in the swarm's table,
  and ``new_stream`` then fails ("No valid connections") instead of dialling again, so
  nothing reaches that peer any more. ``forget_dead_connections`` takes such connections
  out of the table before a new stream is opened.
- ``host.connect`` and the swarm's ``dial_peer`` return any open connection, a relayed one
  too, so a peer first reached through a relay is never dialled directly again; under load
  the library's DCUtR gives its own direct try 2 s, too short for a handshake, and the pair
  stays relayed until the relay cuts the circuit (2 minutes). ``dial_direct`` dials a
  relayed peer's direct addresses regardless.
- A reservation is made with the relay transport's own request/response code; its result
  (the expiry) is read back from the transport's table.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetConn
from libp2p.connection_types import ConnectionType
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import STOP_PROTOCOL_ID as STOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport

log = logging.getLogger(__name__)

RELAY_DIAL_DELAY = 0.5
"""Head start of direct addresses over circuit ones (go-libp2p's dial ranker uses 500 ms)."""
RELAY_DIAL_TIMEOUT = 10.0
ADDR_TTL = 600
LOOKUP_TIMEOUT = 15.0

_looking_up: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "peerdesk_dht_lookup", default=False
)
"""Set while a dial's DHT lookup runs: the lookup's own dials (to DHT peers whose addresses
the peerstore has forgotten) must not start lookups of their own, which recursed without end
(RecursionError, then TrioInternalError ending the whole trio run)."""
DEAD_GRACE = 0.3

__all__ = [
    "HOP_PROTOCOL",
    "STOP_PROTOCOL",
    "advertise_circuits",
    "circuit_target",
    "connection_kind",
    "dial_circuits",
    "dial_direct",
    "forget_dead_connections",
    "is_circuit",
    "keep_one_per_kind",
    "make_relay",
    "observed_ips",
    "only_relayed",
    "reserve",
]


def is_circuit(addr: multiaddr.Multiaddr) -> bool:
    return "/p2p-circuit" in str(addr)


def circuit_target(addr: multiaddr.Multiaddr, peer: ID) -> multiaddr.Multiaddr:
    """``<relay>/p2p-circuit`` with exactly one ``/p2p/<peer>`` at the end, as the relay
    transport wants it (peerstore entries come with and without it)."""
    head = str(addr).split("/p2p-circuit")[0]
    return multiaddr.Multiaddr(f"{head}/p2p-circuit/p2p/{peer}")


def connection_kind(conn: INetConn) -> str:
    """'relayed' for a connection through a relay, 'direct' otherwise."""
    try:
        addrs = conn.get_transport_addresses()
    except Exception:
        addrs = []
    if any(is_circuit(a) for a in addrs):
        return "relayed"
    try:
        if conn.muxed_conn.get_connection_type().name == "RELAYED":
            return "relayed"
    except Exception:
        pass
    return "direct"


def only_relayed(host: IHost, peer: ID) -> bool:
    """Whether every open connection to ``peer`` goes through a relay (and there is one)."""
    conns = [c for c in host.get_network().get_connections(peer) if not c.is_closed]
    return bool(conns) and all(connection_kind(c) == "relayed" for c in conns)


async def dial_direct(host: IHost, peer: ID, addrs: list[multiaddr.Multiaddr]) -> bool:
    """A direct connection to ``peer`` beside the relayed one we have: ``host.connect`` and
    the swarm's ``dial_peer`` hand back any open connection, a relayed one too, so nothing
    above them ever dials a peer we reach through a relay. ``Swarm.dial_addr`` dials the
    address whatever is open. All of ``addrs`` at once, the first to connect wins; the caller
    bounds the wait. True once a direct connection is open."""
    swarm: Any = host.get_network()
    async with trio.open_nursery() as nursery:

        async def one(addr: multiaddr.Multiaddr) -> None:
            try:
                await swarm.dial_addr(addr, peer)
            except Exception as exc:
                log.debug("direct dial of %s at %s failed: %s", peer, addr, exc)
                return
            nursery.cancel_scope.cancel()

        for addr in addrs:
            nursery.start_soon(one, addr)
    return any(
        connection_kind(c) == "direct" and not c.is_closed for c in swarm.get_connections(peer)
    )


def make_relay(host: IHost, *, hop: bool, limits: RelayLimits | None) -> tuple[Any, Any]:
    """The circuit relay v2 protocol (STOP always: we accept relayed connections; HOP when we
    serve as a relay) and the transport that dials through and reserves on relays."""
    roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if hop else RelayRole(0))
    protocol = CircuitV2Protocol(host, limits=limits, allow_hop=hop)
    transport = CircuitV2Transport(host, protocol, RelayConfig(roles=roles, limits=limits))
    return protocol, transport


async def reserve(transport: Any, host: IHost, relay: ID) -> float | None:
    """One reservation (or refresh) on ``relay``; returns its expiry (unix time) or None."""
    stream = await host.new_stream(relay, [HOP_PROTOCOL])
    try:
        ok = await transport._make_reservation(stream, relay)
    finally:  # shielded and bounded: a caller's timeout must not leave the stream open
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                await stream.close()
            except Exception:
                pass
    if not ok:
        return None
    return float(transport._reservations.get(relay) or time.time() + 3600)


def advertise_circuits(host: IHost, circuits: Callable[[], list[multiaddr.Multiaddr]]) -> None:
    """Our relay addresses (``<relay>/p2p/R/p2p-circuit``), with ``/p2p/<us>``, in what the
    host advertises (identify, the DHT)."""
    original = host.get_addrs
    me = host.get_id()

    def get_addrs() -> list[multiaddr.Multiaddr]:
        extra = [multiaddr.Multiaddr(f"{a}/p2p/{me}") for a in circuits()]
        return list(original()) + extra

    host.get_addrs = get_addrs  # type: ignore[method-assign]


def advertise_mapped(host: IHost, mapped: Callable[[], list[multiaddr.Multiaddr]]) -> None:
    """Our router's port-mapped addresses (``/ip4/EXT/tcp/P``), with ``/p2p/<us>``, after
    the others in what the host advertises: DCUtR binds its dials to the first address, and
    a mapped address is not on any of our interfaces."""
    original = host.get_addrs
    me = host.get_id()

    def get_addrs() -> list[multiaddr.Multiaddr]:
        own = list(original())
        if not (mapping := mapped()):  # no mapping: skip naming every address (base58 each)
            return own
        seen = {str(a) for a in own}
        extra = [multiaddr.Multiaddr(f"{a}/p2p/{me}") for a in mapping]
        return own + [a for a in extra if str(a) not in seen]

    host.get_addrs = get_addrs  # type: ignore[method-assign]


def observed_ips(host: IHost) -> list[str]:
    """IPs other peers saw our connections come from (identify), even if only one peer saw
    it: behind a NAT that is the router's address. The library keeps them in a private
    manager and only advertises them after several observers agree."""
    manager = getattr(host, "_observed_addr_manager", None)
    if manager is None:
        return []
    out: list[str] = []
    try:
        addrs = manager.addrs(min_observers=1)
    except Exception:
        return []
    for addr in addrs:
        parts = str(addr).split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6") and not is_circuit(addr):
            out.append(parts[2])
    return list(dict.fromkeys(out))


def forget_dead_connections(host: IHost, on_forgotten: Callable[[INetConn], None]) -> None:
    """See the module doc: a closed connection left in the table blocks every new stream. A
    normal close takes it out within milliseconds, so one still there ``DEAD_GRACE`` later is
    stuck: we take it out and tell only ``on_forgotten`` (our own bookkeeping). Taking it out
    at once raced the library's cleanup of a normal close and cost the peer's next
    connection."""
    swarm: Any = host.get_network()
    original = swarm.new_stream

    async def new_stream(peer_id: ID) -> Any:
        dead = [c for c in swarm.connections.get(peer_id) or [] if c.is_closed]
        if dead:
            await trio.sleep(DEAD_GRACE)
            for conn in dead:
                if conn in (swarm.connections.get(peer_id) or []):
                    log.debug("forgetting a dead connection to %s", peer_id)
                    swarm.remove_conn(conn)
                    on_forgotten(conn)
        return await original(peer_id)

    swarm.new_stream = new_stream


KEEP_PER_KIND = 2
"""Connections of one kind (direct, relayed) kept to a peer."""


def keep_one_per_kind(host: IHost) -> None:
    """Trim a peer's connections only beyond two of a kind (see the module doc), and then the
    newest: the one whose arrival made it three, the same connection at both ends. The
    library trims to one, sparing those in their grace period, so a third direct connection
    (a dial-back to a peer we hold two with, both having dialled at once: common in a swarm)
    closed the two established ones, and when it closed too the pair had none."""
    swarm: Any = host.get_network()

    def trim(peer_id: ID) -> None:
        conns = list(swarm.connections.get(peer_id, []))  # in the order they were added
        victims: list[INetConn] = []
        for kind in {connection_kind(c) for c in conns}:
            victims += [c for c in conns if connection_kind(c) == kind][KEEP_PER_KIND:]
        if not victims:
            return
        for conn in victims:
            swarm.cleanup_connection_health(peer_id, conn)
            swarm.manager.run_task(swarm._close_connection_async, conn)
        swarm.connections[peer_id] = [c for c in conns if c not in victims]

    swarm._trim_connections = trim


def dial_circuits(
    host: IHost,
    transport: Any,
    lookup: Callable[[ID], Awaitable[list[multiaddr.Multiaddr]]] | None = None,
) -> None:
    """Make every dial path reach peers known only by circuit addresses (trap 1), and peers
    known only by id: with no address at all, ``lookup`` (the DHT) is asked first."""
    swarm: Any = host.get_network()
    original: Callable[[ID], Awaitable[list[INetConn]]] = swarm.dial_peer

    def known(peer_id: ID) -> list[multiaddr.Multiaddr]:
        try:
            return list(host.get_peerstore().addrs(peer_id))
        except Exception:
            return []

    async def dial_peer(peer_id: ID) -> list[INetConn]:
        if swarm.get_connections(peer_id):
            return await original(peer_id)
        addrs = known(peer_id)
        if not addrs and lookup is not None and not _looking_up.get():
            token = _looking_up.set(True)
            try:
                with trio.move_on_after(LOOKUP_TIMEOUT):
                    found = await lookup(peer_id)
                    if found:
                        host.get_peerstore().add_addrs(peer_id, found, ADDR_TTL)
            finally:
                _looking_up.reset(token)
            addrs = known(peer_id)
        circuits = [circuit_target(a, peer_id) for a in addrs if is_circuit(a)]
        if not circuits:
            return await original(peer_id)
        direct = [a for a in addrs if not is_circuit(a)]
        result: list[INetConn] = []
        errors: list[str] = []

        async with trio.open_nursery() as nursery:

            async def by_direct() -> None:
                try:
                    conns = await original(peer_id)
                except Exception as exc:
                    errors.append(f"direct: {exc}")
                    return
                result.extend(conns)
                nursery.cancel_scope.cancel()

            async def by_relay() -> None:
                await trio.sleep(RELAY_DIAL_DELAY if direct else 0)
                for addr in dict.fromkeys(circuits):
                    try:
                        with trio.fail_after(RELAY_DIAL_TIMEOUT):
                            conn = await dial_circuit(host, transport, addr, peer_id)
                    except Exception as exc:
                        errors.append(f"{addr}: {exc}")
                        continue
                    result.append(conn)
                    nursery.cancel_scope.cancel()
                    return

            if direct:
                nursery.start_soon(by_direct)
            nursery.start_soon(by_relay)
        if result:
            return result
        raise SwarmException(f"unable to connect to {peer_id}: {'; '.join(errors)}")

    swarm.dial_peer = dial_peer


async def dial_circuit(
    host: IHost, transport: Any, addr: multiaddr.Multiaddr, peer_id: ID
) -> INetConn:
    """Dial ``peer_id`` through the relay named in ``addr``; the connection is marked relayed."""
    relay_addr, _ = transport.parse_circuit_ma(addr)
    relay_id = ID.from_base58(relay_addr.get_peer_id())
    transport_part = relay_addr.decapsulate_code(multiaddr.protocols.P_P2P)
    if str(transport_part):
        host.get_peerstore().add_addrs(relay_id, [transport_part], ADDR_TTL)
    conn: INetConn = await transport.dial(addr)
    for candidate in host.get_network().get_connections(peer_id):
        if candidate.muxed_conn is getattr(conn, "muxed_conn", conn):
            conn = candidate
            break
    setter = getattr(conn, "set_transport_info", None)
    if setter is not None and connection_kind(conn) != "relayed":
        setter([addr], ConnectionType.RELAYED)
    return conn
