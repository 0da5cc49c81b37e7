"""Kademlia DHT internals: provider records kept as go keeps them, and lookups that ask the
network instead of answering from what this peer happens to remember.

py-libp2p 0.8.1's provider store differs from go-libp2p-kad-dht in ways a swarm notices:

- its record lifetime is a module constant (48 h), so nothing shorter can be tested, and its
  own republish pass (every 10 min, for keys not provided for 22 h) re-advertises keys we have
  stopped advertising: ``ExpiringProviderStore`` has a TTL per store, and leaves re-providing
  to the caller (``core/network/dht.py`` re-advertises each topic it is in);
- it keeps at most 20 providers per key and refuses the 21st, so in a topic of 50 the late
  joiners are stored nowhere and never found; go keeps them all. We keep up to
  ``MAX_PROVIDERS_PER_KEY``, dropping the oldest record when full (the newest is likelier alive);
- ``find_providers`` answers from the local store alone whenever it holds any record (our own
  advertisement included), and stores every provider a lookup returns with a fresh timestamp,
  so a peer that left is re-stored by each lookup and never expires anywhere. Ours asks the
  network every time and stores nothing it was told (go stores only what ADD_PROVIDER brings).

``provide_network`` advertises through our own walk (the library's drops answers and floods
loaded servers, so records landed on few peers: at 50 members a topic lookup found a median
8 of them). ``find_peer_network`` is a walk for a peer id that counts only what the network
answers: the library's ``find_peer`` returns the routing table's or peerstore's addresses
when it has any, stale or not, and the peer's own entry in our table would count as "found"
in its walk.

And a request's stream must end when the request does, at both ends:

- a request its caller gave up on (a walk that ended, an ask past ``ASK_TIMEOUT``) closed its
  stream in a ``finally`` under the caller's cancellation, so the close itself was cancelled
  and the stream stayed open for good; the server, waiting for a next request on it, held
  one of its few handler slots (12 in py-libp2p) until the connection went. The library's
  ADD_PROVIDER does the same. Our requests end their streams shielded, bounded: closed after
  an answer, reset otherwise (go resets a stream on any error too);
- a py-libp2p server takes the asker's close as an error ("Failed to read DHT message": its
  stream raises ``StreamEOF`` where the loop expects an empty read) and resets every stream
  after its answer. ``GoLikeKadDHT`` reads the end of a stream as its end, and closes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import multiaddr
import trio
import varint
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.common import ALPHA, BUCKET_SIZE, MAX_DHT_MESSAGE_SIZE, PROTOCOL_ID
from libp2p.kad_dht.kad_dht import KadDHT, _encode_key
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.kad_dht.provider_store import ProviderRecord, ProviderStore
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from core.libp2p_compat.pubsub_speed import record_to_send
from core.libp2p_compat.records import consume_dht_record

log = logging.getLogger(__name__)

PROVIDER_TTL = 48 * 3600.0
"""go-libp2p-kad-dht's (and py-libp2p's) provider record validity."""
REPROVIDE_INTERVAL = 22 * 3600.0
"""go's re-provide interval: well before the records expire."""
MAX_PROVIDERS_PER_KEY = 500
"""Records kept per key; a GET_PROVIDERS answer with all of them stays far below the 4 MiB
message limit (a record is a few hundred bytes)."""
WALK_TIMEOUT = 10.0
"""A whole walk: then what it found is returned (a provider lookup on a loaded swarm asks
peer after peer that times out, and would go on for the 4 s of each)."""
ASK_TRIES = 2
WALK_BETA = 3
"""A walk ends once this many of the closest peers it knows have answered (go's resiliency
figure, beta): a provider record is stored at the 20 closest, so the nearest few hold them."""
PROVIDER_QUIET = 3
"""A provider lookup goes on past the closest ``WALK_BETA`` (towards all ``BUCKET_SIZE`` a record
is stored at) until, once it has found a provider, this many answers in a row named no provider
it had not heard of. After churn the closest peers to a key may have joined since its records
were stored, peers that left took their copies, and on a loaded swarm some ADD_PROVIDERs timed
out: in the 50-member lab after churn a lookup that stopped at the closest three found a median
29 of 50 members, and 49 of 50 with this rule (one run each). Asking all twenty every time costs
6 to 7 times the CPU (20-peer topic: 148 against 22 ms a lookup); this rule 52 ms."""
WALK_ALPHA = 3
"""Peers asked at once by a walk, go's figure (py-libp2p asks 10: in a swarm where everyone
looks up at once that is more requests than its servers take, 12 at a time, and they reset
the rest)."""
ASK_TIMEOUT = 4.0
ADDR_TTL = 3600
"""How long addresses a walk learnt stay in the peerstore (the library's figure)."""
"""One peer's answer within a walk: the library allows 10 s, and a round waits for its
slowest peer (a dial that hangs, to a peer gone or behind a NAT), which would put a lookup
beyond the 5 s users wait for one."""


