"""Keeping pubsub subscriptions known between connected peers.

py-libp2p 0.8.1 can leave a connected peer's subscriptions unknown to us, or ours to it, for
as long as the connection lasts. Three ways, each reproduced with two real hosts in
tests/core/libp2p_compat/test_compat_pubsub_sync.py:

1. **The hello race.** ``Pubsub._handle_new_peer`` builds the hello packet (our topics)
   *before* it registers the peer's outbound queue; a topic joined in between is announced to
   everyone but that peer.
2. **Giving up on a failed stream.** ``_handle_new_peer_with_retry`` retries only
   ``SwarmException`` and ``StreamClosed``. A failed protocol negotiation (``StreamFailure``,
   a ``HostException``) or a reset while the hello is written ends the attempts for good: we
   have no outbound stream, so the peer never learns our topics. If both sides fail (as when
   both open their streams while a duplicate connection is being closed under them), neither
   knows the other.
3. **Forgetting on a restarted writer.** When our outbound stream dies while the peer stays
   connected (the connection it was on closed, another remains), ``_handle_dead_peer``
   forgets every topic the peer announced on *its* stream, then opens a new outbound stream.
   The peer never announces again: its reader ends quietly on the old stream's EOF (go's
   reader declares the peer dead and respawns its writer with a hello). We have the stream
   and never the peer's topics.

The repair, ``resync_subscriptions``: make sure we have an outbound stream to the peer (once
the library's own attempt has ended without one, or ``FIRST_WAIT`` has passed, reopen it with
backoff for as long as the peer stays connected and may speak pubsub, up to ``PATIENCE``),
then announce our topics on it (receivers treat repeats as no-ops). "May speak pubsub" counts
a peer we know nothing of: under load the identify exchange fails as case 2's negotiations do
(multistream handshakes cut), and the library never runs it again. In a 50-member swarm 219
repairs gave up "after 0 attempts" for that, and 172 member-list entries were still missing
186 s in (one run); only a peer whose identify answer lists no pubsub protocol is left
alone. It runs
- on each first connection to a peer (core/peer.py);
- whenever the peer opens a new pubsub stream to us: a new writer on its side is either a
  first one (case 1) or a restarted one that just forgot our topics (case 3 seen from the
  other side) — the pubsub stream handlers are wrapped (``_AnnouncingHandler``);
- whenever our own writer to a still connected peer is declared dead: the library's retry
  of it gives up as in case 2 — ``_handle_dead_peer`` is wrapped on the instance
  (``_RepairingDeadPeer``).
- and every ``REFRESH`` seconds for every peer: our topics are announced again to each peer
  we have a stream to (one small RPC each; whatever lost an announcement, it heals within a
  round), and a connected peer that may speak pubsub and has no stream of ours gets a repair.
The library's attempt is wrapped on the instance (``_NoticingEnd``) so the repair knows when
it ended: a failed negotiation ends it at once, and in a 50-member swarm ~60 % of a
newcomer's connections had no stream from the library, each then waiting the whole
``FIRST_WAIT`` for its repair. The wrappers and the refresh task are installed by
``install_subscription_repair`` when the pubsub service runs, or on the first repair
(idempotent). Every repair is logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from weakref import WeakKeyDictionary

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import StreamHandlerFn
from libp2p.identity.identify.identify import ID as IDENTIFY
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

log = logging.getLogger(__name__)

FIRST_WAIT = 10.0
"""Seconds we leave the library's own stream registration before we step in, unless it ends
sooner without a stream."""
PATIENCE = 120.0
"""Seconds after ``FIRST_WAIT`` we keep reopening a missing stream to a connected peer."""
BACKOFF = (1.0, 16.0)
"""First and longest pause between our own attempts."""
ATTEMPT_BOUND = 60.0
"""One attempt's bound (the library's negotiation alone may take 30 s under load)."""
ANNOUNCE_TRIES = 5
"""A full outbound queue refuses the announcement; tried again a second later, this often."""

REFRESH = 20.0
"""Seconds between two rounds of re-announcing our topics to every peer."""

_locks: WeakKeyDictionary[Pubsub, dict[ID, trio.Lock]] = WeakKeyDictionary()
_ended: WeakKeyDictionary[Pubsub, dict[ID, trio.Event]] = WeakKeyDictionary()
"""Set when one of the library's registration attempts for the peer ends (a new one each)."""
_gave_up: WeakKeyDictionary[Pubsub, dict[ID, tuple[object, ...]]] = WeakKeyDictionary()
"""The peer's connections when the library's last attempt ended without a stream."""


def install_subscription_repair(pubsub: Pubsub) -> None:
    """Watch this running pubsub service from now on (module doc); before its first connection,
    so the library's first attempt is watched too."""
    _install_hooks(pubsub)


