"""Every place we lean on py-libp2p 0.8.1 internals or work round its traps, in one module.

Each function names the trap (see ../shared/spec/py-libp2p-notes.md). tests/test_libp2p_compat.py
fails if the library changes under these assumptions, so an upgrade is a deliberate act.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.kad_dht.kad_dht import KadDHT, _encode_key
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

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
) -> IHost:
    """A host that speaks exactly what go-libp2p/p2p-webapp offers: TCP + Noise + Yamux.

    - ``new_host()`` defaults also accept plaintext and secio peers: we pass Noise only.
    - Without ``max_connections_per_peer=1`` every dial waits 250 ms of "happy eyeballs".
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
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair,
                                                   noise_privkey=new_x25519_key_pair().private_key)},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        connection_config=config,
    )

    async def _no_auto_connect() -> None:
        return None

    host.get_network().auto_connector.maybe_connect = _no_auto_connect  # type: ignore[attr-defined]
    return host


def topic_peers(pubsub: Pubsub, topic: str) -> set[ID]:
    """There is no ListPeers(topic) API: peers announce subscriptions into ``peer_topics``."""
    return set(pubsub.peer_topics.get(topic, ()))


def mesh_peers(router: GossipSub, topic: str) -> set[ID]:
    return set(router.mesh.get(topic, ()))


def max_outbound_queue(pubsub: Pubsub) -> tuple[int, int]:
    """(longest per-peer outbound RPC queue, its capacity). The queue drops on overflow, so
    publishers pace themselves on this instead of losing messages."""
    longest, capacity = 0, 32
    for queue in list(pubsub.peer_queues.values()):
        longest = max(longest, len(queue))
        capacity = queue._queue.max_size
    return longest, capacity


def add_direct_peer(router: GossipSub, info: PeerInfo) -> None:
    """GossipSub reads direct peers only at construction; the dict is consulted live."""
    router.direct_peers[info.peer_id] = info


def remove_direct_peer(router: GossipSub, peer: ID) -> None:
    router.direct_peers.pop(peer, None)


async def find_providers_network(dht: KadDHT, key: str, count: int = 20) -> list[PeerInfo]:
    """``find_providers`` answers from the local store alone whenever it holds any record (our
    own advertisement included), so a peer that advertised first never finds anyone. Ask the
    network too, and merge with what the local store knows of other peers."""
    store = dht.provider_store
    encoded = _encode_key(key)
    local = list(store.get_providers(encoded))

    def _skip_local_once(_key: bytes) -> list[PeerInfo]:
        del store.get_providers  # back to the class method for everybody else
        return []

    # find_providers() consults get_providers() synchronously before its first await.
    store.get_providers = _skip_local_once  # type: ignore[method-assign]
    try:
        remote = await store.find_providers(encoded, count)
    finally:
        store.__dict__.pop("get_providers", None)
    seen: dict[ID, PeerInfo] = {}
    for info in [*remote, *local]:
        if info.peer_id not in seen:
            seen[info.peer_id] = info
        else:
            seen[info.peer_id].addrs.extend(a for a in info.addrs
                                            if a not in seen[info.peer_id].addrs)
    return list(seen.values())


def strip_p2p(addrs: Sequence[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    """Provider records carry ``/p2p/<id>`` appended; dialing wants the transport part."""
    out = []
    for addr in addrs:
        text = str(addr)
        if "/p2p/" in text:
            text = text.split("/p2p/")[0]
        if text:
            out.append(multiaddr.Multiaddr(text))
    return out


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


async def resync_subscriptions(pubsub: Pubsub, peer: ID, timeout: float = 10.0) -> None:
    """Pubsub builds a new peer's hello packet *before* registering the peer's stream; a topic
    joined between the two is announced to everyone but that peer, which then never learns
    of it (seen with peers that connect and subscribe at once). Once the stream is registered,
    announce every current subscription to that peer again; receivers treat repeats as no-ops.
    """
    try:
        await pubsub.wait_for_peer(peer, timeout=timeout)
    except trio.TooSlowError:
        return
    topics = list(pubsub.topic_ids)
    queue = pubsub.peer_queues.get(peer)
    if not topics or queue is None:
        return
    packet = rpc_pb2.RPC()
    packet.subscriptions.extend(rpc_pb2.RPC.SubOpts(subscribe=True, topicid=t) for t in topics)
    queue.push(packet, priority=True)