class ExpiringProviderStore(ProviderStore):
    """The library's provider store with a TTL of its own, no cap of 20 per key, no republish
    pass of its own, and provider lookups that ask the network and cache nothing."""

    ttl: float = PROVIDER_TTL

    def _prune(self, key: bytes) -> None:
        records = self.providers.get(key)
        if records is None:
            return
        oldest = time.time() - self.ttl
        for peer in [p for p, r in records.items() if r.timestamp <= oldest]:
            del records[peer]
        if not records:
            del self.providers[key]

    def add_provider(self, key: bytes, provider: PeerInfo) -> None:
        if not provider or not provider.peer_id:
            return
        self._prune(key)
        records = self.providers.setdefault(key, {})
        name = str(provider.peer_id)
        if name not in records and len(records) >= MAX_PROVIDERS_PER_KEY:
            del records[min(records, key=lambda p: records[p].timestamp)]
        records[name] = ProviderRecord(provider, time.time())
        self._save()

    def get_providers(self, key: bytes) -> list[PeerInfo]:
        self._prune(key)
        return super().get_providers(key)

    def held(self, key: str) -> list[PeerInfo]:
        """The unexpired records stored here for ``key`` (a CID's text), ours included."""
        return self.get_providers(_encode_key(key))

    def cleanup_expired(self) -> None:
        for key in list(self.providers):
            self._prune(key)
        super().cleanup_expired()

    async def _republish_provider_records(self) -> None:
        """Re-providing is the caller's: it knows which keys it still wants to be found by."""

    async def find_providers(
        self,
        key: bytes,
        count: int = 20,
        on_found: Callable[[PeerInfo], None] | None = None,
    ) -> list[PeerInfo]:
        """Providers of ``key`` from the peers closest to it (a ``_Walk`` that ends once the
        closest have answered, or ``count`` providers are known), merged with the records
        other peers gave us; nothing is stored. ``on_found`` hears of each provider as soon
        as an answer gives its addresses (go's ``FindProvidersAsync`` streams them too): a
        walk on a loaded network runs for seconds, and its first answers hold most of them."""
        found: dict[ID, PeerInfo] = {}
        told: set[ID] = set()

        def merge(infos: Sequence[PeerInfo]) -> None:
            for info in infos:
                known = found.setdefault(info.peer_id, PeerInfo(info.peer_id, []))
                known.addrs.extend(a for a in info.addrs if a not in known.addrs)
                if on_found is not None and known.addrs and info.peer_id not in told:
                    told.add(info.peer_id)
                    on_found(PeerInfo(info.peer_id, list(known.addrs)))

        me = self.host.get_id()
        merge([i for i in self.get_providers(key) if i.peer_id != me])

        quiet = 0

        async def ask(peer: ID) -> list[ID] | None:
            nonlocal quiet
            response = await _ask(self.host, peer, Message.MessageType.GET_PROVIDERS, key)
            if response is None:
                return None
            before = len(found)
            merge(_peers(self.host, response.providerPeers))
            quiet = quiet + 1 if before and len(found) == before else 0
            return [i.peer_id for i in _peers(self.host, response.closerPeers)]

        def done() -> bool:
            agreed = quiet >= PROVIDER_QUIET and walk.beta_settled()
            return len(found) >= count or agreed

        walk = _Walk(self.host, key, _starting_peers(self, key), {me}, BUCKET_SIZE)
        await walk.run(ask, done)
        return list(found.values())