async def resync_subscriptions(pubsub: Pubsub, peer: ID) -> None:
    """Make sure ``peer`` has our outbound stream and knows our topics (module doc). Called
    for each new connection; also watches, from now on, for new pubsub streams from peers."""
    _install_hooks(pubsub)
    await _sync(pubsub, peer, speaks_pubsub=False)


async def _sync(pubsub: Pubsub, peer: ID, *, speaks_pubsub: bool) -> None:
    """One repair at a time per peer: a second trigger waits and then announces again (the
    peer may have forgotten our topics in between); more triggers meanwhile add nothing (a
    peer opening stream after stream costs one waiting task). Never raises: it runs in the
    peer's and the pubsub service's nurseries, where an error would stop everything."""
    locks = _locks.setdefault(pubsub, {})
    lock = locks.setdefault(peer, trio.Lock())
    if lock.statistics().tasks_waiting:
        return
    try:
        async with lock:
            if await _ensure_stream(pubsub, peer, speaks_pubsub):
                await _announce(pubsub, peer)
    except Exception:
        log.warning("pubsub: subscription repair with %s failed", peer, exc_info=True)
    finally:
        if locks.get(peer) is lock and not lock.locked() and not lock.statistics().tasks_waiting:
            del locks[peer]


async def _ensure_stream(pubsub: Pubsub, peer: ID, speaks_pubsub: bool) -> bool:
    """Whether we have an outbound pubsub stream to ``peer`` (opened here if the library
    gave up on it). The module's timings are read at each call (tests shorten them)."""
    wait, patience = FIRST_WAIT, PATIENCE
    started = trio.current_time()
    await _library_attempt(pubsub, peer, wait)
    if peer in pubsub.peers:
        return True
    wait = _since(started)
    started = trio.current_time()
    deadline = started + patience
    delay, attempts = BACKOFF[0], 0
    while True:
        if peer in pubsub.peers:
            log.info("pubsub: stream to %s registered %.0f s late", peer, wait + _since(started))
            return True
        if not pubsub.host.get_network().get_connections(peer):
            log.debug("pubsub: %s left before it had our stream", peer)
            return False
        if pubsub.is_peer_blacklisted(peer):
            return False
        if speaks_pubsub or _speaks_pubsub(pubsub, peer) is not False:
            attempts += 1
            log.info(
                "pubsub: %s is connected and may speak pubsub but has no stream from us "
                "%.0f s after connecting; opening one (attempt %d)",
                peer,
                wait + _since(started),
                attempts,
            )
            with trio.move_on_after(ATTEMPT_BOUND):
                if await pubsub.ensure_peer_stream(peer, timeout=ATTEMPT_BOUND / 2):
                    log.info("pubsub: stream to %s opened on attempt %d", peer, attempts)
                    return True
        if trio.current_time() + delay > deadline:
            log.warning(
                "pubsub: no stream to %s after %.0f s and %d attempts of ours; its "
                "subscriptions and ours stay unknown to each other",
                peer,
                wait + _since(started),
                attempts,
            )
            return False
        await trio.sleep(delay)
        delay = min(2 * delay, BACKOFF[1])


async def _library_attempt(pubsub: Pubsub, peer: ID, wait: float) -> None:
    """Until the library has registered our stream to ``peer``, or its attempt ended without
    one while a connection it had is still open, or the peer has no connection, at most
    ``wait`` seconds."""
    network = pubsub.host.get_network()
    events = _ended.setdefault(pubsub, {})
    try:
        with trio.move_on_after(wait):
            while peer not in pubsub.peers and (current := network.get_connections(peer)):
                if any(c in current for c in _gave_up.get(pubsub, {}).pop(peer, ())):
                    return
                await events.setdefault(peer, trio.Event()).wait()
    finally:
        events.pop(peer, None)  # one waiter per peer (``_sync``'s lock); none left behind


class _NoticingEnd:
    """``Pubsub._handle_new_peer_with_retry``, noting when it ends and, if without a stream
    to a still connected peer, the connections it gave up on."""

    def __init__(self, pubsub: Pubsub, inner: Callable[..., Awaitable[None]]) -> None:
        self.pubsub = pubsub
        self.inner = inner

    async def __call__(self, peer_id: ID, timeout: float | None = None) -> None:
        _gave_up.get(self.pubsub, {}).pop(peer_id, None)
        try:
            await self.inner(peer_id, timeout)
        finally:
            conns = self.pubsub.host.get_network().get_connections(peer_id)
            if peer_id not in self.pubsub.peers and conns:
                _gave_up.setdefault(self.pubsub, {})[peer_id] = tuple(conns)
            event = _ended.get(self.pubsub, {}).pop(peer_id, None)
            if event is not None:
                event.set()


def _since(started: float) -> float:
    return trio.current_time() - started


