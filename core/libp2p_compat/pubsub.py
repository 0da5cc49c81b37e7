"""GossipSub / pubsub internals: topic peers, the mesh, outbound queues, direct peers, and
the router and pubsub subclasses that make py-libp2p 0.8.1 behave like go-libp2p-pubsub.

Why subclasses: after a peer leaves and rejoins a topic, py-libp2p cuts it off for a minute
or more, where go loses nothing (docs/spec/py-libp2p-notes.md, "GossipSub"). Three library
behaviours add up to that:

1. No flood publishing. A rejoining peer's mesh is empty while the PRUNE backoff lasts, and
   ``GossipSub._get_peers_to_send`` sends our own messages to mesh peers only, so they go
   nowhere. go publishes a peer's own messages to every peer in the topic (``floodPublish``,
   on by default).
2. No gossip to peers in backoff. ``_handle_topic_heartbeat`` picks IHAVE targets with
   ``backoff_check=True``, so a peer we (or who) pruned gets neither mesh traffic nor IHAVEs.
   In go, backoff only stops GRAFTs; gossip goes to every non-mesh peer in the topic.
3. Grafting on the second the backoff ends. Backoffs are whole seconds
   (``int(time.time()) + 10``) while the other side's GRAFT-flood check measures 10.0 s from
   the PRUNE it received: our GRAFT lands up to a second early, is refused with a *60 s*
   PRUNE backoff, and the mesh stays broken for a minute. go leaves slack after a backoff
   (cleared late, ``2 * heartbeat``); so do we, on the grafting side only.
4. A GRAFT for a topic we are not in is answered with a PRUNE carrying the 60 s backoff, so a
   GRAFT that crosses our leave on the wire locks the grafting peer out of our mesh for a
   minute after we rejoin. go ignores such GRAFTs (no PRUNE, no PX); so do we.

And one remote message could kill a peer's whole pubsub service (issue 10): a publish whose
key does not decode (``validators.py`` re-raises), a GRAFT for a topic we do not know
(``peer_topics[topic]`` KeyError when answering with PX), or bytes that are not protobuf
(``DecodeError`` is not in ``stream_handler``'s except list). ``GuardedPubsub`` isolates each
RPC: a bad one costs its sender the stream, nothing more.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub import floodsub
from libp2p.pubsub.gossipsub import (
    PROTOCOL_ID,
    PROTOCOL_ID_V11,
    PROTOCOL_ID_V12,
    PROTOCOL_ID_V13,
    PROTOCOL_ID_V14,
    PROTOCOL_ID_V20,
    GossipSub,
)
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

log = logging.getLogger(__name__)

GOSSIP_PROTOCOLS = frozenset(
    {
        PROTOCOL_ID,
        PROTOCOL_ID_V11,
        PROTOCOL_ID_V12,
        PROTOCOL_ID_V13,
        PROTOCOL_ID_V14,
        PROTOCOL_ID_V20,
    }
)
D_LAZY = 6
"""go's GossipSubDlazy: at least this many non-mesh peers get each heartbeat's IHAVE."""
GOSSIP_FACTOR = 0.25
"""go's GossipSubGossipFactor: or this share of them, if more."""

_recipients: contextvars.ContextVar[list[ID] | None] = contextvars.ContextVar(
    "peerdesk_publish_recipients", default=None
)


@contextmanager
def recording_recipients() -> Iterator[list[ID]]:
    """Collects the peers that our own publishes inside the block were handed to.

    ``Pubsub.publish`` runs validation and the router's ``publish`` in the caller's task, so a
    context variable reaches from our publish call down to the router without shared state.
    """
    sink: list[ID] = []
    token = _recipients.set(sink)
    try:
        yield sink
    finally:
        _recipients.reset(token)