class _Walk:
    """A Kademlia walk towards ``key``, go's way: ``WALK_ALPHA`` asks in flight at once (a
    slow peer holds up its own slot only, not a whole round), over the closest
    ``BUCKET_SIZE`` peers known, nearest first; a peer that gave no answer (busy: py-libp2p
    servers reset requests beyond 12 at once) is asked once more later. The walk ends when
    the ``beta`` closest peers known have answered (or used up their tries), when ``done()``
    says so, or after ``WALK_TIMEOUT``."""

    def __init__(
        self, host: IHost, key: bytes, start: list[ID], exclude: set[ID], beta: int = WALK_BETA
    ) -> None:
        self.host = host
        self.key = key
        self.exclude = exclude
        self.beta = beta
        self.candidates = sort_peer_ids_by_distance(key, [p for p in start if p not in exclude])
        self.tries: dict[ID, int] = {}
        self.answered: set[ID] = set()
        self.asking: set[ID] = set()
        self._changed = trio.Event()

    def closest(self, count: int = BUCKET_SIZE) -> list[ID]:
        """The ``count`` closest peers known that answered or were never asked."""
        failed = {p for p, n in self.tries.items() if n >= ASK_TRIES and p not in self.answered}
        return [p for p in self.candidates if p not in failed][:count]

    def _settled(self, peer: ID) -> bool:
        return peer in self.answered or self.tries.get(peer, 0) >= ASK_TRIES

    def _next(self) -> ID | None:
        window = [p for p in self.candidates[:BUCKET_SIZE] if p not in self.asking]
        for peer in window:
            if peer not in self.tries:
                return peer
        for peer in window:
            if not self._settled(peer):
                return peer
        return None

    def _finished(self) -> bool:
        return all(self._settled(p) for p in self.closest(self.beta))

    def beta_settled(self) -> bool:
        """Whether the closest ``WALK_BETA`` known have answered (or used up their tries)."""
        return all(self._settled(p) for p in self.closest(WALK_BETA))

    async def run(
        self, ask: Callable[[ID], Awaitable[list[ID] | None]], done: Callable[[], bool]
    ) -> None:
        """Walk, ``ask`` giving the closer peers a peer names (None: no answer)."""

        async def one(peer: ID) -> None:
            answer: list[ID] | None = None
            try:
                with trio.move_on_after(ASK_TIMEOUT):
                    answer = await ask(peer)
            finally:
                self.asking.discard(peer)
                self._changed.set()
            if answer is not None:
                self.answered.add(peer)
                known = set(self.candidates)
                fresh = [p for p in dict.fromkeys(answer) if p not in known]
                fresh = [p for p in fresh if p not in self.exclude and _serves_kad(self.host, p)]
                if fresh:
                    self.candidates = sort_peer_ids_by_distance(self.key, self.candidates + fresh)

        with trio.move_on_after(WALK_TIMEOUT):
            async with trio.open_nursery() as nursery:
                while not done() and not self._finished():
                    while len(self.asking) < WALK_ALPHA and (peer := self._next()) is not None:
                        self.tries[peer] = self.tries.get(peer, 0) + 1
                        self.asking.add(peer)
                        nursery.start_soon(one, peer)
                    if not self.asking:
                        break
                    await self._changed.wait()
                    self._changed = trio.Event()
                nursery.cancel_scope.cancel()


def _starting_peers(store: ProviderStore, key: bytes) -> list[ID]:
    """Where a walk starts: the routing table's peers closest to ``key`` (and the connected
    ones while the table is small), nearest first. Provider lookups walk with GET_PROVIDERS
    from here, as go does, instead of a whole FIND_NODE walk first."""
    start = store.peer_routing.routing_table.find_local_closest_peers(key, BUCKET_SIZE)
    if len(start) < ALPHA:
        start += store.host.get_connected_peers()
    me = store.host.get_id()
    peers = [p for p in dict.fromkeys(start) if p != me and _serves_kad(store.host, p)]
    return sort_peer_ids_by_distance(key, peers)


def _serves_kad(host: IHost, peer: ID) -> bool:
    """Whether ``peer`` may answer DHT queries: not if it told us (identify) its protocols
    and the DHT's is not among them (a DHT client: a peer behind a NAT). Asking one costs a
    round trip at best, and over a relayed connection a stream that never opens."""
    try:
        protocols = host.get_peerstore().get_protocols(peer)
    except Exception:
        return True
    return not protocols or PROTOCOL_ID in protocols


