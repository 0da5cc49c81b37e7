"""GossipSub / pubsub internals: topic peers, the mesh, outbound queues, direct peers."""

from __future__ import annotations

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub


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