class GoLikeGossipSub(GossipSub):
    """GossipSub with go's flood publishing, gossip regardless of backoff, and backoff slack."""

    backoff_slack = 2.0
    """Seconds we wait past a backoff before grafting (covers the whole-second rounding and
    the other side's GRAFT-flood window)."""

    def _get_peers_to_send(
        self,
        topic_ids: Iterable[str],
        msg_forwarder: ID,
        origin: ID,
        msg_id: bytes | None = None,
    ) -> Iterable[ID]:
        topic_ids = list(topic_ids)
        peers = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
        pubsub = self.pubsub
        if pubsub is None or origin != pubsub.my_id:
            return peers
        for topic in topic_ids:
            for peer in pubsub.peer_topics.get(topic, ()):
                if peer in self.peer_protocol:  # gossipsub or floodsub, stream registered
                    peers.add(peer)
        peers.discard(origin)
        sink = _recipients.get()
        if sink is not None:
            sink.extend(p for p in peers if p in pubsub.peers)
        return peers

    def gossip_heartbeat(self) -> defaultdict[ID, dict[str, list[bytes]]]:
        out: defaultdict[ID, dict[str, list[bytes]]] = defaultdict(dict)
        pubsub = self.pubsub
        if pubsub is None:
            return out
        topics = [(t, self.mesh[t]) for t in self.mesh]
        topics += [(t, self.fanout[t]) for t in self.fanout if t not in self.mesh]
        for topic, exclude in topics:
            msg_ids = self.mcache.window(topic)
            if not msg_ids:
                continue
            candidates = [
                p
                for p in pubsub.peer_topics.get(topic, ())
                if p not in exclude
                and p not in self.direct_peers
                and self.peer_protocol.get(p) in GOSSIP_PROTOCOLS
            ]
            count = max(D_LAZY, int(len(candidates) * GOSSIP_FACTOR))
            for peer in self.select_from_minus(count, candidates, ()):
                out[peer][topic] = list(msg_ids)
        return out

    def _get_in_topic_gossipsub_peers_from_minus(
        self,
        topic: str,
        num_to_select: int,
        minus: Iterable[ID],
        backoff_check: bool = False,
    ) -> list[ID]:
        pubsub = self.pubsub
        if pubsub is None or topic not in pubsub.peer_topics:
            return []  # the library indexes peer_topics[topic] and raises KeyError
        if not backoff_check:
            return super()._get_in_topic_gossipsub_peers_from_minus(topic, num_to_select, minus)
        pool = super()._get_in_topic_gossipsub_peers_from_minus(
            topic, len(pubsub.peer_topics[topic]), minus
        )
        ready = [p for p in pool if not self._backing_off(p, topic)]
        return self.select_from_minus(num_to_select, ready, ())

    async def handle_graft(self, graft_msg: rpc_pb2.ControlGraft, sender_peer_id: ID) -> None:
        if graft_msg.topicID not in self.mesh:
            return  # as go: ignored, neither PRUNE (with its 60 s backoff) nor PX
        await super().handle_graft(graft_msg, sender_peer_id)

    def _backing_off(self, peer: ID, topic: str) -> bool:
        """Backoff as seen by the grafting side: over only ``backoff_slack`` after its end."""
        backoffs = self.back_off.get(topic)
        if not backoffs or peer not in backoffs:
            return False
        if backoffs[peer] + self.backoff_slack > time.time():
            return True
        del backoffs[peer]
        return False


class GuardedPubsub(Pubsub):
    """Pubsub in which one peer's bad RPC costs that peer its stream, never the service."""

    async def stream_handler(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            await super().stream_handler(stream)
        except Exception as exc:  # trio.Cancelled is a BaseException and passes through
            log.info("pubsub: closing %s's stream after a bad RPC: %r", peer, exc)
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                try:
                    await stream.reset()
                except Exception:
                    log.debug("pubsub: stream reset failed", exc_info=True)
            self._handle_dead_peer(peer)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:
            log.info("pubsub: dropped a bad message forwarded by %s: %r", msg_forwarder, exc)


def is_gossip_peer(router: GossipSub, peer: ID) -> bool:
    """Whether ``peer`` has a registered pubsub stream (gossipsub or floodsub)."""
    protocol: Any = router.peer_protocol.get(peer)
    return protocol in GOSSIP_PROTOCOLS or protocol == floodsub.PROTOCOL_ID


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
