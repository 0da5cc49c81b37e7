"""Keeping pubsub subscriptions known between connected peers.

py-libp2p 0.8.1 can leave a connected peer's subscriptions unknown to us (or ours to it): the
hello packet races the stream registration. Everything that repairs that lives here.
"""

from __future__ import annotations

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub


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
