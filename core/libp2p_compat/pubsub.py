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

And a flood of valid messages from one peer cost us without bound (issue 10, item 3):
``continuously_read_stream`` starts one task per message read and reads on, so a peer that
writes faster than we validate makes tasks pile up (RPCs of 1 000 signed messages brought a
victim down to ~30 messages a second, its pings timing out), and ``notify_subscriptions``
drops whatever does not fit our 32-slot subscription channel, whoever sent it. go bounds this
per peer: each peer's reader hands RPCs to a small queue and blocks when it is full, and its
validation queue drops the excess of whoever fills it. ``GuardedPubsub`` gives each sending
peer an in-flight budget (messages being validated or delivered): past it that peer's stream
is not read until its messages drain, so Yamux's window stalls the flooder and nobody else;
and a message that finds our subscription channel full waits for room (bounded) instead of
being dropped.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

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

    def _prune_pending_messages(self, peer_id: ID) -> None:
        """The library's pruning of the RPCs held for a peer whose subscriptions we have not
        heard yet, without copying the queue for every message forwarded: a connected peer
        that never joins the topic (a bootstrap peer, a DHT neighbour) holds up to 100, and
        the library rebuilt the list, and warned, on each message. Entries are appended in
        time order, so the expired ones are a prefix."""
        queue = self._pending_messages.get(peer_id)
        if queue is None:
            return
        cutoff = time.time() - self._pending_messages_ttl
        expired = 0
        while expired < len(queue) and queue[expired][0] < cutoff:
            expired += 1
        drop = expired + max(0, len(queue) - expired - self._max_pending_messages_per_peer)
        if drop:
            del queue[:drop]
        if not queue:
            self._pending_messages.pop(peer_id, None)

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


MiB = 1024 * 1024


@dataclass
class _Load:
    """One peer's messages in flight: read from its streams, not yet validated and delivered."""

    messages: int = 0
    size: int = 0
    room: trio.Event = field(default_factory=trio.Event)


@dataclass
class _Charge:
    """What one message cost its sender's budget, given back once when its task ends."""

    peer: ID
    size: int
    msg: rpc_pb2.Message
    settled: bool = False


class _BudgetedStream:
    """A pubsub stream as the library's read loop sees it. The loop hands each message it
    parsed to ``_is_subscribed_to_msg``, which keeps it here instead of letting the loop start
    its task; the loop's next read then starts them one by one, each when the sender is within
    its budget, and reads on only when it is. A peer over budget is simply not read."""

    def __init__(self, stream: INetStream, pubsub: GuardedPubsub) -> None:
        self._stream = stream
        self._pubsub = pubsub
        self.peer: ID = stream.muxed_conn.peer_id
        self.parsed: deque[rpc_pb2.Message] = deque()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        while self.parsed:
            await self._pubsub.wait_for_room(self.peer)
            if self._pubsub.start_push(self.peer, self.parsed.popleft()):
                # Each message's task reaches delivery in its first step; it gets that step
                # before the next message's task exists. Tasks started in one scheduler batch
                # run in either order (trio reverses batches at random), and one RPC can
                # carry many messages: without this, a sender's messages came out of order.
                await trio.lowlevel.checkpoint()
        await self._pubsub.wait_for_room(self.peer)
        return await self._stream.read(n)


_reader: contextvars.ContextVar[_BudgetedStream | None] = contextvars.ContextVar(
    "peerdesk_pubsub_reader", default=None
)
"""Set in a stream's read-loop task: which stream the messages being parsed came from."""
_charge: contextvars.ContextVar[_Charge | None] = contextvars.ContextVar(
    "peerdesk_pubsub_charge", default=None
)
"""Set around ``run_task(push_msg, ...)``: trio copies the spawner's context into the new
task, so each message's task knows what it was charged."""
_late: contextvars.ContextVar[list[trio.MemorySendChannel[rpc_pb2.Message]] | None] = (
    contextvars.ContextVar("peerdesk_pubsub_late", default=None)
)
"""Set in ``push_msg``: the subscription channels that were full when the message came."""