def _speaks_pubsub(pubsub: Pubsub, peer: ID) -> bool | None:
    """True if identify lists a pubsub protocol or the peer announced a topic to us (identify
    may have run while its pubsub was not up yet); False if identify ran (its answer lists
    identify itself) and lists none; None if identify has not told us (not yet, or it failed,
    module doc)."""
    if any(peer in peers for peers in list(pubsub.peer_topics.values())):
        return True
    store = pubsub.host.get_peerstore()
    if store.supports_protocols(peer, [str(p) for p in pubsub.protocols]):
        return True
    if store.supports_protocols(peer, [str(IDENTIFY)]):
        return False
    return None


async def _announce(pubsub: Pubsub, peer: ID) -> None:
    """Every current topic of ours to ``peer``, ahead of queued traffic."""
    for _ in range(ANNOUNCE_TRIES):
        topics = list(pubsub.topic_ids)
        queue = pubsub.peer_queues.get(peer)
        if not topics or queue is None:
            return
        if queue.push(_subscriptions(topics), priority=True):
            return
        await trio.sleep(1.0)
    log.warning("pubsub: %s's outbound queue stayed full; our topics not re-announced", peer)


class _AnnouncingHandler:
    """A pubsub stream handler that first starts a ``_sync`` with the stream's peer."""

    def __init__(self, pubsub: Pubsub, inner: StreamHandlerFn) -> None:
        self.pubsub = pubsub
        self.inner = inner

    async def __call__(self, stream: INetStream) -> None:
        _start_sync(self.pubsub, stream.muxed_conn.peer_id)
        await self.inner(stream)


class _RepairingDeadPeer:
    """``Pubsub._handle_dead_peer``, then a ``_sync`` if the peer is still connected."""

    def __init__(self, pubsub: Pubsub, inner: Callable[[ID], None]) -> None:
        self.pubsub = pubsub
        self.inner = inner

    def __call__(self, peer_id: ID) -> None:
        self.inner(peer_id)
        if self.pubsub.host.get_network().get_connections(peer_id):
            _start_sync(self.pubsub, peer_id)


def _start_sync(pubsub: Pubsub, peer: ID) -> None:
    """A ``_sync`` in the pubsub service (it ends with the service), for a peer that has
    shown it speaks pubsub."""
    if pubsub.manager.is_running:
        pubsub.manager.run_task(functools.partial(_sync, pubsub, peer, speaks_pubsub=True))


async def _refresh(pubsub: Pubsub) -> None:
    """Runs in the pubsub service until it stops; a round that fails is logged and the next
    one comes."""
    while True:
        await trio.sleep(REFRESH)
        try:
            _refresh_round(pubsub)
        except Exception:
            log.warning("pubsub: a subscription refresh round failed", exc_info=True)


def _refresh_round(pubsub: Pubsub) -> None:
    topics = list(pubsub.topic_ids)
    for peer, queue in list(pubsub.peer_queues.items()):
        if topics and not (pubsub.peers.get(peer) and queue.push(_subscriptions(topics))):
            log.debug("pubsub: refresh to %s not queued", peer)
    locks = _locks.get(pubsub, {})
    for peer in pubsub.host.get_network().get_connections_map():
        if (
            peer not in pubsub.peers
            and peer not in locks
            and _speaks_pubsub(pubsub, peer) is not False
        ):
            log.info("pubsub: connected peer %s (pubsub or unknown) has no stream from us", peer)
            _start_sync(pubsub, peer)


def _subscriptions(topics: list[str]) -> rpc_pb2.RPC:
    packet = rpc_pb2.RPC()
    packet.subscriptions.extend(rpc_pb2.RPC.SubOpts(subscribe=True, topicid=t) for t in topics)
    return packet


def _install_hooks(pubsub: Pubsub) -> None:
    """Wrap whatever handles our pubsub protocols now and the instance's dead-peer handling,
    and start the refresh task (once; idempotent)."""
    handlers = pubsub.host.get_mux().handlers
    for protocol in pubsub.protocols:
        inner = handlers.get(protocol)
        if inner is None or isinstance(inner, _AnnouncingHandler):
            continue
        pubsub.host.set_stream_handler(protocol, _AnnouncingHandler(pubsub, inner))
    if not isinstance(pubsub._handle_new_peer_with_retry, _NoticingEnd):
        noticing = _NoticingEnd(pubsub, pubsub._handle_new_peer_with_retry)
        pubsub._handle_new_peer_with_retry = noticing  # type: ignore[method-assign]
    if not isinstance(pubsub._handle_dead_peer, _RepairingDeadPeer):
        repairing = _RepairingDeadPeer(pubsub, pubsub._handle_dead_peer)
        pubsub._handle_dead_peer = repairing  # type: ignore[method-assign]
        if pubsub.manager.is_running:
            pubsub.manager.run_task(_refresh, pubsub)