INBOUND_HANDLERS = 64
"""DHT requests a server handles at once. py-libp2p 0.8.1 takes 12 and resets the rest at
once; go's DHT has no such cap (its resource manager allows hundreds of streams per
protocol). Everyone in a topic looks up the same key, so its closest servers are asked by
all at once: in a 20-member lab that joined a topic, 2 246 of the members' GET_PROVIDERS were
reset or closed unanswered in a minute and a half. An answer is a table lookup and a few
records, ~1 ms here."""


def widen_inbound_handlers(dht: KadDHT, handlers: int = INBOUND_HANDLERS) -> None:
    """Let ``dht`` serve ``handlers`` requests at once instead of the library's 12."""
    dht._inbound_limiter.total_tokens = handlers


STREAM_END_WAIT = 1.0
"""Seconds a request's stream is given to close or reset (shielded from the caller)."""


class _EndReadsEmpty:
    """A DHT server's stream, as its request loop sees it: the asker's close reads as an
    empty read (the loop's clean end), not as ``StreamEOF`` (its error path, a reset)."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        try:
            return await self._stream.read(n)
        except StreamEOF:
            return b""


class GoLikeKadDHT(KadDHT):
    """The library's DHT, its server closing a stream the asker is done with instead of
    resetting it (see the module doc)."""

    async def _do_handle_stream(self, stream: INetStream) -> None:
        await super()._do_handle_stream(cast(INetStream, _EndReadsEmpty(stream)))


async def _end(stream: INetStream, answered: bool) -> None:
    """Close a request's stream after its answer, reset it otherwise; shielded from the
    caller's cancellation (which is why it ends: a walk done, a timeout) and bounded."""
    with trio.CancelScope(shield=True), trio.move_on_after(STREAM_END_WAIT):
        try:
            if answered:
                await stream.close()
            else:
                await stream.reset()
        except Exception:
            log.debug("ending a DHT stream failed", exc_info=True)


def install_provider_store(dht: KadDHT, ttl: float = PROVIDER_TTL) -> ExpiringProviderStore:
    """Put an ``ExpiringProviderStore`` in place of the one ``KadDHT`` made (before the DHT
    runs: the stream handler and the maintenance loop look it up on the DHT each time)."""
    old = dht.provider_store
    store = ExpiringProviderStore(host=dht.host, peer_routing=dht.peer_routing)
    store.providers = old.providers
    store.providing_keys = old.providing_keys
    store.ttl = ttl
    dht.provider_store = store
    return store


async def find_providers_network(
    dht: KadDHT,
    key: str,
    count: int = 20,
    on_found: Callable[[PeerInfo], None] | None = None,
) -> list[PeerInfo]:
    """Providers of ``key`` as the network knows them (``ExpiringProviderStore``), each also
    handed to ``on_found`` as soon as it is known."""
    store = dht.provider_store
    if not isinstance(store, ExpiringProviderStore):
        store = install_provider_store(dht)
    return await store.find_providers(_encode_key(key), count, on_found)


async def find_peer_network(dht: KadDHT, target: ID) -> PeerInfo | None:
    """Walk towards ``target``'s id with FIND_NODE until one peer names ``target`` itself (a
    DHT server that knows its addresses puts it first); its answer puts the addresses in our
    peerstore. Only answers count: ``target`` is never asked about itself, and what our
    routing table knows of it is not used."""
    key = target.to_bytes()
    named = False

    async def ask(peer: ID) -> list[ID] | None:
        nonlocal named
        answer = await _find_node(dht, peer, key)
        if answer is not None and target in answer:
            named = True
        return answer

    walk = _Walk(
        dht.host, key, _starting_peers(dht.provider_store, key), {dht.host.get_id(), target}
    )
    await walk.run(ask, lambda: named)
    if not named:
        return None
    try:
        addrs = list(dht.host.get_peerstore().addrs(target))
    except Exception:
        addrs = []
    return PeerInfo(target, addrs) if addrs else None


