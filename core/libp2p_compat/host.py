"""The host itself: transports, security, muxers, logging, dialing, the peerstore."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.protocol_muxer.exceptions import MultiselectError
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.tcp.tcp import TCP

from core.libp2p_compat.nat import keep_one_per_kind
from core.libp2p_compat.quic import quic_transport

LIBP2P_VERSION = "0.8.1"

QUIET_LOGGERS = {
    # A warning per normal DHT stream close, per closed pubsub stream, per failed identify.
    "libp2p": logging.ERROR,
    "libp2p.kad_dht": logging.CRITICAL,
    "libp2p.pubsub": logging.CRITICAL,
    "libp2p.host": logging.CRITICAL,
    "libp2p.network": logging.CRITICAL,
    "libp2p.identity": logging.CRITICAL,
    "libp2p.discovery": logging.ERROR,
    "libp2p.stream_muxer": logging.CRITICAL,
    "libp2p.transport": logging.CRITICAL,
    # The relay logs an error for every reservation stream its client closes after the answer.
    "libp2p.relay": logging.CRITICAL,
    "libp2p.security": logging.CRITICAL,
    "zeroconf": logging.WARNING,
    "async_service": logging.CRITICAL,
}


def quiet_library_logging(level: int | None = None) -> None:
    """py-libp2p logs normal events as warnings; keep them out of the user's log unless -vv."""
    for name, default in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level if level is not None else default)


def build_host(
    key_pair: KeyPair,
    *,
    low_water: int = 100,
    high_water: int = 400,
    grace_period: float = 20.0,
    addrs_factory: Callable[[list[multiaddr.Multiaddr]], list[multiaddr.Multiaddr]] | None = None,
) -> IHost:
    """A host that speaks exactly what go-libp2p/p2p-webapp offers: TCP + Noise + Yamux.

    - ``new_host()`` defaults also accept plaintext and secio peers: we pass Noise only.
    - Without ``max_connections_per_peer=1`` every dial waits 250 ms of "happy eyeballs".
      That limit would also trim the direct connection hole punching makes beside a relayed
      one: ``nat.keep_one_per_kind`` lets one of each kind live.
    - TCP and QUIC (``/udp/P/quic-v1``, ``libp2p_compat/quic.py``) are both registered, so
      QUIC addresses can be dialled; we listen on QUIC only where ``listen_addrs`` say so.
    - ``addrs_factory`` decides what we advertise (``core/network/nat/addrs.py``: never 0.0.0.0).
    - The auto-connector dials peerstore entries until the connection count reaches the middle
      of the watermarks (200 peers by default). go-libp2p's connection manager never dials; a
      desktop peer should not spray dials at every address it has ever heard of: it is switched
      off, and connections come from the DHT, topics, mDNS, contacts and the user.
    """
    config = ConnectionConfig(
        max_connections_per_peer=1,
        min_connections=0,
        low_watermark=low_water,
        high_watermark=high_water,
        max_connections=max(high_water, low_water) + 100,
        grace_period=grace_period,
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=new_x25519_key_pair().private_key
            )
        },
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=config,
        addrs_factory=addrs_factory,
        transports=[TCP(), quic_transport(key_pair)],
    )
    keep_one_per_kind(host)
    guard_vanishing_handlers(host)

    async def _no_auto_connect() -> None:
        return None

    host.get_network().auto_connector.maybe_connect = _no_auto_connect  # type: ignore[attr-defined]
    return host


class _Handlers(dict[Any, Any]):
    """Multistream's protocol handlers, where a protocol removed mid-negotiation is a failed
    negotiation instead of a ``KeyError``."""

    def __missing__(self, protocol: Any) -> Any:
        raise MultiselectError(f"protocol {protocol} was removed while being negotiated")


def guard_vanishing_handlers(host: IHost) -> None:
    """py-libp2p 0.8.1's ``Multiselect.negotiate`` checks that a protocol has a handler,
    answers the peer (a checkpoint) and only then looks the handler up: a handler removed in
    between (the DHT's, when AutoNAT turns it into a client) raises ``KeyError`` through the
    connection's nursery and stops the whole peer. Seen in the swarm lab: a NATed member
    switching to DHT client mode while a walk asked it. Now that stream is reset, as any
    failed negotiation is."""
    selector = host.get_mux()
    selector.handlers = _Handlers(selector.handlers)


def forget_dial_failure(host: IHost, peer: ID) -> None:
    """The swarm refuses to dial a peer whose addresses all failed recently (a negative cache
    with its own timing). Our redial and retry loops pace themselves, so a deliberate dial
    clears that memory first — otherwise a restarted peer stays unreachable for a while."""
    network = host.get_network()
    unblock = getattr(network, "unblock_peer", None)
    if unblock is not None:
        unblock(peer)


def known_addrs(host: IHost, peer: ID) -> list[multiaddr.Multiaddr]:
    """The peerstore raises for a peer it has never heard of, instead of answering []."""
    try:
        return list(host.get_peerstore().addrs(peer))
    except Exception:
        return []


class ConnectionNotifee(INotifee):
    """The swarm's notifee interface wants six hooks; we only ever want the two about
    connections. Callbacks get the network and the connection."""

    def __init__(
        self,
        connected: Callable[[INetwork, INetConn], None] | None = None,
        disconnected: Callable[[INetwork, INetConn], None] | None = None,
    ) -> None:
        self._connected = connected
        self._disconnected = disconnected

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        if self._connected is not None:
            self._connected(network, conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        if self._disconnected is not None:
            self._disconnected(network, conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass
