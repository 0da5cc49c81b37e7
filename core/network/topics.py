"""GossipSub topics: subscribe, publish, membership and live monitoring.

Settings follow p2p-webapp (D=6, Dlo=5, Dhi=12, heartbeat 500 ms) and fix py-libp2p's traps:
its 120 s default heartbeat, its adaptive heartbeat (stretched to 30-60 s when the mesh looks
unhealthy), its spam limit that silently drops a user's 11th message in a second, and per-peer
outbound queues of 32 RPCs that drop on overflow — publishing waits for room in those queues
instead of losing messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub

from core import libp2p_compat as compat
from core.events import EventSink, PeerChange, TopicData
from core.network.framing import dumps, loads

log = logging.getLogger(__name__)

MESHSUB_PROTOCOLS = [TProtocol(p) for p in ("/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0")]
HEARTBEAT = 0.5
MAX_MESSAGE = 1024 * 1024
SENDER_NAMES_KEPT = 4096
"""Senders whose peer id text is remembered (forgotten all at once past it)."""


def make_router(router_cls: type[GossipSub] = compat.GoIDontWantGossipSub) -> GossipSub:
    """go-like GossipSub (flood publish, gossip during backoff: libp2p_compat.pubsub; IDONTWANT
    as go sends it: libp2p_compat.pubsub_speed). Benchmarks and compat tests pass the library's
    own class to compare."""
    return router_cls(
        protocols=MESHSUB_PROTOCOLS,
        degree=6,
        degree_low=5,
        degree_high=12,
        # Typed int in the library, used as seconds: a float works and is what we need.
        heartbeat_interval=HEARTBEAT,  # type: ignore[arg-type]
        heartbeat_initial_delay=0.05,
        do_px=True,
        spam_protection_enabled=False,
        # py-libp2p's "adaptive gossip" stretches the heartbeat to 30-60 s and lifts D_hi to
        # 16 once its health score drops (a small or churning mesh), so meshes stop repairing
        # for a minute; its eclipse protection grafts past D_hi. go has neither.
        adaptive_gossip_enabled=False,
        eclipse_protection_enabled=False,
    )


def make_pubsub(
    host: IHost, router: GossipSub, pubsub_cls: type[Pubsub] = compat.OwnSignedPubsub
) -> Pubsub:
    """Guarded pubsub (libp2p_compat.pubsub) that does not re-verify its own fresh signatures
    (libp2p_compat.pubsub_speed)."""
    return pubsub_cls(
        host, router, strict_signing=True, max_inbound_rpc_size=MAX_MESSAGE + 64 * 1024
    )


@dataclass
class TopicStats:
    """What the topic monitor shows: who is there since when, and how busy the topic is."""

    members: dict[str, float] = field(default_factory=dict)
    messages: int = 0


class Topics:
    """Owns the node's subscriptions; one task per subscription drains it promptly."""

    def __init__(
        self,
        host: IHost,
        pubsub: Pubsub,
        router: GossipSub,
        emit: EventSink,
        on_subscribed: Callable[[str], None] | None = None,
        on_unsubscribed: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.pubsub = pubsub
        self.router = router
        self.emit = emit
        self.on_subscribed = on_subscribed
        self.on_unsubscribed = on_unsubscribed
        self._subs: dict[str, trio.CancelScope] = {}
        self._monitored: set[str] = set()
        self._stats: dict[str, TopicStats] = {}
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._sender_names: dict[bytes, str] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._membership_loop)
            task_status.started()
            await trio.sleep_forever()

    @property
    def subscribed(self) -> list[str]:
        return sorted(self._subs)

    @property
    def monitored(self) -> list[str]:
        return sorted(self._monitored)

    async def subscribe(self, topic: str, mesh_wait: float = 5.0) -> None:
        """Idempotent. Returns once a peer in the topic can be reached (plus one heartbeat, so
        they have our subscription too) or after ``mesh_wait`` seconds, as p2p-webapp does, so
        a publish right after reaches someone. Peers already there are reported as joins at
        once, as p2p-webapp's monitor does on its first tick."""
        _check_topic(topic)
        assert self._nursery is not None
        async with self._lock:
            if topic in self._subs:
                return
            sub = await self.pubsub.subscribe(topic)
            scope = trio.CancelScope()
            self._subs[topic] = scope
            self._nursery.start_soon(self._drain, topic, sub, scope)
        self._diff(topic)
        if self.on_subscribed:
            self.on_subscribed(topic)
        with trio.move_on_after(mesh_wait):
            while not self._has_route(topic):
                await trio.sleep(0.05)
            await trio.sleep(HEARTBEAT)
        self._diff(topic)

    def _has_route(self, topic: str) -> bool:
        """Any peer in the topic with a pubsub stream: our own messages are flood-published to
        all of them (go's default), mesh or not, backoff or not."""
        return any(
            compat.is_gossip_peer(self.router, p) for p in compat.topic_peers(self.pubsub, topic)
        )

    async def unsubscribe(self, topic: str) -> None:
        async with self._lock:
            scope = self._subs.pop(topic, None)
            if scope is None:
                return
            scope.cancel()
            await self.pubsub.unsubscribe(topic)
        self._forget_unwatched(topic)
        if self.on_unsubscribed:
            self.on_unsubscribed(topic)

    async def publish(self, topic: str, value: Any) -> int:
        """Returns how many peers the message was handed to; 0 means nobody will get it (no
        peer in the topic is connected), which callers must show rather than swallow."""
        _check_topic(topic)
        data = dumps(value)
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"message of {len(data)} bytes exceeds the 1 MiB topic limit")
        # Pace on the fullest outbound queue: py-libp2p drops RPCs pushed onto a full one.
        for _ in range(2000):
            longest, capacity = compat.max_outbound_queue(self.pubsub)
            if longest < capacity // 2:
                break
            await trio.sleep(0.002)
        with compat.recording_recipients() as recipients:
            await self.pubsub.publish(topic, data)
        if not recipients:
            log.warning("topic %s: a message was published but no peer received it", topic)
        return len(set(recipients))

    def peers(self, topic: str) -> list[str]:
        """The topic's members as reported in join/leave events: a change not yet reported is
        reported first, so a listing never contradicts the events."""
        if topic in self._subs or topic in self._monitored:
            self._diff(topic)
            return sorted(self._stats_for(topic).members)
        return self._live_peers(topic)

    def _live_peers(self, topic: str) -> list[str]:
        me = self.host.get_id()
        return sorted(str(p) for p in compat.topic_peers(self.pubsub, topic) if p != me)

    def monitor(self, topic: str) -> None:
        _check_topic(topic)
        self._monitored.add(topic)
        self._diff(topic)

    def stop_monitor(self, topic: str) -> None:
        self._monitored.discard(topic)
        self._forget_unwatched(topic)

    def stats(self, topic: str) -> TopicStats | None:
        return self._stats.get(topic)

    def _stats_for(self, topic: str) -> TopicStats:
        """Membership starts empty, as p2p-webapp's monitor does: everyone already in the
        topic arrives as a join on the first comparison."""
        stats = self._stats.get(topic)
        if stats is None:
            stats = self._stats[topic] = TopicStats()
        return stats

    def _forget_unwatched(self, topic: str) -> None:
        """A topic neither joined nor monitored is no longer watched: on the next join or
        monitor its members are reported afresh, as after p2p-webapp's monitor restarts."""
        if topic not in self._subs and topic not in self._monitored:
            self._stats.pop(topic, None)

    async def _drain(self, topic: str, sub: ISubscriptionAPI, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                msg = await sub.get()
                try:
                    value = loads(msg.data)
                except (ValueError, UnicodeDecodeError):
                    log.warning("topic %s: dropped a non-JSON message", topic)
                    continue
                sender = self._sender_name(msg.from_id)
                if sender is None:
                    continue
                stats = self._stats_for(topic)
                stats.messages += 1
                self.emit(TopicData(topic, sender, value))

    def _sender_name(self, from_id: bytes) -> str | None:
        """The sender's peer id as text, remembered: base58 costs about 0.1 ms per message,
        and a topic's messages come from few senders."""
        name = self._sender_names.get(from_id)
        if name is None:
            try:
                name = str(ID(from_id))
            except Exception:
                return None
            if len(self._sender_names) >= SENDER_NAMES_KEPT:
                self._sender_names.clear()
            self._sender_names[from_id] = name
        return name

    def _diff(self, topic: str) -> None:
        """Report who came and went since the last comparison."""
        stats = self._stats_for(topic)
        now_peers = set(self._live_peers(topic))
        before = set(stats.members)
        for peer in sorted(now_peers - before):
            stats.members[peer] = time.time()
            self.emit(PeerChange(topic, peer, True))
        for peer in sorted(before - now_peers):
            del stats.members[peer]
            self.emit(PeerChange(topic, peer, False))

    async def _membership_loop(self) -> None:
        """No join/leave events exist in py-libp2p: compare each watched topic's peers every
        second, as p2p-webapp does."""
        while True:
            await trio.sleep(1.0)
            for topic in set(self._subs) | self._monitored:
                self._diff(topic)


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not topic or len(topic) > 1024:
        raise ValueError("a topic is a non-empty string of at most 1024 characters")