class GuardedPubsub(Pubsub):
    """Pubsub in which one peer's bad RPC costs that peer its stream, never the service, and
    one peer's flood costs that peer its speed, never our memory or other peers' messages."""

    peer_budget_messages = 64
    """Messages from one peer validated or delivered at once; past it we stop reading it."""
    peer_budget_bytes = 4 * MiB
    """The same budget in bytes (a message can be 1 MiB)."""
    delivery_wait = 10.0
    """Seconds a message waits for room in our own full subscription channel before it is
    dropped (the library drops it at once, whoever sent it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loads: dict[ID, _Load] = {}

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

    async def continuously_read_stream(self, stream: INetStream) -> None:
        budgeted = _BudgetedStream(stream, self)
        token = _reader.set(budgeted)
        try:
            await super().continuously_read_stream(cast(INetStream, budgeted))
        finally:
            _reader.reset(token)

    def _is_subscribed_to_msg(self, msg: rpc_pb2.Message) -> bool:
        if not super()._is_subscribed_to_msg(msg):
            return False
        reader = _reader.get()
        if reader is None:
            return True
        reader.parsed.append(msg)  # started by the reader's next read, within the budget
        return False

    def _over_budget(self, load: _Load) -> bool:
        return load.messages >= self.peer_budget_messages or load.size >= self.peer_budget_bytes

    async def wait_for_room(self, peer: ID) -> None:
        """Returns when ``peer`` has fewer messages (and bytes) in flight than its budget."""
        while True:
            load = self._loads.get(peer)
            if load is None or not self._over_budget(load):
                return
            if load.room.is_set():
                load.room = trio.Event()
            await load.room.wait()

    def start_push(self, peer: ID, msg: rpc_pb2.Message) -> bool:
        """Charges ``peer`` for ``msg`` and starts its validation and delivery task (returns
        whether it started one).

        A message already seen gets no task: the library's ``push_msg`` would only look it
        up in the seen cache and return. In a swarm most copies are such duplicates (each
        mesh peer forwards each message, and messages under 1 KiB get no IDONTWANT), and a
        manager task costs a walk over all of the service's tasks to find its parent."""
        if not self.manager.is_running or self._is_msg_seen(msg):
            return False
        load = self._loads.setdefault(peer, _Load())
        charge = _Charge(peer, msg.ByteSize(), msg)
        load.messages += 1
        load.size += charge.size
        token = _charge.set(charge)
        try:
            self.manager.run_task(self.push_msg, peer, msg)
        except BaseException:
            self._release(charge)
            raise
        finally:
            _charge.reset(token)
        return True

    def _release(self, charge: _Charge) -> None:
        load = self._loads.get(charge.peer)
        if load is None or charge.settled:
            return
        charge.settled = True
        load.messages -= 1
        load.size -= charge.size
        if load.messages <= 0:
            del self._loads[charge.peer]
        if not self._over_budget(load):
            load.room.set()

    def in_flight(self, peer: ID) -> tuple[int, int]:
        """(messages, bytes) from ``peer`` being validated or delivered now."""
        load = self._loads.get(peer)
        return (load.messages, load.size) if load else (0, 0)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        charge = _charge.get()
        late: list[trio.MemorySendChannel[rpc_pb2.Message]] = []
        token = _late.set(late)
        try:
            await super().push_msg(msg_forwarder, msg)
            await self._deliver_late(msg, late)
        except Exception as exc:
            log.info("pubsub: dropped a bad message forwarded by %s: %r", msg_forwarder, exc)
        finally:
            _late.reset(token)
            if charge is not None and charge.msg is msg:
                self._release(charge)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        late = _late.get()
        for topic in publish_message.topicIDs:
            channel = self.subscribed_topics_send.get(topic)
            if channel is None:
                continue
            try:
                channel.send_nowait(publish_message)
            except trio.WouldBlock:
                if late is None:
                    log.warning("pubsub: subscription to %s full, message dropped", topic)
                else:
                    late.append(channel)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # unsubscribed meanwhile

    async def _deliver_late(
        self, msg: rpc_pb2.Message, channels: list[trio.MemorySendChannel[rpc_pb2.Message]]
    ) -> None:
        """Waits (bounded) for room in the subscriptions that were full. The wait holds the
        sender's budget, so a flood that outruns our reader slows its sender down; trio
        serves waiting senders in order, so an honest message waits behind at most the
        budgets of the peers ahead of it."""
        for channel in channels:
            with trio.move_on_after(self.delivery_wait) as waited:
                try:
                    await channel.send(msg)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    continue
            if waited.cancelled_caught:
                log.warning("pubsub: subscription full for %.0f s, dropped", self.delivery_wait)


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