async def provide_network(dht: KadDHT, key: str) -> int:
    """Advertise that we provide ``key``: our own record, then ADD_PROVIDER to the
    ``BUCKET_SIZE`` peers closest to it that a ``_Walk`` finds. Returns how many were sent.

    The library's ``provide`` finds those peers with its own walk, which drops a whole answer
    when the sender's signed record is older than the one we hold (and asks 10 at once, more
    than loaded servers take): in the 50-member swarm lab each member's record then reached a
    few peers of its own choosing, and a topic lookup found a median 8 of 50 members."""
    store = dht.provider_store
    raw = _encode_key(key)
    me = dht.host.get_id()
    store.providing_keys.add(raw)
    store.add_provider(raw, PeerInfo(me, list(dht.host.get_addrs())))
    walk = _Walk(dht.host, raw, _starting_peers(store, raw), {me})
    await walk.run(lambda peer: _find_node(dht, peer, raw), lambda: False)
    sent = 0
    limit = trio.Semaphore(WALK_ALPHA)

    async def send(peer: ID) -> None:
        nonlocal sent
        async with limit:
            with trio.move_on_after(ASK_TIMEOUT):
                if await _add_provider(dht.host, peer, raw):
                    sent += 1

    async with trio.open_nursery() as nursery:
        for peer in walk.closest():
            nursery.start_soon(send, peer)
    return sent


async def _ask(host: IHost, peer: ID, kind: int, key: bytes) -> Message | None:
    """One request of ``kind`` (FIND_NODE, GET_PROVIDERS) about ``key`` to ``peer``, and its
    answer. The library's queries drop a whole answer when the answering peer's signed record
    is older than the one we hold, and each peer in it whose record is: a walk then hears
    of nobody. Here a record we cannot take costs only the record."""
    try:
        stream = await host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
    except Exception as exc:
        log.debug("no DHT stream to %s: %r", peer, exc)
        return None
    answered = False
    try:
        request = Message(type=kind, key=key)  # type: ignore[arg-type]
        request.senderRecord = record_to_send(host)[0]
        body = request.SerializeToString()
        await stream.write(varint.encode(len(body)) + body)
        response = Message()
        response.ParseFromString(
            await read_varint_prefixed_bytes_limited(stream, MAX_DHT_MESSAGE_SIZE)
        )
        answered = True
    except Exception as exc:
        log.debug("DHT request %s to %s failed: %r", kind, peer, exc)
        return None
    finally:
        await _end(stream, answered)
    return response if response.type == kind else None


async def _add_provider(host: IHost, peer: ID, key: bytes) -> bool:
    """ADD_PROVIDER of ``key`` with our addresses to ``peer``, sent as the library sends it
    (no answer awaited: kubo sends none) but in one write, its stream ended however the
    caller's wait ends."""
    try:
        stream = await host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
    except Exception as exc:
        log.debug("no DHT stream to %s: %r", peer, exc)
        return False
    sent = False
    try:
        record = record_to_send(host)[0]
        message = Message(type=Message.MessageType.ADD_PROVIDER, key=key, senderRecord=record)
        provider = message.providerPeers.add()
        provider.id = host.get_id().to_bytes()
        provider.addrs.extend(a.to_bytes() for a in host.get_addrs())
        provider.signedRecord = record
        body = message.SerializeToString()
        await stream.write(varint.encode(len(body)) + body)
        sent = True
    except Exception as exc:
        log.debug("ADD_PROVIDER to %s failed: %r", peer, exc)
    finally:
        await _end(stream, sent)
    return sent


def _peers(host: IHost, entries: Any) -> list[PeerInfo]:
    """The peers an answer names, their addresses also put in our peerstore."""
    store = host.get_peerstore()
    out: list[PeerInfo] = []
    for entry in entries:
        try:
            peer = ID(entry.id)
            addrs = [multiaddr.Multiaddr(a) for a in entry.addrs]
        except Exception:
            continue
        consume_dht_record(entry, host)  # refused when forged: the addrs stay
        if addrs:
            store.add_addrs(peer, addrs, ADDR_TTL)
        out.append(PeerInfo(peer, addrs))
    return out


async def _find_node(dht: KadDHT, peer: ID, key: bytes) -> list[ID] | None:
    """The ids ``peer`` names as closest to ``key``; None if it gave no answer."""
    response = await _ask(dht.host, peer, Message.MessageType.FIND_NODE, key)
    if response is None:
        return None
    return [i.peer_id for i in _peers(dht.host, response.closerPeers)]


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
